import fs from 'node:fs';
import path from 'node:path';
import type { kafkaSettings, Parsed } from '../config/settings.js';
import { archiveSettings, archiveWorkerSettings, ruleSettings, ruleWorkerSettings, signalSettings, signalWorkerSettings, spanSettings, workerSettings } from '../config/settings.js';
import { envValues, resolveSettings } from '../config/load.js';
import { createKafkaFacade, groupLag } from '../kafka/client.js';
import type { KafkaAdmin } from '../kafka/facade.js';
import { createLogger } from '../observability/logger.js';
import { createRegistry } from '../observability/metrics.js';
import { summarizeSpanLog } from '../sinks/spanlog/summary.js';
import { renderSpanLogSummary } from './spanlog.js';
import { startLocalReplica, type LocalReplica } from '../sinks/tigerbeetle/local-replica.js';
import { createSignalWorker } from '../workers/signal-worker.js';
import { createSpanWorker } from '../workers/span-worker.js';
import { createRuleWorker } from '../workers/rule-worker.js';
import { createArchiveWorker } from '../workers/archive-worker.js';
import { archiveSummary, openStore, renderArchiveSummary, renderVerifyReport } from './archive-command.js';
import { verifyArchive } from './archive-verify.js';
import { corpus, expectedSignals, produceCorpus, RULES_A, RULES_B, spansInTimeOrder, type CorpusTenant } from '../devtools/trace-corpus.js';
import { tenantIdFor } from '../model/generate.js';
import type { Signal } from '../model/signal.js';
import { putRules, renderPutPlan } from './rules-topic.js';
import { makeTable } from './table.js';
import type { Worker } from '../workers/worker.js';
import { readDeadLetters, renderDeadLetterTable } from './dlq.js';
import { produce } from './produce.js';
import { renderSignalStats, signalStats } from './signals.js';

export interface DemoOptions {
  count: number;
  tenants: number;
  bad: number;
  dataDir: string;
  kafka: Parsed<typeof kafkaSettings>;
}

