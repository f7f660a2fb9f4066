/**
 * The workers on a real 3-broker KRaft cluster (scripts/kafka.sh cluster; replication factor 3,
 * min.insync.replicas=2, producers with acks=all), while brokers fail under load:
 * - kill -9 of the broker that leads the busiest partition mid-stream, then its restart;
 * - a rolling restart of all three brokers (one at a time, replicas back in sync in between).
 * Every record stored exactly once, every expected violation signalled once, lag 0 afterwards, no
 * worker exit. Each scenario prints how long partitions had records to take and took none.
 * The file starts and stops its own cluster (the suite's broker is not used).
 */
import fs from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Admin, Kafka, Message, Producer } from 'kafkajs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readDeadLetters } from '../../src/cli/dlq.js';
import { groupLag } from '../../src/kafka/client.js';
import { corpus, expectedSignals, RULES_A, RULES_B, spansInTimeOrder, type CorpusSpan, type CorpusTenant } from '../../src/devtools/trace-corpus.js';
import { generateSpan, tenantIdFor } from '../../src/model/generate.js';
import type { Signal } from '../../src/model/signal.js';
import { spanDay } from '../../src/model/span.js';
import { clusterClient, clusterSkipReason, KafkaCluster, leaders, NODES, topicMetadata, SpanLogCounter, StallWatch, waitForFullIsr, type Node } from '../support/cluster.js';
import type { KafkaAdmin, KafkaFacade } from '../../src/kafka/facade.js';
import { expectEachSignalOnceInBothStores, SignalLoad, stopTigerBeetle, tigerBeetle, tigerBeetleEnv } from '../support/cluster-signals.js';
import { signalSetup } from '../support/signal-topics.js';
import { tigerBeetleSkipReason } from '../support/tigerbeetle.js';
import { BoundedSteps } from '../support/bounded-steps.js';
import { CLI, ROOT, createSpanTopics, kafkaClientsUnderTest, kafkaFacade, createTopic, killWorkers, readSpanLog, sleep, tempDir, uniqueName, waitForCommitted, WorkerProcess } from '../support/harness.js';

const run = promisify(execFile);
// The Kafka clients the workers run on (SPANLEDGER_TEST_CLIENTS, default both).
const CLIENTS = kafkaClientsUnderTest();
const skipReason = clusterSkipReason();
if (skipReason) console.log(`\n*** ${skipReason} ***\n`);
// The signals scenario needs TigerBeetle; when it is skipped the suite says so in one line (test/support/tigerbeetle-notice.ts).
const tbSkipReason = await tigerBeetleSkipReason();
// Every scenario runs on both clients. On kafkajs the rolling restart and the rules scenario used
// to fail in 2 of 3 full runs (partitions left uncommitted past the timeouts, late spans, a hung
// `rules put`), for reasons the kafkajs adapter now deals with (src/kafka/kafkajs/kafka.ts,
// group-consumer.ts, coordinator-fixes.ts): its consumers gave up after ~1.3 s of retries (kafkajs'
// test-mode defaults under NODE_ENV=test; ~3 s deployed), crashed on ECONNREFUSED and rejoined
// under new member ids that the group then waited out; its commits and heartbeats kept going to a
// group coordinator that had moved or died (81 s of NOT_COORDINATOR; members expired meanwhile);
// and a consumer restarted by kafkajs during its disconnect left a connection open that kept a
// finished `rules put` from exiting.

const PARTITIONS = 6;
/** Span tenants by record number (i % 10): tenants 0 and 6 share partition 0, the busiest. */
const TENANT_OF = [0, 0, 0, 1, 2, 3, 4, 5, 6, 7];
const OFFSETS_TOPIC = '__consumer_offsets';

let cluster: KafkaCluster;
let kafka: Kafka;
let admin: Admin;
/** spanledger's own reads (dead-letter reader, group lag) through the facade, on kafkajs: an independent reader of what the workers stored. */
let facade: KafkaFacade;
let facadeAdmin: KafkaAdmin;
const workers: WorkerProcess[] = [];
const dirs: string[] = [];

/** One broker event under load; returns when the cluster is whole again. */
type BrokerEvent = (topic: string, busiest: () => number) => Promise<string[]>;

