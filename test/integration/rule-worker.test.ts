import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Kafka } from 'kafkajs';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { readDeadLetters } from '../../src/cli/dlq.js';
import { corpus, corpusTrace, expectedSignals, produceCorpus, RULES_A, RULES_B, spansInTimeOrder, type CorpusSpan, type CorpusTenant } from '../../src/devtools/trace-corpus.js';
import { malformedRecords, tenantIdFor } from '../../src/model/generate.js';
import type { Signal } from '../../src/model/signal.js';
import type { TenantStats } from '../../src/cli/signals.js';
import { startTigerBeetle } from '../support/tigerbeetle.js';
import { CLI, ROOT, createTopic, kafkaClient, metricValue, sleep, tempDir, uniqueName, waitForCommitted, WorkerProcess, killWorkers, kafkaFacade, kafkaClientsUnderTest, useKafkaClient } from '../support/harness.js';

const run = promisify(execFile);
const brokers = inject('kafkaBrokers');
let kafka: Kafka;
const workers: WorkerProcess[] = [];
const dirs: string[] = [];

/** prom-client's process_resident_memory_bytes under the workers' metric prefix. */
const RSS = 'spanledger_process_process_resident_memory_bytes';
/** What the long-trace test allows one rule worker: the bound the README states. */
const MEMORY_BOUND_BYTES = 384 * 1024 * 1024;

// For the kill -9 test's last step (signals through the signal worker into DuckDB and
// TigerBeetle); the suite prints one line when TigerBeetle tests are skipped.
const tb = await startTigerBeetle();

const TENANTS: CorpusTenant[] = [
  { tenantId: tenantIdFor(0xa1), rules: 'A' },
  { tenantId: tenantIdFor(0xb2), rules: 'B' },
];

interface Setup {
  spansTopic: string;
  rulesTopic: string;
  signalsTopic: string;
  group: string;
  env: Record<string, string>;
}

async function setup(partitions: number, env: Record<string, string> = {}): Promise<Setup> {
  const spansTopic = uniqueName('spans');
  const rulesTopic = `${spansTopic}.rules`;
  const signalsTopic = `${spansTopic}.signals`;
  const group = uniqueName('rules');
  const quarantine = tempDir('quarantine');
  dirs.push(quarantine);
  await createTopic(kafka, spansTopic, partitions);
  await createTopic(kafka, signalsTopic, partitions);
  return {
    spansTopic,
    rulesTopic,
    signalsTopic,
    group,
    env: {
      KAFKA_BROKERS: brokers,
      SPANS_TOPIC: spansTopic,
      RULES_TOPIC: rulesTopic,
      RULES_GROUP: group,
      RULES_DLQ_TOPIC: `${spansTopic}.rules-dlq`,
      RULES_CHECKPOINT_TOPIC: `${spansTopic}.checkpoints`,
      SIGNALS_TOPIC: signalsTopic,
      QUARANTINE_DIR: quarantine,
      TRACE_IDLE_MS: '1500',
      RULES_CHECKPOINT_INTERVAL_MS: '200',
      KAFKA_SESSION_TIMEOUT_MS: '8000',
      KAFKA_REBALANCE_TIMEOUT_MS: '10000',
      KAFKA_HEARTBEAT_INTERVAL_MS: '1000',
      BATCH_MAX_AGE_MS: '100',
      ...env,
    },
  };
}

function startWorker(s: Setup, env: Record<string, string> = {}): WorkerProcess {
  const w = new WorkerProcess('rules', { ...s.env, ...env });
  workers.push(w);
  return w;
}

async function putRules(s: Setup, tenantId: string, yaml: string, extra: string[] = []): Promise<void> {
  const dir = tempDir('rules');
  dirs.push(dir);
  const file = path.join(dir, 'rules.yaml');
  fs.writeFileSync(file, yaml);
  await run(process.execPath, [CLI, 'rules', 'put', '--tenant', tenantId, '--file', file, ...extra], { cwd: ROOT, env: { ...process.env, ...s.env } });
}