async function waitForLag(admin: KafkaAdmin, group: string, topic: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const lag = await groupLag(admin, group, topic).catch(() => undefined);
    if (lag && lag.every((p) => p.lag === 0n)) return true;
    const left = lag?.reduce((n, p) => n + p.lag, 0n);
    process.stderr.write(`demo: waiting for the ${topic} workers to commit everything${left === undefined ? '' : ` (${left} records left)`}...\n`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  return false;
}

/** Where the demo finds TigerBeetle: a running cluster, a binary to start, or nowhere. */
async function findTigerBeetle(dir: string): Promise<{ address: string; replica?: LocalReplica; why: string } | { missing: string }> {
  if (process.env.TB_ADDRESS) return { address: process.env.TB_ADDRESS, why: `TigerBeetle at TB_ADDRESS=${process.env.TB_ADDRESS}` };
  if (process.env.TIGERBEETLE_BIN) {
    const replica = await startLocalReplica(process.env.TIGERBEETLE_BIN, dir);
    return { address: replica.address, replica, why: `a TigerBeetle replica started from TIGERBEETLE_BIN on ${replica.address}` };
  }
  return {
    missing:
      'demo: signal workers NOT run: no TigerBeetle. Set TB_ADDRESS to a running cluster (tigerbeetle-node 0.17.5 compatible) or TIGERBEETLE_BIN to a tigerbeetle server binary, then run make demo again.',
  };
}

/** Signals found vs expected, per tenant and rule. */
function renderSignalsFound(found: Signal[], expected: Set<string>, tenants: CorpusTenant[]): string {
  const count = new Map<string, { found: number; expected: number }>();
  const row = (tenantId: string, ruleId: string) => {
    const key = `${tenantId} ${ruleId}`;
    let r = count.get(key);
    if (r === undefined) count.set(key, (r = { found: 0, expected: 0 }));
    return r;
  };
  for (const s of found) row(s.tenantId, s.ruleId).found++;
  for (const e of expected) {
    const [tenantId, , ruleId] = e.split('/');
    row(tenantId!, ruleId!).expected++;
  }
  const kind = new Map(tenants.map((t) => [t.tenantId, t.rules]));
  const table = makeTable({ head: ['tenant', 'rules', 'rule', 'signals found', 'expected'] });
  for (const [key, r] of [...count].sort(([a], [b]) => a.localeCompare(b))) {
    const [tenantId, ruleId] = key.split(' ');
    table.push([tenantId!, kind.get(tenantId!) ?? '', ruleId!, r.found, r.expected]);
  }
  return table.toString();
}

/**
 * The demo: the whole pipeline on fresh topics. Span workers keep every span; rule workers
 * assemble traces, apply each tenant's rules (put from two example rule files) and produce a
 * signal per violation; signal workers (when a TigerBeetle is available) store the signals.
 * Traces are made so that the violations are known: the demo checks the expected ones and only
 * those were found. Topics, groups and folders get a run id so that runs don't mix.
 */
export async function runDemo(o: DemoOptions): Promise<number> {
  const run = Date.now().toString(36);
  const root = path.join(o.dataDir, run);
  // Workers log errors only: the demo prints what matters itself.
  const logger = createLogger('error');
  const env = {
    ...process.env,
    SPANS_TOPIC: `demo-${run}.spans`,
    SPANS_DLQ_TOPIC: `demo-${run}.spans.dlq`,
    SPANS_GROUP: `demo-${run}-spans`,
    SPANLOG_DIR: path.join(root, 'spanlog'),
    RULES_TOPIC: `demo-${run}.rules`,
    RULES_GROUP: `demo-${run}-rules`,
    RULES_DLQ_TOPIC: `demo-${run}.spans.rules.dlq`,
    RULES_CHECKPOINT_TOPIC: `demo-${run}.rules.checkpoints`,
    TRACE_IDLE_MS: '2000',
    RULES_CHECKPOINT_INTERVAL_MS: '500',
    SIGNALS_TOPIC: `demo-${run}.signals`,
    SIGNALS_DLQ_TOPIC: `demo-${run}.signals.dlq`,
    SIGNALS_GROUP: `demo-${run}-signals`,
    DUCKDB_DIR: path.join(root, 'duckdb'),
    DUCKDB_IDLE_TIMEOUT_MS: '1000',
    QUARANTINE_DIR: path.join(root, 'quarantine'),
    ARCHIVE_GROUP: `demo-${run}-archive`,
    ARCHIVE_DLQ_TOPIC: `demo-${run}.spans.archive.dlq`,
    ARCHIVE_PREFIX: `demo-${run}`,
    ARCHIVE_CYCLE_MAX_AGE_MS: '2000',
    ARCHIVE_SCRATCH_DIR: path.join(root, 'archive-scratch'),
    METRICS_PORT: '0',
  };
  const spans = resolveSettings(spanSettings, envValues(spanSettings, env), {});
  const worker = resolveSettings(workerSettings, envValues(workerSettings, env), {});
  const signalWorkerConfig = resolveSettings(signalWorkerSettings, envValues(signalWorkerSettings, env), {});
  const rules = resolveSettings(ruleSettings, envValues(ruleSettings, env), {});
  const ruleWorker = resolveSettings(ruleWorkerSettings, envValues(ruleWorkerSettings, env), {});
  const signals = resolveSettings(signalSettings, envValues(signalSettings, env), {});
  // Archive workers run when an S3-compatible server is configured (`make demo` starts one with
  // scripts/s3.sh when versitygw can be had, and exports its ARCHIVE_ENDPOINT).
  const archive = process.env.ARCHIVE_ENDPOINT ? resolveSettings(archiveSettings, envValues(archiveSettings, env), {}) : undefined;
  const archiveWorker = resolveSettings(archiveWorkerSettings, envValues(archiveWorkerSettings, env), {});
  const kafka = { ...o.kafka, topicPartitions: 3 };
  const client = await createKafkaFacade({ client: kafka.client, brokers: kafka.brokers, clientId: 'spanledger-demo', logger });
  const admin = client.admin();
  await admin.connect();
  let ok = true;
  const stoppers: Array<() => Promise<unknown>> = [];
  const running = new Map<object, () => Promise<boolean>>();
  const started = async <T>(name: string, w: Worker<T>) => {
    await w.start();
    running.set(w, () => w.stop());
    console.log(`demo: ${name} started (metrics on http://127.0.0.1:${w.metricsPort}/metrics)`);
    return w;
  };
  /** Stops a worker the demo is done with; true when its graceful stop was clean. */
  const stop = async <T>(w: Worker<T>) => {
    running.delete(w);
    return w.stop();
  };
  try {
    console.log(`demo: Kafka at ${kafka.brokers.join(',')}; data in ${root}`);
    const tb = await findTigerBeetle(path.join(root, 'tigerbeetle'));
    if ('replica' in tb && tb.replica) stoppers.push(() => tb.replica!.stop());

    // Each tenant gets one of two rule files, so a signal from the wrong tenant's rules shows.
    const tenantBase = Date.now() % 2 ** 40;
    const tenants: CorpusTenant[] = Array.from({ length: o.tenants }, (_, i) => ({ tenantId: tenantIdFor(tenantBase + i), rules: i % 2 === 0 ? 'A' : 'B' }));
    fs.mkdirSync(root, { recursive: true });
    for (const [kind, text] of [['A', RULES_A], ['B', RULES_B]] as const) fs.writeFileSync(path.join(root, `rules-${kind}.yaml`), text);
    for (const t of tenants) {
      const plan = await putRules({ kafka: client, topic: rules.topic, logger, timeoutMs: 30_000 }, t.tenantId, path.join(root, `rules-${t.rules}.yaml`), false);
      console.log(`demo: rules ${t.rules} → ${renderPutPlan(plan, rules.topic, t.tenantId).split('\n').pop()}`);
    }

    const spanWorker = await started('span worker', createSpanWorker({ kafka, worker, spans }, logger, createRegistry(false)));
    const archiving =
      archive === undefined
        ? (console.log('demo: archive workers NOT run: no S3 server (ARCHIVE_ENDPOINT unset; `make demo` starts one with scripts/s3.sh where versitygw can be built)'), undefined)
        : await started(`archive worker to ${archive.endpoint}/${archive.bucket}/${archive.prefix}`, createArchiveWorker({ kafka, worker: archiveWorker, spans, archive }, logger, createRegistry(false)));
    await started('rule worker', createRuleWorker({ kafka, worker, spans, rules, ruleWorker, signals }, logger, createRegistry(false)));
    let signalWorker: Worker<unknown> | undefined;
    if ('missing' in tb) console.log(tb.missing);
    else signalWorker = await started(`signal worker with ${tb.why}`, createSignalWorker({ kafka, worker: signalWorkerConfig, signals: { ...signals, tbAddress: tb.address } }, logger, createRegistry(false)) as Worker<unknown>);

    // Traces of ~8 spans, one starting every 10 ms of event time, so many overlap.
    const traces = corpus({ tenants, traces: Math.max(1, Math.round(o.count / 8)), fillerSpans: 3, startMs: Date.now() - 60_000, traceGapMs: 10, spanGapMs: 50, seed: run });
    const traceSpans = spansInTimeOrder(traces);
    await produceCorpus(client, spans.topic, traceSpans, { chunk: 500 });
    const expected = expectedSignals(traces);
    console.log(`demo: produced ${traceSpans.length} spans of ${traces.length} traces (JSON, keyed by trace id); ${expected.size} rule violations among them`);
    const bad = await produce(client, { kind: 'spans', topic: spans.topic, count: 0, tenants: o.tenants, tenantBase, rate: 0, bad: o.bad, batchSize: 500, topicPartitions: 3, maxMessageBytes: worker.maxMessageBytes, progress: false });
    console.log(`demo: produced ${bad.bad} malformed records`);
    // The same topic also gets what the OpenTelemetry Collector writes: OTLP requests of 100
    // spans, in protobuf and in OTLP/JSON (SPANS_ENCODING=auto tells them apart per record), for
    // tenants without rules (kept in the span log, not evaluated).
    let otlpSpans = 0;
    for (const encoding of ['otlp_proto', 'otlp_json'] as const) {
      const otlp = await produce(client, { kind: 'spans', encoding, spansPerMessage: 100, topic: spans.topic, count: Math.ceil(o.count / 4), tenants: o.tenants, tenantBase: tenantBase + o.tenants, rate: 0, bad: 0, batchSize: 500, topicPartitions: 3, maxMessageBytes: worker.maxMessageBytes, progress: true });
      otlpSpans += otlp.produced;
      console.log(`demo: produced ${otlp.produced} spans as ${otlp.messages} ${encoding} requests (tenant in the resource attribute tenant.id)`);
    }

    // Span path.
    const spansDrained = await waitForLag(admin, spans.group, spans.topic, 120_000);
    const spansClean = await stop(spanWorker);
    const rows = await summarizeSpanLog(spans.spanlogDir);
    const written = rows.reduce((n, r) => n + r.spans, 0);
    console.log(renderSpanLogSummary(spans.spanlogDir, rows));
    const spanLetters = await readDeadLetters(client, spans.dlqTopic);
    console.log(renderDeadLetterTable(spanLetters));
    const spansOk = spansDrained && spansClean && written === traceSpans.length + otlpSpans && spanLetters.length === o.bad;
    console.log(`demo: spans: ${written} in the span log (${traceSpans.length} produced as JSON + ${otlpSpans} as OTLP), ${spanLetters.length} in ${spans.dlqTopic} (${o.bad} malformed produced): ${spansOk ? 'OK' : 'FAILED'}`);
    ok &&= spansOk;

    // Archive path: every span once in the bucket as Parquet, checked by `archive verify`.
    if (archive !== undefined && archiving !== undefined) {
      const drained = await waitForLag(admin, archive.group, spans.topic, 180_000);
      const clean = await stop(archiving);
      const store = await openStore(archive);
      try {
        console.log(renderArchiveSummary(`${archive.endpoint}/${archive.bucket}/${archive.prefix}`, await archiveSummary(store, archive.prefix, {})));
        const report = await verifyArchive(client, store, { topic: spans.topic, group: archive.group, prefix: archive.prefix, decoder: { maxMessageBytes: archiveWorker.maxMessageBytes, options: spans }, cacheDir: path.join(root, 'archive-cache') });
        console.log(renderVerifyReport(report));
        const letters = await readDeadLetters(client, archive.dlqTopic);
        const archiveOk = drained && clean && report.ok && report.archivedSpans === traceSpans.length + otlpSpans && letters.length === o.bad;
        console.log(`demo: archive: ${report.archivedSpans} spans in ${report.objects} Parquet objects, ${letters.length} in ${archive.dlqTopic}: ${archiveOk ? 'OK' : 'FAILED'}`);
        ok &&= archiveOk;
      } finally {
        store.close();
      }
    }

    // Rule path: the rule workers commit a partition's end only once every trace in it closed
    // (TRACE_IDLE_MS without a span, on the wall clock once the partition is quiet).
    const rulesDrained = await waitForLag(admin, ruleWorker.group, spans.topic, 120_000);
    const found = (await readDeadLetters(client, signals.topic)).map((r) => JSON.parse(r.value!) as Signal);
    const foundKeys = new Set(found.map((x) => `${x.tenantId}/${x.traceId}/${x.ruleId}`));
    console.log(renderSignalsFound(found, expected, tenants));
    const ruleLetters = await readDeadLetters(client, ruleWorker.dlqTopic);
    const missing = [...expected].filter((k) => !foundKeys.has(k));
    const unexpected = [...foundKeys].filter((k) => !expected.has(k));
    const rulesOk = rulesDrained && missing.length === 0 && unexpected.length === 0 && new Set(found.map((x) => x.id)).size === expected.size && ruleLetters.length === o.bad;
    console.log(
      `demo: rules: ${foundKeys.size} violations found in ${signals.topic} (${expected.size} expected, ${missing.length} missing, ${unexpected.length} unexpected), ${ruleLetters.length} in ${ruleWorker.dlqTopic}: ${rulesOk ? 'OK' : 'FAILED'}`,
    );
    ok &&= rulesOk;

    // Signal path.
    if (signalWorker !== undefined) {
      const drained = await waitForLag(admin, signals.group, signals.topic, 120_000);
      const clean = await stop(signalWorker);
      const stats = await signalStats({ ...signals, tbAddress: 'address' in tb ? tb.address : signals.tbAddress }, undefined);
      console.log(renderSignalStats(stats));
      const letters = await readDeadLetters(client, signals.dlqTopic);
      const total = stats.reduce((n, r) => n + ('total' in r.duckdb ? r.duckdb.total : 0), 0);
      const signalsOk = drained && clean && total === expected.size && stats.every((r) => r.agree) && letters.length === 0;
      console.log(`demo: signals: ${total} in DuckDB and TigerBeetle (${expected.size} violations), ${letters.length} in ${signals.dlqTopic}: ${signalsOk ? 'OK' : 'FAILED'}`);
      ok &&= signalsOk;
    }
  } finally {
    for (const stopWorker of running.values()) await stopWorker().catch(() => undefined);
    for (const stopOther of stoppers) await stopOther().catch(() => undefined);
    await admin.disconnect();
  }
  console.log(ok ? 'demo: OK' : 'demo: FAILED');
  return ok ? 0 : 1;
}