/** kill -9 of the leader of the busiest partition; restart once another broker took over. */
const killLeader: BrokerEvent = async (topic, busiest) => {
  const partition = busiest();
  const victim = (await leaders(admin, topic)).get(partition) as Node;
  const t0 = Date.now();
  await cluster.kill(victim);
  // The controller fences the dead broker after broker.session.timeout.ms and moves leadership.
  while ((await leaders(admin, topic)).get(partition) === victim) {
    if (Date.now() - t0 > 120_000) throw new Error(`partition ${partition} still led by the killed broker ${victim} after 120 s`);
    await sleep(200);
  }
  const moved = Date.now() - t0;
  await cluster.start(victim);
  const started = Date.now() - t0;
  await waitForFullIsr(admin, [topic, OFFSETS_TOPIC]);
  return [`kill -9 broker ${victim} (leader of partition ${partition}): leadership moved after ${ms(moved)}, restarted after ${ms(started)}, replicas in sync after ${ms(Date.now() - t0)}`];
};

/** Each broker in turn: clean stop, start, wait until every replica is in sync again. */
const rollingRestart: BrokerEvent = async (topic) => {
  const steps: string[] = [];
  for (const n of NODES) {
    const t0 = Date.now();
    await cluster.stop(n);
    const stopped = Date.now() - t0;
    await cluster.start(n);
    await waitForFullIsr(admin, [topic, OFFSETS_TOPIC]);
    steps.push(`broker ${n}: stopped in ${ms(stopped)}, back and in sync after ${ms(Date.now() - t0)}`);
  }
  return steps;
};

/** Bounds of the broker events as steps (see BoundedSteps): the leadership move (≤ 120 s), a restart (≤ 120 s), the replicas' catch-up (≤ 90 s each). */
const KILL_LEADER_BOUND_MS = 330_000;
const ROLLING_RESTART_BOUND_MS = 3 * 240_000;
const PUT_RULES_BOUND_MS = 60_000;
/**
 * Each scenario's waits are steps with their own bounds (BoundedSteps), so a wait that hangs fails
 * with its name, the steps before it and the workers' last lines. The tests' own timeouts are only
 * a backstop above the sum of a scenario's bounds (up to ~22 min with a kill, ~28 with a rolling restart);
 * a passing scenario takes 40-90 s here.
 */
const KILL_LEADER_TEST_MS = 24 * 60_000;
const ROLLING_RESTART_TEST_MS = 32 * 60_000;

const ms = (n: number) => `${(n / 1000).toFixed(1)} s`;

/**
 * One send per partition, never one spanning several leaders: kafkajs 2.2.4 loses records of such
 * a send when a leader dies mid-request. Its retry re-sends only to brokers that gave no answer,
 * looked up by the leaders of the first try, so the dead leader's partitions, now led by a broker
 * that answered for its own, are skipped, and send() resolves as if all were acknowledged (seen
 * here: 50 of 100 records of one send missing from the topic; tulios/kafkajs#1303).
 */
async function sendToOnePartition(producer: Producer, topic: string, messages: Message[]): Promise<void> {
  await producer.send({ topic, messages, acks: -1 });
}

/** Spans with acks=all at a steady rate (`perTick` every 200 ms) until stopped, each tenant to its own partition. */
class SpanLoad {
  readonly expected = new Map<string, { tenantId: string; day: string }>();
  /** Records acknowledged per partition. */
  readonly acked = new Map<number, number>();
  private stopping = false;
  private readonly done: Promise<void>;

  constructor(topic: string, perTick = 100) {
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    this.done = (async () => {
      await producer.connect();
      try {
        for (let i = 0; !this.stopping; ) {
          const tick = Date.now();
          const messages = [];
          const batch = new Map<string, { tenantId: string; day: string }>();
          for (const end = i + perTick; i < end; i += 1) {
            const tenant = TENANT_OF[i % TENANT_OF.length]!;
            const tenantId = tenantIdFor(tenant);
            const span = generateSpan(tenantId, i, Date.UTC(2026, 10, 23 + (i % 2), 10));
            batch.set(span.spanId, { tenantId, day: spanDay(span)! });
            messages.push({ key: tenantId, value: JSON.stringify(span), partition: tenant % PARTITIONS });
          }
          for (let p = 0; p < PARTITIONS; p += 1) {
            const part = messages.filter((m) => m.partition === p);
            if (part.length === 0) continue;
            await sendToOnePartition(producer, topic, part);
            for (const m of part) this.expected.set(JSON.parse(m.value).spanId as string, batch.get(JSON.parse(m.value).spanId as string)!);
            this.acked.set(p, (this.acked.get(p) ?? 0) + part.length);
          }
          await sleep(Math.max(0, 200 - (Date.now() - tick)));
        }
      } finally {
        await producer.disconnect();
      }
    })();
  }