async function produceSpans(topic: string, spans: CorpusSpan[], chunk = 1000): Promise<void> {
  await produceCorpus(kafkaFacade(brokers), topic, spans, { chunk });
}

async function readSignals(topic: string): Promise<Signal[]> {
  return (await readDeadLetters(kafkaFacade(brokers), topic).catch((e: unknown) => (/does not exist/.test(String(e)) ? [] : Promise.reject(e)))).map((r) => JSON.parse(r.value!) as Signal);
}

/** `${tenant}/${trace}/${rule}` of each signal. */
function keysOf(signals: Signal[]): string[] {
  return signals.map((s) => `${s.tenantId}/${s.traceId}/${s.ruleId}`);
}

/** Every id once, and every copy of an id identical (a repeat is harmless downstream; a different one is not). */
function distinctById(signals: Signal[]): Map<string, Signal> {
  const byId = new Map<string, Signal>();
  for (const s of signals) {
    const seen = byId.get(s.id);
    if (seen !== undefined) expect(JSON.stringify(s)).toBe(JSON.stringify(seen));
    byId.set(s.id, s);
  }
  return byId;
}

async function waitForSignals(topic: string, count: number, timeoutMs = 60_000): Promise<Signal[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const signals = await readSignals(topic);
    if (distinctById(signals).size >= count || Date.now() > deadline) return signals;
    await sleep(500);
  }
}

async function metrics(w: WorkerProcess): Promise<string> {
  const started = await w.waitForLog('worker started');
  const res = await fetch(`http://127.0.0.1:${started.metricsPort as number}/metrics`);
  return res.text();
}

beforeAll(() => {
  kafka = kafkaClient(brokers);
});

afterEach(() => killWorkers(workers));

