#!/usr/bin/env node
// spanledger end-to-end benchmark: throughput of span and signal workers draining a backlog (span
// JSON and OTLP protobuf requests), and
// end-to-end latency under a steady load, printed side by side with a baseline (a kafkajs
// consumer that does nothing with the records: the ceiling of the client library on this
// machine) and the targets. Workers run as real child processes, as in production.
//
//   node bench/run.mjs [--spans N] [--rule-spans N] [--signals N] [--signal-tenants N] [--latency-seconds S] [--rate R] [--warmup N]
//
// Broker: KAFKA_BROKERS, or a local broker started with scripts/kafka.sh in a temp folder.
// TigerBeetle (for the signal numbers): TB_ADDRESS or TIGERBEETLE_BIN; skipped otherwise.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel } from 'kafkajs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'bin', 'spanledger.js');
const { produce } = await import(path.join(ROOT, 'dist/cli/produce.js'));
const { groupLag } = await import(path.join(ROOT, 'dist/kafka/client.js'));
const { corpus, produceCorpus, spansInTimeOrder, RULES_A } = await import(path.join(ROOT, 'dist/devtools/trace-corpus.js'));
const { putRules } = await import(path.join(ROOT, 'dist/cli/rules-topic.js'));
const { tenantIdFor } = await import(path.join(ROOT, 'dist/model/generate.js'));
const { pino } = await import('pino');

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith('--') ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []),
);
const SPANS = Number(args.spans ?? 500_000);
const SIGNALS = Number(args.signals ?? 200_000);
const SIGNAL_TENANTS = Number(args['signal-tenants'] ?? 8);
const LATENCY_SECONDS = Number(args['latency-seconds'] ?? 15);
const LATENCY_RATE = Number(args.rate ?? 20_000);
const WARMUP = Number(args.warmup ?? 300_000);
const RULE_SPANS = Number(args['rule-spans'] ?? SPANS);
const TARGETS = { spans: 100_000, signals: 50_000, p99: 0.5, rulesP99: 0.1 };
const say = (s) => process.stderr.write(`bench: ${s}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'spanledger-bench-'));

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

let stopBroker = async () => {};
let brokers = process.env.KAFKA_BROKERS;
if (!brokers) {
  const port = await freePort();
  const env = { ...process.env, KAFKA_DIR: path.join(tmp, 'kafka'), KAFKA_PORT: String(port), KAFKA_CONTROLLER_PORT: String(await freePort()) };
  say(`starting a local Kafka broker on 127.0.0.1:${port}`);
  execFileSync('bash', [path.join(ROOT, 'scripts/kafka.sh'), 'up'], { env, stdio: ['ignore', 'inherit', 'inherit'] });
  brokers = `127.0.0.1:${port}`;
  stopBroker = async () => execFileSync('bash', [path.join(ROOT, 'scripts/kafka.sh'), 'down'], { env, stdio: 'ignore' });
}
const kafka = new Kafka({ clientId: 'spanledger-bench', brokers: brokers.split(','), logLevel: logLevel.NOTHING });
const admin = kafka.admin();
await admin.connect();

async function preload(kind, topic, count, tenants, extra = {}) {
  await admin.createTopics({ topics: [{ topic, numPartitions: 6 }], waitForLeaders: true });
  say(`producing ${count} ${kind} to ${topic}${extra.encoding ? ` as ${extra.encoding}` : ''}`);
  const r = await produce(kafka, { kind, topic, count, tenants, rate: 0, bad: 0, batchSize: 1000, topicPartitions: 6, maxMessageBytes: 1_000_000, progress: true, ...extra });
  say(`produced at ${r.rate}/s`);
  return r;
}

/** Time from the first committed record to the group's lag reaching zero. */
async function drain(group, topic, total, worker) {
  let first;
  let last = 0;
  for (;;) {
    const lag = await groupLag(admin, group, topic).catch(() => undefined);
    const done = lag ? Number(lag.reduce((n, p) => n + p.committed, 0n)) : 0;
    if (done > 0 && first === undefined) first = { t: performance.now(), done };
    if (done !== last) {
      process.stderr.write(`\rbench: committed ${done}/${total}   `);
      last = done;
    }
    if (done >= total) {
      process.stderr.write('\n');
      return (total - first.done) / ((performance.now() - first.t) / 1000);
    }
    if (worker.exitCode !== null) throw new Error(`worker exited with ${worker.exitCode}`);
    await sleep(100);
  }
}

/** The ceiling: a kafkajs consumer group member that only counts the records. */
async function baseline(topic, total) {
  const consumer = kafka.consumer({ groupId: `bench-baseline-${Date.now()}` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let n = 0;
  let t0;
  const rate = await new Promise((resolve) => {
    void consumer.run({
      autoCommit: false,
      partitionsConsumedConcurrently: 6,
      eachBatch: async ({ batch }) => {
        t0 ??= performance.now();
        n += batch.messages.length;
        if (n >= total) resolve(n / ((performance.now() - t0) / 1000));
      },
    });
  });
  await consumer.disconnect();
  return rate;
}

function startWorker(kind, env) {
  const child = spawn(process.execPath, [CLI, 'worker', kind], {
    cwd: ROOT,
    env: { ...process.env, KAFKA_BROKERS: brokers, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return child;
}

async function stopWorker(child) {
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
}

async function metricsText(port) {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

/** p50/p99 from a Prometheus histogram (upper bucket bounds: the true value is at most this). */
function quantiles(text, name) {
  const buckets = text
    .split('\n')
    .filter((l) => l.startsWith(`${name}_bucket{`))
    .map((l) => ({ le: Number(/le="([^"]+)"/.exec(l)[1]), n: Number(l.split(' ').pop()) }))
    .sort((a, b) => a.le - b.le);
  const total = buckets.at(-1)?.n ?? 0;
  const q = (p) => buckets.find((b) => b.n >= p * total)?.le;
  return { count: total, p50: q(0.5), p99: q(0.99) };
}

// 10 rules per tenant over the corpus' span names: the 3 of RULES_A and 7 more.
const BENCH_RULES = `${RULES_A}  - id: server-errors
    severity: high
    condition: '"GET /items".where(http.status_code >= 500)'
  - id: client-errors
    severity: low
    condition: '"GET /items".where(http.status_code >= 400).where(http.status_code < 500)'
  - id: many-queries
    severity: medium
    condition: count(db.query) > 20
  - id: deep-rows
    severity: low
    condition: db.query.where(db.row > 100)
  - id: retries-without-request
    severity: medium
    condition: count(http.retry) > 0 and not "GET /items"
  - id: fraud-check-without-charge
    severity: low
    condition: payment.fraud_check and not payment.charge_card
  - id: v2-admin
    severity: high
    condition: api.request.where(endpoint matches "^/api/v2/admin/")
`;

const rows = [];
const fmt = (n) => (n === undefined ? 'n/a' : Math.round(n).toLocaleString('en-US'));
const run = Date.now().toString(36);

try {
  // Warm-up: a freshly started broker (and its JIT) is slower for the first few hundred MB.
  {
    const topic = `bench-${run}.warmup`;
    await preload('spans', topic, WARMUP, 20);
    say(`warm-up: consumed at ${fmt(await baseline(topic, WARMUP))}/s`);
  }

  // Spans: drain a backlog.
  {
    const topic = `bench-${run}.spans`;
    await preload('spans', topic, SPANS, 20);
    const base = await baseline(topic, SPANS);
    const metricsPort = await freePort();
    const group = `bench-${run}-spans`;
    const w = startWorker('spans', { SPANS_TOPIC: topic, SPANS_DLQ_TOPIC: `${topic}.dlq`, SPANS_GROUP: group, SPANLOG_DIR: path.join(tmp, 'spanlog'), METRICS_PORT: String(metricsPort) });
    const rate = await drain(group, topic, SPANS, w);
    const m = await metricsText(metricsPort);
    await stopWorker(w);
    const flushes = quantiles(m, 'spanledger_flush_duration_seconds');
    rows.push(['span worker: backlog drain (spans/s)', fmt(rate), fmt(base), fmt(TARGETS.spans), rate >= TARGETS.spans ? 'met' : 'NOT met']);
    rows.push(['  flushes / p50 flush (s)', `${flushes.count} / ${flushes.p50}`, '', '', '']);
  }

  // Spans as the OpenTelemetry Collector writes them: the same number of spans, 100 per
  // otlp_proto request. Drained records are requests; rates are in spans.
  {
    const topic = `bench-${run}.otlp`;
    const sent = await preload('spans', topic, SPANS, 20, { encoding: 'otlp_proto', spansPerMessage: 100 });
    const perMessage = sent.produced / sent.messages;
    const base = (await baseline(topic, sent.messages)) * perMessage;
    const metricsPort = await freePort();
    const group = `bench-${run}-otlp`;
    const w = startWorker('spans', { SPANS_TOPIC: topic, SPANS_DLQ_TOPIC: `${topic}.dlq`, SPANS_GROUP: group, SPANLOG_DIR: path.join(tmp, 'spanlog-otlp'), METRICS_PORT: String(metricsPort) });
    const rate = (await drain(group, topic, sent.messages, w)) * perMessage;
    await stopWorker(w);
    rows.push(['span worker: otlp_proto backlog drain (spans/s, 100 a message)', fmt(rate), fmt(base), fmt(TARGETS.spans), rate >= TARGETS.spans ? 'met' : 'NOT met']);
  }

  // Span latency: a steady load below capacity.
  {
    const topic = `bench-${run}.latency`;
    await admin.createTopics({ topics: [{ topic, numPartitions: 6 }], waitForLeaders: true });
    const metricsPort = await freePort();
    const group = `bench-${run}-latency`;
    const w = startWorker('spans', { SPANS_TOPIC: topic, SPANS_DLQ_TOPIC: `${topic}.dlq`, SPANS_GROUP: group, SPANLOG_DIR: path.join(tmp, 'spanlog-latency'), METRICS_PORT: String(metricsPort) });
    await sleep(3000);
    say(`steady load: ${LATENCY_RATE} spans/s for ${LATENCY_SECONDS} s`);
    await produce(kafka, { kind: 'spans', topic, count: LATENCY_RATE * LATENCY_SECONDS, tenants: 20, rate: LATENCY_RATE, bad: 0, batchSize: 200, topicPartitions: 6, maxMessageBytes: 1_000_000, progress: true });
    await drain(group, topic, LATENCY_RATE * LATENCY_SECONDS, w);
    const q = quantiles(await metricsText(metricsPort), 'spanledger_end_to_end_latency_seconds');
    await stopWorker(w);
    rows.push([`span end-to-end p99 at ${fmt(LATENCY_RATE)}/s (s, bucket bound)`, String(q.p99), '', String(TARGETS.p99), q.p99 !== undefined && q.p99 <= TARGETS.p99 ? 'met' : 'NOT met']);
    rows.push([`  p50 (s, bucket bound)`, String(q.p50), '', '', '']);
  }

  // Rules: the same trace backlog drained by a span worker and by a rule worker (own group), 20
  // tenants with 10 rules each. Traces of ~8 spans keyed by trace id, one starting every 2 ms of
  // event time (~500 open at a time); TRACE_IDLE_MS=1000 so the last traces close 1 s after the
  // stream ends instead of 10 s.
  {
    const topic = `bench-${run}.traces`;
    const rulesTopic = `bench-${run}.rules`;
    await admin.createTopics({ topics: [{ topic, numPartitions: 6 }], waitForLeaders: true });
    const tenants = Array.from({ length: 20 }, (_, i) => ({ tenantId: tenantIdFor(0xbe000 + i), rules: 'A' }));
    const dir = path.join(tmp, 'rules');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'rules.yaml'), BENCH_RULES);
    const logger = pino({ level: 'silent' });
    for (const t of tenants) await putRules({ kafka, topic: rulesTopic, logger, timeoutMs: 30_000 }, t.tenantId, path.join(dir, 'rules.yaml'), false);
    const traces = corpus({ tenants, traces: Math.round(RULE_SPANS / 7.7), fillerSpans: 4, startMs: Date.now() - 3_600_000, traceGapMs: 2, spanGapMs: 20, seed: run });
    const spans = spansInTimeOrder(traces);
    say(`producing ${spans.length} spans of ${traces.length} traces to ${topic}`);
    const t0 = performance.now();
    await produceCorpus(kafka, topic, spans, { chunk: 2000, onProgress: (n) => process.stderr.write(`\rbench: produced ${n}/${spans.length}   `) });
    process.stderr.write('\n');
    say(`produced at ${fmt(spans.length / ((performance.now() - t0) / 1000))}/s`);
    const base = await baseline(topic, spans.length);

    const spanGroup = `bench-${run}-traces-spans`;
    const sw = startWorker('spans', { SPANS_TOPIC: topic, SPANS_DLQ_TOPIC: `${topic}.dlq`, SPANS_GROUP: spanGroup, SPANLOG_DIR: path.join(tmp, 'spanlog-traces'), METRICS_PORT: String(await freePort()) });
    const spanRate = await drain(spanGroup, topic, spans.length, sw);
    await stopWorker(sw);

    const metricsPort = await freePort();
    const ruleGroup = `bench-${run}-rules`;
    const rw = startWorker('rules', {
      SPANS_TOPIC: topic,
      RULES_TOPIC: rulesTopic,
      RULES_GROUP: ruleGroup,
      RULES_DLQ_TOPIC: `${topic}.rules-dlq`,
      RULES_CHECKPOINT_TOPIC: `${topic}.checkpoints`,
      SIGNALS_TOPIC: `${topic}.signals`,
      TRACE_IDLE_MS: '1000',
      // Commits follow the oldest open trace at most this often: a short interval keeps the
      // drain's end (committed = produced) close to the moment the last trace was evaluated.
      RULES_CHECKPOINT_INTERVAL_MS: '250',
      QUARANTINE_DIR: path.join(tmp, 'quarantine'),
      METRICS_PORT: String(metricsPort),
    });
    const ruleRate = await drain(ruleGroup, topic, spans.length, rw);
    const m = await metricsText(metricsPort);
    await stopWorker(rw);
    const drainLatency = quantiles(m, 'spanledger_rule_evaluation_latency_seconds');
    const signals = m.split('\n').filter((l) => l.startsWith('spanledger_rule_signals_produced_total{')).reduce((n, l) => n + Number(l.split(' ').pop()), 0);
    const peak = Number(/^spanledger_process_process_resident_memory_bytes (\S+)/m.exec(m)?.[1] ?? NaN);
    rows.push(['span worker: trace backlog drain (spans/s)', fmt(spanRate), fmt(base), fmt(TARGETS.spans), spanRate >= TARGETS.spans ? 'met' : 'NOT met']);
    rows.push(['rule worker: same backlog, 10 rules/tenant (spans/s)', fmt(ruleRate), fmt(base), fmt(TARGETS.spans), ruleRate >= TARGETS.spans ? 'met' : 'NOT met']);
    rows.push([`  ${traces.length} traces, ${signals} signals; RSS at end (MiB)`, fmt(peak / 2 ** 20), '', '', '']);
    rows.push([`  evaluation p50 / p99 while draining (s, bucket bound)`, `${drainLatency.p50} / ${drainLatency.p99}`, '', '', '']);

    // Evaluation latency under a steady load below capacity: traces whose event times are now,
    // produced as the clock reaches them.
    const steadyTopic = `bench-${run}.traces-steady`;
    await admin.createTopics({ topics: [{ topic: steadyTopic, numPartitions: 6 }], waitForLeaders: true });
    const steadyPort = await freePort();
    const steadyGroup = `bench-${run}-rules-steady`;
    const steady = startWorker('rules', {
      SPANS_TOPIC: steadyTopic,
      RULES_TOPIC: rulesTopic,
      RULES_GROUP: steadyGroup,
      RULES_DLQ_TOPIC: `${steadyTopic}.rules-dlq`,
      RULES_CHECKPOINT_TOPIC: `${steadyTopic}.checkpoints`,
      SIGNALS_TOPIC: `${steadyTopic}.signals`,
      TRACE_IDLE_MS: '1000',
      QUARANTINE_DIR: path.join(tmp, 'quarantine'),
      METRICS_PORT: String(steadyPort),
    });
    await sleep(3000);
    // Traces of ~7.7 spans: one every 7.7 / rate seconds gives `rate` spans/s.
    const live = corpus({ tenants, traces: Math.round((LATENCY_RATE * LATENCY_SECONDS) / 7.7), fillerSpans: 4, startMs: Date.now() + 1000, traceGapMs: 7700 / LATENCY_RATE, spanGapMs: 20, seed: `${run}-steady` });
    const liveSpans = spansInTimeOrder(live);
    say(`steady load: ${LATENCY_RATE} spans/s of traces for ${LATENCY_SECONDS} s`);
    await produceCorpus(kafka, steadyTopic, liveSpans, { chunk: 200, paced: true });
    await drain(steadyGroup, steadyTopic, liveSpans.length, steady);
    const latency = quantiles(await metricsText(steadyPort), 'spanledger_rule_evaluation_latency_seconds');
    await stopWorker(steady);
    rows.push([`rule evaluation p99 at ${fmt(LATENCY_RATE)} spans/s, trace close → signals acked (s, bucket bound)`, String(latency.p99), '', String(TARGETS.rulesP99), latency.p99 !== undefined && latency.p99 <= TARGETS.rulesP99 ? 'met' : 'NOT met']);
    rows.push(['  p50 (s, bucket bound)', String(latency.p50), '', '', '']);
  }

  // Signals: drain a backlog into DuckDB + TigerBeetle.
  let tb;
  if (process.env.TB_ADDRESS || process.env.TIGERBEETLE_BIN) {
    const { startTigerBeetle } = await import(path.join(ROOT, 'bench/tigerbeetle-support.mjs'));
    tb = await startTigerBeetle(tmp);
  }
  if (tb) {
    const topic = `bench-${run}.signals`;
    await preload('signals', topic, SIGNALS, SIGNAL_TENANTS);
    const base = await baseline(topic, SIGNALS);
    const metricsPort = await freePort();
    const group = `bench-${run}-signals`;
    const w = startWorker('signals', {
      SIGNALS_TOPIC: topic,
      SIGNALS_DLQ_TOPIC: `${topic}.dlq`,
      SIGNALS_GROUP: group,
      DUCKDB_DIR: path.join(tmp, 'duckdb'),
      TB_ADDRESS: tb.address,
      TB_CLUSTER_ID: '0',
      METRICS_PORT: String(metricsPort),
    });
    const rate = await drain(group, topic, SIGNALS, w);
    const m = await metricsText(metricsPort);
    await stopWorker(w);
    await tb.stop();
    const flushes = quantiles(m, 'spanledger_flush_duration_seconds');
    rows.push([`signal worker: backlog drain, ${SIGNAL_TENANTS} tenants (signals/s)`, fmt(rate), fmt(base), fmt(TARGETS.signals), rate >= TARGETS.signals ? 'met' : 'NOT met']);
    rows.push(['  flushes / p50 flush (s)', `${flushes.count} / ${flushes.p50}`, '', '', '']);
  } else {
    rows.push(['signal worker: skipped (set TB_ADDRESS or TIGERBEETLE_BIN)', '', '', fmt(TARGETS.signals), '']);
  }
} finally {
  await admin.disconnect();
  await stopBroker();
  fs.rmSync(tmp, { recursive: true, force: true });
}

const head = ['measure', 'spanledger', 'baseline (kafkajs, no-op)', 'target', ''];
const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
const line = (r) => r.map((c, i) => String(c).padEnd(widths[i])).join('  ');
console.log(`\nspanledger bench on ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown cpu'}), broker and workers on this machine`);
console.log(line(head));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const r of rows) console.log(line(r));