  get total(): number {
    return this.expected.size;
  }

  busiest(): number {
    return [...this.acked].sort((a, b) => b[1] - a[1])[0]![0];
  }

  async reach(count: number, timeoutMs = 90_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.total < count) {
      if (Date.now() > deadline) throw new Error(`only ${this.total} of ${count} spans acknowledged within ${timeoutMs} ms`);
      await Promise.race([sleep(100), this.done]);
    }
  }

  async stop(): Promise<Map<string, { tenantId: string; day: string }>> {
    this.stopping = true;
    await this.done;
    return this.expected;
  }
}

/** Each expected span exactly once, in the folder of its tenant and day; nothing else. */
async function expectExactlyOnce(topic: string, dir: string, expected: Map<string, { tenantId: string; day: string }>): Promise<void> {
  const seen = new Map<string, Array<{ partition: number; offset: string }>>();
  const lines = readSpanLog(dir);
  for (const { tenantId, day, line } of lines) {
    const at = line._kafka as { partition: number; offset: string };
    seen.set(line.spanId, [...(seen.get(line.spanId) ?? []), { partition: at.partition, offset: at.offset }]);
    expect({ tenantId, day }, `span ${line.spanId}`).toEqual(expected.get(line.spanId));
  }
  const duplicates = [...seen].filter(([, at]) => at.length > 1);
  const missing = [...expected.keys()].filter((id) => !seen.has(id));
  if (duplicates.length > 0 || missing.length > 0) console.log(`[cluster] span log vs topic: ${await whereInTopic(topic, duplicates, missing)}`);
  expect({ duplicates: duplicates.length, missing: missing.length, lines: lines.length }).toEqual({ duplicates: 0, missing: 0, lines: expected.size });
}

/** For a failure message: where the doubled and missing spans are in the topic (doubled by the producer, or by the worker?). */
async function whereInTopic(topic: string, duplicates: Array<[string, Array<{ partition: number; offset: string }>]>, missing: string[]): Promise<string> {
  const records = await readDeadLetters(facade, topic);
  const inTopic = new Map<string, string[]>();
  for (const r of records) {
    const id = (JSON.parse(r.value!) as { spanId: string }).spanId;
    inTopic.set(id, [...(inTopic.get(id) ?? []), `${r.partition}/${r.offset}`]);
  }
  const show = (ids: string[]) => ids.slice(0, 8).map((id) => `${id} in topic at [${(inTopic.get(id) ?? []).join(' ')}]`).join('; ');
  return [
    `${records.length} records in the topic, ${inTopic.size} distinct spans`,
    `doubled in the span log: ${duplicates.length} (${duplicates.slice(0, 8).map(([id, at]) => `${id} stored from ${at.map((a) => `${a.partition}/${a.offset}`).join(' ')}`).join('; ')}) — ${show(duplicates.map(([id]) => id))}`,
    `missing: ${missing.length}, of them not in the topic: ${missing.filter((id) => !inTopic.has(id)).length} — ${show(missing)}`,
  ].join('\n  ');
}

/** Lag 0: the group's committed offset is the end offset on every partition. */
async function expectNoLag(group: string, topic: string): Promise<void> {
  await waitForCommitted(kafka, group, topic, 120_000);
  const lag = await groupLag(facadeAdmin, group, topic);
  expect(lag).toHaveLength(PARTITIONS);
  for (const p of lag) expect(p.committed, `partition ${p.partition}`).toBe(p.end);
}

/**
 * How long two freshly started workers may take to split the partitions. Usually 6-13 s (two
 * process starts, a join, and under cooperative-sticky a second round); the bound is generous
 * because CI's machine is shared and slower, and a slow split is not what these tests examine.
 */