afterAll(async () => {
  if (!('skipped' in tb)) await tb.stop();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe.each(kafkaClientsUnderTest())('rule worker on %s', (client) => {
  useKafkaClient(client);
  it('finds exactly the expected violations over two tenants with different rules, and dead-letters bad spans', async () => {
    const s = await setup(3);
    await putRules(s, TENANTS[0]!.tenantId, RULES_A);
    await putRules(s, TENANTS[1]!.tenantId, RULES_B);
    // Traces overlap: a new one starts every 50 ms of event time, each lasts 300+ ms.
    const traces = corpus({ tenants: TENANTS, traces: 240, fillerSpans: 4, startMs: Date.now() - 60_000, traceGapMs: 50, spanGapMs: 40, seed: s.spansTopic });
    await produceSpans(s.spansTopic, spansInTimeOrder(traces));
    const bad = malformedRecords(TENANTS[0]!.tenantId);
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic: s.spansTopic, messages: bad.map((b) => ({ key: 'bad', value: b.value })) });
    await producer.disconnect();

    const w = startWorker(s);
    await waitForCommitted(kafka, s.group, s.spansTopic, 90_000);
    const expected = expectedSignals(traces);
    const signals = await readSignals(s.signalsTopic);
    expect(new Set(keysOf(signals))).toEqual(expected);
    expect(distinctById(signals).size).toBe(expected.size);
    // The tenants' rule sets differ: a tenant never gets a signal of a rule it does not have.
    for (const sig of signals) expect(sig.tenantId === TENANTS[0]!.tenantId ? ['high-value-payment-controls', 'too-many-retries', 'admin-without-auth'] : ['too-many-retries', 'server-errors']).toContain(sig.ruleId);
    const severities = new Map(signals.map((x) => [`${x.tenantId}/${x.ruleId}`, x.severity]));
    expect(severities.get(`${TENANTS[1]!.tenantId}/too-many-retries`)).toBe('LOW');
    expect(severities.get(`${TENANTS[0]!.tenantId}/too-many-retries`)).toBe('MEDIUM');

    const letters = await readDeadLetters(kafkaFacade(brokers), s.env.RULES_DLQ_TOPIC!);
    expect(letters.map((l) => l.errorClass).sort()).toEqual(bad.map((b) => b.kind).sort());
    const text = await metrics(w);
    expect(metricValue(text, 'spanledger_rule_traces_closed_total')).toBe(traces.length);
    expect(metricValue(text, 'spanledger_rule_spans_evaluated_total')).toBe(traces.reduce((n, t) => n + t.spans.length, 0));
    expect(metricValue(text, 'spanledger_rule_signals_produced_total')).toBe(expected.size);
    // Most traces closed by event time while the stream went on, the last ones on the wall clock.
    expect(metricValue(text, 'spanledger_rule_traces_closed_total', 'reason="idle"')).toBeGreaterThan(traces.length / 2);
    expect(metricValue(text, 'spanledger_rule_traces_open')).toBe(0);
  });

  it('two rule-worker groups reading the same spans produce identical signals', async () => {
    const s = await setup(2);
    await putRules(s, TENANTS[0]!.tenantId, RULES_A);
    await putRules(s, TENANTS[1]!.tenantId, RULES_B);
    const traces = corpus({ tenants: TENANTS, traces: 120, fillerSpans: 2, startMs: Date.now() - 60_000, traceGapMs: 30, spanGapMs: 25, seed: s.spansTopic });
    await produceSpans(s.spansTopic, spansInTimeOrder(traces));
    const second = { ...s, group: uniqueName('rules'), signalsTopic: `${s.signalsTopic}-2` };
    second.env = { ...s.env, RULES_GROUP: second.group, SIGNALS_TOPIC: second.signalsTopic, RULES_CHECKPOINT_TOPIC: `${s.spansTopic}.checkpoints-2` };
    startWorker(s);
    // Smaller flushes in the second group: the result must not depend on how records are batched.
    startWorker(second, { BATCH_MAX_RECORDS: '7' });
    await waitForCommitted(kafka, s.group, s.spansTopic, 90_000);
    await waitForCommitted(kafka, second.group, s.spansTopic, 90_000);
    const one = [...distinctById(await readSignals(s.signalsTopic)).values()].map((x) => JSON.stringify(x)).sort();
    const two = [...distinctById(await readSignals(second.signalsTopic)).values()].map((x) => JSON.stringify(x)).sort();
    expect(one.length).toBe(expectedSignals(traces).size);
    expect(two).toEqual(one);
  });

  it('after kill -9 mid-stream and a restart: every expected signal, each id once, no trace re-evaluated from its tail; with TigerBeetle, DuckDB and TigerBeetle count each violation once', async () => {
    const s = await setup(2, { TRACE_IDLE_MS: '2000', BATCH_MAX_RECORDS: '200' });
    // Fresh tenants: a shared TigerBeetle cluster (TB_ADDRESS) has no accounts of theirs yet.
    const base = Date.now() % 2 ** 40;
    const kill: CorpusTenant[] = [
      { tenantId: tenantIdFor(base), rules: 'A' },
      { tenantId: tenantIdFor(base + 1), rules: 'B' },
    ];
    await putRules(s, kill[0]!.tenantId, RULES_A);
    await putRules(s, kill[1]!.tenantId, RULES_B);
    // 1,200 overlapping traces of ~12 spans: many are open at any moment, so the kill lands
    // between closed traces whose spans lie on both sides of the committed offset.
    const traces = corpus({ tenants: kill, traces: 1200, fillerSpans: 6, startMs: Date.now() - 120_000, traceGapMs: 40, spanGapMs: 60, seed: s.spansTopic });
    const spans = spansInTimeOrder(traces);
    const expected = expectedSignals(traces);

    const first = startWorker(s);
    await first.waitForLog('worker started');
    const half = Math.floor(spans.length / 2);
    await produceSpans(s.spansTopic, spans.slice(0, half), 500);
    await waitForSignals(s.signalsTopic, Math.floor(expected.size / 4));
    first.kill('SIGKILL');
    await first.exited;
    const before = distinctById(await readSignals(s.signalsTopic)).size;
    expect(before).toBeGreaterThan(0);
    expect(before).toBeLessThan(expected.size);

    await produceSpans(s.spansTopic, spans.slice(half), 500);
    const second = startWorker(s);
    await waitForCommitted(kafka, s.group, s.spansTopic, 120_000);
    const signals = await readSignals(s.signalsTopic);
    expect(new Set(keysOf(signals))).toEqual(expected);
    expect(distinctById(signals).size).toBe(expected.size);
    const text = await metrics(second);
    expect(metricValue(text, 'spanledger_rule_checkpoints_restored_total', 'outcome="restored"')).toBeGreaterThan(0);
    if ('skipped' in tb) return;

    // Through the signal worker: each violation counted once in DuckDB and in TigerBeetle.
    const duckdbDir = tempDir('duckdb');
    dirs.push(duckdbDir);
    const signalEnv = {
      ...s.env,
      SIGNALS_DLQ_TOPIC: `${s.signalsTopic}.dlq`,
      SIGNALS_GROUP: uniqueName('signals'),
      DUCKDB_DIR: duckdbDir,
      DUCKDB_IDLE_TIMEOUT_MS: '1000',
      TB_ADDRESS: tb.addresses.join(','),
      TB_CLUSTER_ID: String(tb.clusterId),
    };
    const signalWorker = new WorkerProcess('signals', signalEnv);
    workers.push(signalWorker);
    await waitForCommitted(kafka, signalEnv.SIGNALS_GROUP, s.signalsTopic, 120_000);
    signalWorker.kill('SIGTERM');
    await signalWorker.exited;
    const { stdout } = await run(process.execPath, [CLI, 'signals', 'stats', '--json'], { cwd: ROOT, env: { ...process.env, ...signalEnv } });
    const rows = (JSON.parse(stdout) as TenantStats[]).filter((r) => kill.some((t) => t.tenantId === r.tenantId));
    expect(rows.reduce((n, r) => n + ('total' in r.duckdb ? r.duckdb.total : 0), 0)).toBe(expected.size);
    for (const r of rows) expect(r.agree).toBe(true);
  });

  it('follows rule changes while running: added, changed and deleted rules apply to traces that open after them', async () => {
    const s = await setup(1, { TRACE_IDLE_MS: '500' });
    const tenant: CorpusTenant = { tenantId: tenantIdFor(0xc3), rules: 'A' };
    const w = startWorker(s);
    await w.waitForLog('worker started');
    const options = { fillerSpans: 1, spanGapMs: 10, seed: s.spansTopic };
    let index = 0;
    /** Produces one trace of `kind` and returns its trace id once its partition is committed past it. */
    const oneTrace = async (kind: 'retries' | 'clean') => {
      const t = corpusTrace(options, tenant, index++, kind, Date.now());
      await produceSpans(s.spansTopic, t.spans);
      await waitForCommitted(kafka, s.group, s.spansTopic, 30_000);
      return t.traceId;
    };
    const signalsOfTrace = async (traceId: string) => (await readSignals(s.signalsTopic)).filter((x) => x.traceId === traceId);

    // No rules yet: nothing fires.
    const t0 = await oneTrace('retries');
    expect(await signalsOfTrace(t0)).toEqual([]);

    await putRules(s, tenant.tenantId, 'rules:\n  - id: retries\n    severity: low\n    condition: count(http.retry) > 3\n');
    await sleep(1000);
    const t1 = await oneTrace('retries');
    expect((await signalsOfTrace(t1)).map((x) => [x.ruleId, x.severity])).toEqual([['retries', 'LOW']]);

    // Changed: a higher threshold no longer fires on 5 retries; a second rule fires instead.
    await putRules(s, tenant.tenantId, 'rules:\n  - id: retries\n    severity: high\n    condition: count(http.retry) > 10\n  - id: any-get\n    severity: medium\n    condition: \'"GET /items"\'\n');
    await sleep(1000);
    const t2 = await oneTrace('retries');
    expect((await signalsOfTrace(t2)).map((x) => x.ruleId)).toEqual(['any-get']);

    await run(process.execPath, [CLI, 'rules', 'delete', '--tenant', tenant.tenantId, '--id', 'any-get'], { cwd: ROOT, env: { ...process.env, ...s.env } });
    await sleep(1000);
    const t3 = await oneTrace('retries');
    expect(await signalsOfTrace(t3)).toEqual([]);

    // A bad record that reaches the rules topic anyway is counted and skipped, never fatal.
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic: s.rulesTopic, messages: [{ key: `${tenant.tenantId}/broken`, value: '{"id":"broken","severity":"LOW","condition":"count(x >"}' }] });
    await producer.disconnect();
    await sleep(1000);
    const t4 = await oneTrace('clean');
    expect(await signalsOfTrace(t4)).toEqual([]);
    expect(w.child.exitCode).toBeNull();
    expect(metricValue(await metrics(w), 'spanledger_rules_bad_total')).toBeGreaterThanOrEqual(1);
  });

  it('a trace of 100,000 spans and 5,000 concurrent traces stay within the memory bound', async () => {
    const s = await setup(2, { TRACE_IDLE_MS: '2000', MAX_OPEN_TRACES: '20000' });
    const tenant: CorpusTenant = { tenantId: tenantIdFor(0xd4), rules: 'A' };
    await putRules(s, tenant.tenantId, RULES_A);
    const w = startWorker(s);
    await w.waitForLog('worker started');
    const now = Date.now() - 600_000;
    // 5,000 traces open at once: span j of every trace at the same event time, 1 s apart.
    const many = Array.from({ length: 5000 }, (_, i) => corpusTrace({ fillerSpans: 2, spanGapMs: 1000, seed: s.spansTopic }, tenant, i, i % 2 === 0 ? 'retries' : 'clean', now));
    // One long trace: 100,000 spans (5 retries first, then filler), 1 ms apart.
    const long = corpusTrace({ fillerSpans: 100_000 - 6, spanGapMs: 1, seed: `${s.spansTopic}-long` }, tenant, 0, 'retries', now);
    // Peak RSS while the worker holds the traces (sampled from its /metrics).
    let peakRss = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        try {
          peakRss = Math.max(peakRss, metricValue(await metrics(w), RSS));
        } catch {
          // The worker is gone (a failure below, or its cleanup): the test fails there, not here.
        }
        await sleep(250);
      }
    })();
    try {
      await produceSpans(s.spansTopic, spansInTimeOrder([...many, long]), 2000);
      await waitForCommitted(kafka, s.group, s.spansTopic, 150_000);
    } finally {
      sampling = false;
      await sampler;
    }
    const signals = distinctById(await readSignals(s.signalsTopic));
    expect(signals.size).toBe(expectedSignals([...many, long]).size);
    const longSignal = [...signals.values()].find((x) => x.traceId === long.traceId);
    expect(longSignal?.metadata).toMatchObject({ spanCount: 100_000 });
    const text = await metrics(w);
    expect(metricValue(text, 'spanledger_rule_traces_closed_total', 'reason="cap"')).toBe(0);
    expect(metricValue(text, 'spanledger_rule_traces_closed_total')).toBe(5001);
    console.log(`rule worker: 5,000 concurrent traces and one of 100,000 spans, peak RSS ${(peakRss / 2 ** 20).toFixed(0)} MiB`);
    expect(peakRss).toBeGreaterThan(0);
    expect(peakRss).toBeLessThan(MEMORY_BOUND_BYTES);
  });
});
