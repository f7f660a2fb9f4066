import path from 'node:path';
import type { kafkaSettings, Parsed } from '../config/settings.js';
import { signalSettings, spanSettings, workerSettings } from '../config/settings.js';
import { envValues, resolveSettings } from '../config/load.js';
import { createKafka, groupLag } from '../kafka/client.js';
import { createLogger } from '../observability/logger.js';
import { createRegistry } from '../observability/metrics.js';
import { summarizeSpanLog } from '../sinks/spanlog/summary.js';
import { renderSpanLogSummary } from './spanlog.js';
import { startLocalReplica, type LocalReplica } from '../sinks/tigerbeetle/local-replica.js';
import { createSignalWorker } from '../workers/signal-worker.js';
import { createSpanWorker } from '../workers/span-worker.js';
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

type Admin = ReturnType<ReturnType<typeof createKafka>['admin']>;

async function waitForLag(admin: Admin, group: string, topic: string, timeoutMs: number): Promise<boolean> {
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

/**
 * The demo: span workers (and signal workers, when a TigerBeetle is available) on fresh topics,
 * a sample load with a few malformed records, then what was written where. Topics, groups and
 * folders get a run id so that runs don't mix.
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
    SIGNALS_TOPIC: `demo-${run}.signals`,
    SIGNALS_DLQ_TOPIC: `demo-${run}.signals.dlq`,
    SIGNALS_GROUP: `demo-${run}-signals`,
    DUCKDB_DIR: path.join(root, 'duckdb'),
    DUCKDB_IDLE_TIMEOUT_MS: '1000',
    METRICS_PORT: '0',
  };
  const spans = resolveSettings(spanSettings, envValues(spanSettings, env), {});
  const worker = resolveSettings(workerSettings, envValues(workerSettings, env), {});
  const kafka = { ...o.kafka, topicPartitions: 3 };
  const client = createKafka({ brokers: kafka.brokers, clientId: 'spanledger-demo', logger });
  const admin = client.admin();
  await admin.connect();
  let ok = true;
  const stoppers: Array<() => Promise<unknown>> = [];
  try {
    console.log(`demo: Kafka at ${kafka.brokers.join(',')}; data in ${root}`);
    const tb = await findTigerBeetle(path.join(root, 'tigerbeetle'));
    if ('replica' in tb && tb.replica) stoppers.push(() => tb.replica!.stop());

    // Span path.
    const spanWorker = createSpanWorker({ kafka, worker, spans }, logger, createRegistry(false));
    await spanWorker.start();
    stoppers.unshift(() => spanWorker.stop());
    console.log(`demo: span worker started (metrics on http://127.0.0.1:${spanWorker.metricsPort}/metrics)`);
    const sent = await produce(client, { kind: 'spans', topic: spans.topic, count: o.count, tenants: o.tenants, rate: 0, bad: o.bad, batchSize: 500, topicPartitions: 3, maxMessageBytes: worker.maxMessageBytes, progress: true });
    console.log(`demo: produced ${sent.produced} spans (+${sent.bad} malformed) for ${o.tenants} tenants in ${sent.seconds.toFixed(2)} s (${sent.rate}/s)`);
    // The same topic also gets what the OpenTelemetry Collector writes: OTLP requests of 100
    // spans, in protobuf and in OTLP/JSON (SPANS_ENCODING=auto tells them apart per record).
    let otlpSpans = 0;
    for (const encoding of ['otlp_proto', 'otlp_json'] as const) {
      const otlp = await produce(client, { kind: 'spans', encoding, spansPerMessage: 100, topic: spans.topic, count: Math.ceil(o.count / 4), tenants: o.tenants, rate: 0, bad: 0, batchSize: 500, topicPartitions: 3, maxMessageBytes: worker.maxMessageBytes, progress: true });
      otlpSpans += otlp.produced;
      console.log(`demo: produced ${otlp.produced} spans as ${otlp.messages} ${encoding} requests (tenant in the resource attribute tenant.id)`);
    }
    const spansDrained = await waitForLag(admin, spans.group, spans.topic, 120_000);
    const spansClean = await spanWorker.stop();
    stoppers.shift();
    const rows = await summarizeSpanLog(spans.spanlogDir);
    const written = rows.reduce((n, r) => n + r.spans, 0);
    console.log(renderSpanLogSummary(spans.spanlogDir, rows));
    const spanLetters = await readDeadLetters(client, spans.dlqTopic);
    console.log(renderDeadLetterTable(spanLetters));
    const spansOk = spansDrained && spansClean && written === o.count + otlpSpans && spanLetters.length === o.bad;
    console.log(`demo: spans: ${written} in the span log (${o.count} produced as JSON + ${otlpSpans} as OTLP), ${spanLetters.length} in ${spans.dlqTopic} (${o.bad} malformed produced): ${spansOk ? 'OK' : 'FAILED'}`);
    ok &&= spansOk;

    // Signal path.
    if ('missing' in tb) {
      console.log(tb.missing);
    } else {
      console.log(`demo: signal worker with ${tb.why}`);
      const signals = resolveSettings(signalSettings, envValues(signalSettings, { ...env, TB_ADDRESS: tb.address }), {});
      const signalWorker: Worker<unknown> = createSignalWorker({ kafka, worker, signals }, logger, createRegistry(false)) as Worker<unknown>;
      await signalWorker.start();
      stoppers.unshift(() => signalWorker.stop());
      const sentSignals = await produce(client, { kind: 'signals', topic: signals.topic, count: o.count, tenants: o.tenants, tenantBase: Date.now() % 2 ** 40, rate: 0, bad: o.bad, batchSize: 500, topicPartitions: 3, maxMessageBytes: worker.maxMessageBytes, progress: true });
      console.log(`demo: produced ${sentSignals.produced} signals (+${sentSignals.bad} malformed) in ${sentSignals.seconds.toFixed(2)} s (${sentSignals.rate}/s)`);
      const drained = await waitForLag(admin, signals.group, signals.topic, 120_000);
      const clean = await signalWorker.stop();
      stoppers.shift();
      const stats = await signalStats(signals, undefined);
      console.log(renderSignalStats(stats));
      const letters = await readDeadLetters(client, signals.dlqTopic);
      const total = stats.reduce((n, r) => n + ('total' in r.duckdb ? r.duckdb.total : 0), 0);
      const signalsOk = drained && clean && total === o.count && stats.every((r) => r.agree) && letters.length === o.bad;
      console.log(`demo: signals: ${total} in DuckDB and TigerBeetle (${o.count} produced), ${letters.length} in ${signals.dlqTopic}: ${signalsOk ? 'OK' : 'FAILED'}`);
      ok &&= signalsOk;
    }
  } finally {
    for (const stop of stoppers) await stop().catch(() => undefined);
    await admin.disconnect();
  }
  console.log(ok ? 'demo: OK' : 'demo: FAILED');
  return ok ? 0 : 1;
}