const SPLIT_TIMEOUT_MS = 150_000;

/** Waits until the latest assignments of the workers cover all partitions, each worker having some. */
async function waitForSplit(group: WorkerProcess[]): Promise<void> {
  const started = Date.now();
  for (;;) {
    const latest = group.map((w) => {
      const last = w.lines.filter((l) => l.includes('"msg":"joined consumer group"')).at(-1);
      return last ? (JSON.parse(last) as { partitions: number[] }).partitions : [];
    });
    if (latest.every((p) => p.length > 0) && new Set(latest.flat()).size === PARTITIONS && latest.flat().length === PARTITIONS) {
      const took = Date.now() - started;
      if (took > 30_000) console.log(`[cluster] the workers took ${ms(took)} to split the partitions`);
      return;
    }
    if (Date.now() - started > SPLIT_TIMEOUT_MS) {
      // Every worker's group events (a split that never comes may be either member's doing).
      const events = group.map((w) => `${w.label} (exit ${w.child.exitCode ?? 'none'}):\n${w.lines.filter((l) => /group|join|revok|rebalanc|crash|"level":[45]0/.test(l)).slice(-25).join('\n')}`);
      throw new Error(`partitions not split between workers after ${ms(SPLIT_TIMEOUT_MS)}: ${JSON.stringify(latest)}\n${events.join('\n')}`);
    }
    await sleep(200);
  }
}

/**
 * A fresh cluster creates __consumer_offsets (50 partitions, RF 3) when a group first looks for
 * its coordinator, and on a loaded machine that can outlast a joining worker's retries: the first
 * scenario would then measure the topic's creation, not the broker event. Create it here and wait
 * until every replica of it is in sync.
 */
async function warmGroupCoordinators(): Promise<void> {
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      await admin.describeGroups(['spanledger-cluster-warm-up']);
      const topics = await admin.listTopics();
      if (topics.includes(OFFSETS_TOPIC)) break;
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`no group coordinator on the fresh cluster within 180 s: ${String(e)}`);
    }
    if (Date.now() > deadline) throw new Error(`${OFFSETS_TOPIC} not created within 180 s`);
    await sleep(500);
  }
  await waitForFullIsr(admin, [OFFSETS_TOPIC], 180_000);
}

/** Both workers still run (no exit under the broker event), then stop cleanly. */
async function expectWorkersSurvivedAndStop(group: WorkerProcess[]): Promise<void> {
  for (const w of group) expect(w.child.exitCode, w.lines.slice(-10).join('\n')).toBeNull();
  for (const w of group) w.kill('SIGTERM');
  for (const w of group) expect((await w.exited).code).toBe(0);
}

function report(what: string, steps: string[], watch: StallWatch, window: [number, number]): void {
  const before = Math.max(...watch.longestStalls(0, window[0] - 1).values());
  const during = [...watch.longestStalls(window[0], window[1])].sort((a, b) => a[0] - b[0]);
  console.log(
    `[cluster] ${what}\n  ${steps.join('\n  ')}\n  longest stall per partition (records acknowledged, none stored) during the event: ${during.map(([p, t]) => `p${p} ${ms(t)}`).join(', ')}; before it at most ${ms(before)}`,
  );
}

async function spanScenario(client: string, event: BrokerEvent, what: string): Promise<void> {
  const s = await createSpanTopics(kafka, cluster.brokers, PARTITIONS, { KAFKA_CLIENT: client, BATCH_MAX_RECORDS: '500' });
  dirs.push(s.dir);
  const group: WorkerProcess[] = [];
  const steps = new BoundedSteps(`${what} (${client})`, () => group);
  const meta = await steps.run('the topic known to the brokers', 65_000, () => topicMetadata(admin, s.topic));
  expect(meta.partitions.map((p) => p.replicas.length)).toEqual(Array(PARTITIONS).fill(3));
  group.push(new WorkerProcess('spans', { ...s.env, WORKER_ID: 'span-one' }), new WorkerProcess('spans', { ...s.env, WORKER_ID: 'span-two' }));
  workers.push(...group);
  await steps.run('workers split the partitions', SPLIT_TIMEOUT_MS + 5_000, () => waitForSplit(group));

  const load = new SpanLoad(s.topic);
  const stored = new SpanLogCounter(s.dir);
  const watch = new StallWatch(async () => ({ done: stored.count(), available: new Map(load.acked) }));
  await steps.run('8,000 spans acknowledged', 95_000, () => load.reach(8_000));
  const from = Date.now();
  const happened = await steps.run('the broker event', event === killLeader ? KILL_LEADER_BOUND_MS : ROLLING_RESTART_BOUND_MS, () => event(s.topic, () => load.busiest()));
  const to = Date.now();
  await sleep(3_000);
  const expected = await steps.run('the load stops', 120_000, () => load.stop());
  await steps.run('lag 0', 125_000, () => expectNoLag(s.group, s.topic));
  await watch.stop();
  report(`${what} (${client}, ${expected.size} spans)`, happened, watch, [from, to]);
  await steps.run('each span once in the span log', 60_000, () => expectExactlyOnce(s.topic, s.dir, expected));
  await steps.run('the workers stop', 60_000, () => expectWorkersSurvivedAndStop(group));
}

const RULE_TENANTS = (base: number): CorpusTenant[] => [
  { tenantId: tenantIdFor(base), rules: 'A' },
  { tenantId: tenantIdFor(base + 1), rules: 'B' },
];

async function readSignals(topic: string): Promise<Signal[]> {
  return (await readDeadLetters(facade, topic)).map((r) => JSON.parse(r.value!) as Signal);
}

/** `spanledger rules put`, once: on a fresh cluster it waits (bounded) for the rules topic it creates to be known to every broker it asks (whileTopicIsNew in src/kafka/topics.ts). */
async function putRules(tenantId: string, file: string, env: Record<string, string>): Promise<void> {
  await run(process.execPath, [CLI, 'rules', 'put', '--tenant', tenantId, '--file', file], { cwd: ROOT, env: { ...process.env, ...env }, timeout: PUT_RULES_BOUND_MS, killSignal: 'SIGKILL' });
}

/** Like produceCorpus (keyed by trace id, paced by event time, acks=all), but one send per partition (see sendToOnePartition). */
async function producePacedByPartition(topic: string, spans: CorpusSpan[], onProgress: (sent: number) => void): Promise<void> {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    for (let i = 0; i < spans.length; i += 100) {
      const chunk = spans.slice(i, i + 100);
      await sleep(Math.max(0, chunk[0]!.timestamp - Date.now()));
      for (let p = 0; p < PARTITIONS; p += 1) {
        const part = chunk.filter(({ span }) => parseInt(span.traceId.slice(0, 8), 16) % PARTITIONS === p);
        if (part.length > 0) await sendToOnePartition(producer, topic, part.map(({ span, timestamp }) => ({ key: span.traceId, value: JSON.stringify(span), timestamp: String(timestamp), partition: p })));
      }
      onProgress(i + chunk.length);
    }
  } finally {
    await producer.disconnect();
  }
}

/** The rule scenarios' TRACE_IDLE_MS: longer than any outage of a broker event (see ruleScenario). */
const RULE_IDLE_MS = 90_000;

/**
 * One span per partition, of a tenant without rules, stamped `at`: each partition's stream time
 * passes every open trace's idle bound, so the last traces close by event time (reason idle) at
 * once instead of after TRACE_IDLE_MS of wall clock, and the group's lag can reach 0.
 */
async function advanceEventTime(topic: string, at: number): Promise<void> {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    const span = generateSpan(tenantIdFor(Date.now() % 2 ** 40 + 7), 0);
    for (let p = 0; p < PARTITIONS; p += 1) {
      await sendToOnePartition(producer, topic, [{ key: `clock-${p}`, value: JSON.stringify(span), timestamp: String(at), partition: p }]);
    }
  } finally {
    await producer.disconnect();
  }
}

/** Traces closed by reason and spans not evaluated (late: their trace had closed), summed over the workers' /metrics. */
async function traceClosures(group: WorkerProcess[]): Promise<Map<string, number>> {
  const sums = new Map<string, number>();
  for (const w of group) {
    const port = (await w.waitForLog('worker started')).metricsPort as number;
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    for (const m of text.matchAll(/^spanledger_rule_(traces_closed_total|spans_not_evaluated_total)\{reason="(\w+)"\} (\d+)/gm)) {
      const key = `${m[1]!.startsWith('traces') ? 'closed' : 'not evaluated'} ${m[2]}`;
      sums.set(key, (sums.get(key) ?? 0) + Number(m[3]));
    }
  }
  return sums;
}

/** Committed vs end offsets of the group, sampled: a partition stalls while it has records past its commit and the commit does not move. */
async function lagWatch(group: string, topic: string, ends: Map<number, number>): Promise<{ watch: StallWatch; stop: () => Promise<void> }> {
  const sampler = kafkaFacade(cluster.brokers, 'kafkajs').admin();
  await sampler.connect();
  const watch = new StallWatch(async () => {
    const lag = await groupLag(sampler, group, topic);
    for (const p of lag) ends.set(p.partition, Number(p.end));
    return { done: new Map(lag.map((p) => [p.partition, Number(p.committed)])), available: new Map(lag.map((p) => [p.partition, Number(p.end)])) };
  }, 250);
  return { watch, stop: async () => (await watch.stop(), await sampler.disconnect()) };
}

async function ruleScenario(client: string, event: BrokerEvent, what: string): Promise<void> {
  const spansTopic = uniqueName('spans');
  const signalsTopic = `${spansTopic}.signals`;
  const group = uniqueName('rules');
  const quarantine = tempDir('quarantine');
  dirs.push(quarantine);
  await createTopic(kafka, spansTopic, PARTITIONS);
  await createTopic(kafka, signalsTopic, PARTITIONS);
  const env = {
    KAFKA_CLIENT: client,
    KAFKA_BROKERS: cluster.brokers,
    SPANS_TOPIC: spansTopic,
    RULES_TOPIC: `${spansTopic}.rules`,
    RULES_GROUP: group,
    RULES_DLQ_TOPIC: `${spansTopic}.rules-dlq`,
    RULES_CHECKPOINT_TOPIC: `${spansTopic}.checkpoints`,
    SIGNALS_TOPIC: signalsTopic,
    QUARANTINE_DIR: quarantine,
    // Longer than any stretch in which a partition can receive nothing during the broker event,
    // else the wall-clock fallback (a partition that receives nothing for TRACE_IDLE_MS closes its
    // open traces, reason idle_wall: README "Rule workers") closes traces in the middle and
    // their later spans are late, so violations seen only in the whole trace go unsignalled. The
    // outage is the controller fencing the dead broker (broker.session.timeout.ms, 9 s) plus the
    // clients' metadata refresh and the test's one producer waiting on the dead leader's partition
    // (so every partition receives nothing meanwhile): ~9-10 s on a quiet machine, but past 25 s
    // under a loaded CI run (the first setting, 25 s, left late spans there once; 1.5 s before it
    // left 124 late spans and 6 of 1125 signals missing). Event time (the record timestamps set
    // below) closes traces as usual, and the last traces close by event time too: see
    // advanceEventTime. So this bound costs no waiting.
    TRACE_IDLE_MS: String(RULE_IDLE_MS),
    RULES_CHECKPOINT_INTERVAL_MS: '200',
    KAFKA_SESSION_TIMEOUT_MS: '8000',
    KAFKA_REBALANCE_TIMEOUT_MS: '10000',
    KAFKA_HEARTBEAT_INTERVAL_MS: '1000',
    BATCH_MAX_AGE_MS: '100',
    BATCH_MAX_RECORDS: '200',
  };
  const group2: WorkerProcess[] = [];
  const steps = new BoundedSteps(`${what} (${client})`, () => group2);
  const tenants = RULE_TENANTS(Date.now() % 2 ** 40);
  for (const [tenant, rules] of [[tenants[0]!, RULES_A], [tenants[1]!, RULES_B]] as const) {
    const file = path.join(quarantine, `rules-${tenant.rules}.yaml`);
    fs.writeFileSync(file, rules);
    await steps.run(`rules put (${tenant.rules})`, PUT_RULES_BOUND_MS + 5_000, () => putRules(tenant.tenantId, file, env));
  }
  // Started after the rules are on their topic (the workers read it at start).
  group2.push(new WorkerProcess('rules', { ...env, WORKER_ID: 'rules-one' }), new WorkerProcess('rules', { ...env, WORKER_ID: 'rules-two' }));
  workers.push(...group2);
  await steps.run('workers split the partitions', SPLIT_TIMEOUT_MS + 5_000, () => waitForSplit(group2));

  // About 30 s of traces in real time (paced by event time), ~12 spans each, many open at once.
  const traces = corpus({ tenants, traces: 1500, fillerSpans: 6, startMs: Date.now() + 1_000, traceGapMs: 20, spanGapMs: 60, seed: spansTopic });
  const spans = spansInTimeOrder(traces);
  const expected = expectedSignals(traces);
  let sent = 0;
  const producing = producePacedByPartition(spansTopic, spans, (n) => (sent = n));
  producing.catch(() => {}); // awaited below; a failure before then must not go unhandled
  const ends = new Map<number, number>();
  const { watch, stop } = await lagWatch(group, spansTopic, ends);
  await steps.run('a third of the spans produced', 90_000, async () => {
    while (sent < spans.length / 3) await Promise.race([sleep(100), producing]);
  });
  const from = Date.now();
  const happened = await steps.run('the broker event', event === killLeader ? KILL_LEADER_BOUND_MS : ROLLING_RESTART_BOUND_MS, () =>
    event(spansTopic, () => [...ends].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 0),
  );
  const to = Date.now();
  await steps.run(`the rest of the spans produced (${sent} of ${spans.length} when the event ended)`, 180_000, () => producing);
  await steps.run('event time advanced past the last traces', 60_000, () => advanceEventTime(spansTopic, spans.at(-1)!.timestamp + RULE_IDLE_MS + 1));
  await steps.run('lag 0', 125_000, () => expectNoLag(group, spansTopic));
  await stop();
  report(`${what} (${client}, rule workers, ${spans.length} spans, ${expected.size} expected signals; committed offsets wait for open traces, which close only when the last spans pass, so the stalls below span the run)`, happened, watch, [from, to]);
  const inTopic = (await steps.run('the spans topic read back', 60_000, () => readDeadLetters(facade, spansTopic))).length;
  const closures = await steps.run('trace closures from /metrics', 30_000, () => traceClosures(group2));
  console.log(`[cluster] spans topic holds ${inTopic} records of ${spans.length} produced; traces: ${[...closures].map(([k, v]) => `${k} ${v}`).join(', ')}`);
  expect(inTopic, 'every produced span is in the spans topic').toBe(spans.length + PARTITIONS);
  // A late span is one whose trace had closed already: a trace split by the outage (see TRACE_IDLE_MS).
  expect(closures.get('not evaluated late') ?? 0, 'late spans').toBe(0);

  const signals = await steps.run('the signals topic read back', 60_000, () => readSignals(signalsTopic));
  const byId = new Map<string, Signal>();
  for (const x of signals) {
    // A signal published again after a retry is the same signal (same id, same content).
    if (byId.has(x.id)) expect(JSON.stringify(x)).toBe(JSON.stringify(byId.get(x.id)));
    byId.set(x.id, x);
  }
  const keys = [...byId.values()].map((x) => `${x.tenantId}/${x.traceId}/${x.ruleId}`);
  expect(keys.length, 'one signal id per violation').toBe(new Set(keys).size);
  expect(new Set(keys)).toEqual(expected);
  console.log(`[cluster] ${signals.length - byId.size} repeated copies of ${byId.size} signals on the signals topic`);
  await steps.run('the workers stop', 60_000, () => expectWorkersSurvivedAndStop(group2));
}

async function signalScenario(client: string, event: BrokerEvent, what: string): Promise<void> {
  const tb = await tigerBeetle();
  const s = await signalSetup(kafka, cluster.brokers, PARTITIONS, { ...tigerBeetleEnv(tb), KAFKA_CLIENT: client, DUCKDB_IDLE_TIMEOUT_MS: '1000', BATCH_MAX_RECORDS: '500' });
  dirs.push(s.duckdbDir);
  const group = [new WorkerProcess('signals', { ...s.env, WORKER_ID: 'signals-one' }), new WorkerProcess('signals', { ...s.env, WORKER_ID: 'signals-two' })];
  workers.push(...group);
  const steps = new BoundedSteps(`${what} (${client})`, () => group);
  await steps.run('workers split the partitions', SPLIT_TIMEOUT_MS + 5_000, () => waitForSplit(group));
  // ~15 s of signals at 1,000/s (longer with the outage): the leader dies a third of the way in.
  const load = new SignalLoad(kafka, s.topic, { total: 15_000, tenants: 8, partitions: PARTITIONS, perTick: 200 }, sendToOnePartition);
  const { watch, stop } = await lagWatch(s.group, s.topic, new Map());
  await steps.run('5,000 signals acknowledged', 95_000, () => load.reach(5_000));
  const from = Date.now();
  const happened = await steps.run('the broker event', event === killLeader ? KILL_LEADER_BOUND_MS : ROLLING_RESTART_BOUND_MS, () => event(s.topic, () => load.busiest()));
  const to = Date.now();
  await steps.run('the rest of the signals produced', 180_000, () => load.done);
  await steps.run('lag 0', 125_000, () => expectNoLag(s.group, s.topic));
  await stop();
  report(`${what} (${client}, signal workers, ${load.acknowledged.length} signals)`, happened, watch, [from, to]);
  await steps.run('the workers stop', 60_000, () => expectWorkersSurvivedAndStop(group));
  console.log(`[cluster] ${await steps.run('each signal once in both stores', 120_000, () => expectEachSignalOnceInBothStores(tb, s.duckdbDir, s.env, load.acknowledged, load.tenantIds))}`);
}

describe.skipIf(skipReason !== null)('workers on a 3-broker KRaft cluster (RF 3, min ISR 2, acks=all)', () => {
  beforeAll(async () => {
    cluster = await KafkaCluster.start();
    kafka = clusterClient(cluster.brokers);
    admin = kafka.admin();
    facade = kafkaFacade(cluster.brokers, 'kafkajs');
    facadeAdmin = facade.admin();
    await facadeAdmin.connect();
    await admin.connect();
    await warmGroupCoordinators();
  }, 360_000);

  afterEach(async () => {
    await killWorkers(workers);
    // A failed test may leave a broker down: bring every node back for the next one.
    for (const n of NODES) if (!cluster.isRunning(n)) await cluster.start(n);
  });

  afterAll(async () => {
    await killWorkers(workers);
    await admin?.disconnect();
    await facadeAdmin?.disconnect();
    await cluster?.down();
    await stopTigerBeetle();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  }, 120_000);

  describe.each(CLIENTS)('workers on %s', (client) => {
    it('spans: kill -9 of the busiest partition leader mid-stream and its restart: each span stored once, lag 0, no worker exit', async () => {
      await spanScenario(client, killLeader, 'spans, kill -9 of a leader');
    }, KILL_LEADER_TEST_MS);

    it('spans: a rolling restart of all three brokers under load: each span stored once, lag 0, no worker exit', async () => {
      await spanScenario(client, rollingRestart, 'spans, rolling restart');
    }, ROLLING_RESTART_TEST_MS);

    it('rules: kill -9 of the busiest partition leader mid-stream and its restart: each expected violation signalled once, lag 0, no worker exit', async () => {
      await ruleScenario(client, killLeader, 'rules, kill -9 of a leader');
    }, KILL_LEADER_TEST_MS);

    // The traces' ~30 s of spans end during the restarts; lag 0 comes after the last broker is back.
    it('rules: a rolling restart of all three brokers under load: each expected violation signalled once, lag 0, no worker exit', async () => {
      await ruleScenario(client, rollingRestart, 'rules, rolling restart');
    }, ROLLING_RESTART_TEST_MS);

    it.skipIf(tbSkipReason !== null)('signals: kill -9 of the busiest partition leader mid-stream and its restart: every signal stored once in TigerBeetle and DuckDB, lag 0, no worker exit', async () => {
      await signalScenario(client, killLeader, 'signals, kill -9 of a leader');
    }, KILL_LEADER_TEST_MS);

    it.skipIf(tbSkipReason !== null)('signals: a rolling restart of all three brokers under load: every signal stored once in TigerBeetle and DuckDB, lag 0, no worker exit', async () => {
      await signalScenario(client, rollingRestart, 'signals, rolling restart');
    }, ROLLING_RESTART_TEST_MS);
  });
});
