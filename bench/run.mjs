#!/usr/bin/env node
// spanledger end-to-end benchmark: throughput of span and signal workers draining a backlog (span
// JSON and OTLP protobuf requests), and
// end-to-end latency under a steady load, printed side by side with a baseline (a consumer of
// the same client that does nothing with the records: the ceiling of the client library on this
// machine) and the targets. Workers run as real child processes, as in production; every worker
// scenario also reports the worker's peak RSS (VmHWM of /proc/<pid>/status, read just before it
// is stopped).
//
// Both Kafka clients in one run (issue 19: the default must not be slower): the drains (spans
// JSON and otlp_proto, the trace backlog by a span and a rule worker, the 8-tenant signals) run
// once per client of --clients (KAFKA_CLIENT of the worker), side by side with no-op consumers of
// each client (bench/noop-consumer.mjs, a process of its own: records/s and CPU µs per record);
// the rest (capped-memory drain, latency, sustained, rule latency, 500-tenant signals) on the
// first client only.
//
// BENCH_WORKER_LOGS=dir keeps every worker's log there. `--help` lists every option with its
// default; an unknown option is refused (it would otherwise start a full run of every scenario).
//   node bench/run.mjs [--help] [--quick] [--runs N] [--spans N] [--rule-spans N] [--signals N] [--tenant-signals N] [--latency-seconds S] [--rate R] [--warmup N]
//                      [--sustained] [--sustained-seconds S] [--sustained-rate R] [--sustained-signal-rate R] [--only LIST] [--span-env K=V,K=V] [--signal-env K=V,K=V]
//                      [--clients platformatic,kafkajs] [--decode-threads 0,1,2,4]
//
// --clients: the Kafka clients the drains run on, in this order (default platformatic,kafkajs);
// the first is also the one of every scenario that runs once.
//
// --only spans,otlp,latency,sustained,rules,signals: run only these scenarios (the warm-up always
// runs). The 1M-span backlog of issue 10: `--spans 1000000 --only spans` (rate and peak RSS).
// --span-env: extra environment of the span workers (e.g. DECODE_THREADS=1,MAX_IN_FLIGHT_BYTES=16777216);
// --signal-env: the same for the signal workers (e.g. BATCH_MAX_RECORDS=10000).
// --decode-threads: after the span drains, one more per DECODE_THREADS value (first client).
//
// --runs N: the span JSON drain and the 8-tenant signal drain are run N times (3; 1 in quick mode),
// each by a fresh worker in a fresh group (signals: on a fresh topic of new signals, so no drain
// meets ids an earlier one stored); the table shows the median and every run.
// --quick: small backlogs (50K spans, 20K signals, 5 s of latency) and the sustained scenario for
// 30 s sampled every 10 s; explicit flags still win. --sustained: run the sustained scenario (a span
// worker under a steady load at half the drain rate measured in this run, or --sustained-rate,
// for --sustained-seconds, default 300, sampled every minute), and with TigerBeetle a signal worker
// over the 500 tenants at half their drain rate (or --sustained-signal-rate); it always runs in
// quick mode.
//
// Broker: KAFKA_BROKERS, or a local broker started with scripts/kafka.sh in a temp folder.
// TigerBeetle (for the signal numbers, 8 vs 500 tenants): TB_ADDRESS or TIGERBEETLE_BIN; skipped otherwise.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  ROOT, say, sleep, fmt, mib, parseArgs, freePort, procStatusBytes, procCpuSeconds, procCpuByThread, openFds, brokerFromEnv, benchKafka, noopConsumer, createTopic, preload as preloadOn, drain as drainOn,
  startWorker as startWorkerOn, stopWorker, metricsText, buckets, bucketQuantiles, bucketDelta, quantiles, slope, produce, corpus, produceCorpus, spansInTimeOrder,
  benchRuleTenants, traceBacklog, ruleWorkerEnv, steadyLoad,
} from './lib.mjs';

/** Every option: its value (what follows it) and default, normal and --quick, and what it does. */
const OPTIONS = {
  help: { value: '', normal: '', quick: '', about: 'print this list and exit' },
  quick: { value: '', normal: 'off', quick: '', about: 'small backlogs, 1 run, and the sustained scenario (30 s, a sample every 10 s); explicit options still win' },
  only: { value: 'LIST', normal: 'all', quick: 'all', about: 'only these scenarios, comma-separated: spans, otlp, latency, sustained, rules, signals (the warm-up always runs)' },
  clients: { value: 'LIST', normal: 'platformatic,kafkajs', quick: 'platformatic,kafkajs', about: 'the Kafka clients the drains run on, in this order; the first also runs every scenario that runs once' },
  runs: { value: 'N', normal: '3', quick: '1', about: 'span JSON and 8-tenant signal drains per client (a fresh worker and group each); the median is reported' },
  spans: { value: 'N', normal: '1000000', quick: '50000', about: 'spans in the span backlogs (JSON, and otlp_proto at 100 a request)' },
  warmup: { value: 'N', normal: '300000', quick: '20000', about: 'spans a no-op consumer reads first (a fresh broker and JIT are slower)' },
  'rule-spans': { value: 'N', normal: '500000', quick: '50000', about: 'spans in the trace backlog of the rules scenario' },
  signals: { value: 'N', normal: '200000', quick: '20000', about: 'signals in each 8-tenant signal backlog (needs TB_ADDRESS or TIGERBEETLE_BIN)' },
  'tenant-signals': { value: 'N', normal: '50000', quick: '10000', about: 'signals in the 500-tenant signal backlog' },
  'latency-seconds': { value: 'S', normal: '15', quick: '5', about: 'seconds of steady load in the latency scenarios' },
  rate: { value: 'R', normal: '20000', quick: '20000', about: 'spans/s of steady load in the latency scenarios' },
  sustained: { value: '', normal: 'off', quick: 'on', about: 'run the sustained scenarios (a span worker, and with TigerBeetle a signal worker, at half their drain rates)' },
  'sustained-seconds': { value: 'S', normal: '300', quick: '30', about: 'length of each sustained scenario' },
  'sustained-rate': { value: 'R', normal: 'half the span drain', quick: 'half the span drain', about: 'spans/s offered in the sustained span scenario' },
  'sustained-signal-rate': { value: 'R', normal: 'half the 500-tenant drain', quick: 'half the 500-tenant drain', about: 'signals/s offered in the sustained signal scenario' },
  'span-env': { value: 'K=V,K=V', normal: 'none', quick: 'none', about: 'extra environment of every span worker (e.g. DECODE_THREADS=1,MAX_IN_FLIGHT_BYTES=16777216)' },
  'signal-env': { value: 'K=V,K=V', normal: 'none', quick: 'none', about: 'extra environment of every signal worker (e.g. BATCH_MAX_RECORDS=10000)' },
  'decode-threads': {
    value: 'LIST',
    normal: 'none',
    quick: 'none',
    about: 'with the spans scenario: drain the JSON span backlog once more per DECODE_THREADS value (e.g. 0,1,2,4), first client: whether CPU per span stays flat as threads grow (needs idle cores to mean anything)',
  },
};
const SCENARIOS = ['spans', 'otlp', 'latency', 'sustained', 'rules', 'signals'];
const args = parseArgs(process.argv.slice(2));
const usage = () => {
  const rows = Object.entries(OPTIONS).map(([name, o]) => [`--${name}${o.value ? ` ${o.value}` : ''}`, o.normal === o.quick || o.quick === '' ? o.normal : `${o.normal} (--quick: ${o.quick})`, o.about]);
  const w = [0, 1].map((i) => Math.max(...rows.map((r) => r[i].length)));
  return [
    'usage: node bench/run.mjs [options]   (needs dist/: npm run build)',
    'Broker: KAFKA_BROKERS, else a private one (scripts/kafka.sh). TigerBeetle: TB_ADDRESS or TIGERBEETLE_BIN, else no signal scenarios.',
    'BENCH_WORKER_LOGS=dir keeps each worker\'s log.',
    '',
    `${'option'.padEnd(w[0])}  ${'default'.padEnd(w[1])}  what`,
    ...rows.map((r) => `${r[0].padEnd(w[0])}  ${r[1].padEnd(w[1])}  ${r[2]}`),
  ].join('\n');
};
if (args.help !== undefined) {
  console.log(usage());
  process.exit(0);
}
{
  const unknown = Object.keys(args).filter((k) => !(k in OPTIONS));
  const wantsValue = Object.entries(OPTIONS).filter(([name, o]) => o.value !== '' && args[name] === true).map(([name]) => name);
  const badScenarios = typeof args.only === 'string' ? args.only.split(',').filter((s) => !SCENARIOS.includes(s)) : [];
  const unnamed = process.argv.slice(2).filter((a, i, all) => !a.startsWith('--') && (i === 0 || !all[i - 1].startsWith('--') || OPTIONS[all[i - 1].slice(2)]?.value === ''));
  const problems = [
    ...unknown.map((k) => `unknown option --${k}`),
    ...wantsValue.map((k) => `--${k} needs a value (${OPTIONS[k].value})`),
    ...badScenarios.map((s) => `--only: unknown scenario ${s} (one of ${SCENARIOS.join(', ')})`),
    ...unnamed.map((a) => `unexpected argument ${a}`),
  ];
  if (problems.length > 0) {
    process.stderr.write(`${problems.join('\n')}\n\n${usage()}\n`);
    process.exit(2);
  }
}
const QUICK = args.quick === true;
const num = (name, normal, quick) => Number(args[name] ?? (QUICK ? quick : normal));
// 1M in full mode: issue 10's memory target is the span worker's peak RSS while draining 1M spans.
const SPANS = num('spans', 1_000_000, 50_000);
/** The V8 flags docker-compose.yml gives span workers (the only service with NODE_OPTIONS). */
const SPAN_WORKER_NODE_OPTIONS = /^\s*NODE_OPTIONS:\s*(.+?)\s*$/m.exec(fs.readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8'))?.[1] ?? '';
const SIGNALS = num('signals', 200_000, 20_000);
// The 500-tenant drain is slower (a DuckDB transaction per tenant per flush): its own, smaller count.
const TENANT_SIGNALS = num('tenant-signals', 50_000, 10_000);
const LATENCY_SECONDS = num('latency-seconds', 15, 5);
const LATENCY_RATE = num('rate', 20_000, 20_000);
const WARMUP = num('warmup', 300_000, 20_000);
const RUNS = num('runs', 3, 1);
const RULE_SPANS = num('rule-spans', 500_000, 50_000);
const SUSTAINED = QUICK || args.sustained !== undefined;
const SUSTAINED_SECONDS = num('sustained-seconds', 300, 30);
const SUSTAINED_INTERVAL = QUICK ? 10 : 60;
const TENANTS_FEW = 8;
const TENANTS_MANY = 500;
const ONLY = typeof args.only === 'string' ? new Set(args.only.split(',')) : undefined;
const want = (scenario) => ONLY === undefined || ONLY.has(scenario);
const envArg = (name) => (typeof args[name] === 'string' ? Object.fromEntries(args[name].split(',').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])) : {});
const SPAN_ENV = envArg('span-env');
const KAFKA_CLIENTS = ['platformatic', 'kafkajs'];
/** The drains run on each, in this order; the first runs everything else. */
const CLIENTS = typeof args.clients === 'string' ? args.clients.split(',') : KAFKA_CLIENTS;
for (const c of CLIENTS) if (!KAFKA_CLIENTS.includes(c)) throw new Error(`--clients: unknown client ${c} (one of ${KAFKA_CLIENTS.join(', ')})`);
const PRIMARY = CLIENTS[0];
const SIGNAL_ENV = envArg('signal-env');
const DECODE_THREADS = typeof args['decode-threads'] === 'string' ? args['decode-threads'].split(',').map(Number) : [];
if (DECODE_THREADS.some((n) => !Number.isInteger(n) || n < 0)) {
  process.stderr.write(`--decode-threads: whole numbers >= 0, comma-separated, not ${args['decode-threads']}\n`);
  process.exit(2);
}
// CPU per record (issue 21): the worker process's user+system CPU over its whole drain, start
// included, divided by the records; judged on the median of the runs. noopRatio: the span drain's
// rate at least this share of the no-op library consumer's (same client, same run).
const TARGETS = {
  spanRssMiB: 256, signalRssMiB: 512, spans: 100_000, signals: 50_000, p99: 0.5, rulesP99: 0.1, tenantsRatio: 0.8,
  spanCpuMicros: 8, otlpCpuMicros: 6, ruleCpuMicros: 10, signalCpuMicros: 15, manySignalCpuMicros: 30, noopRatio: 0.5,
};
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'spanledger-bench-'));

const broker = process.env.KAFKA_BROKERS
  ? brokerFromEnv({ env: {}, stopOnExit: false })
  : brokerFromEnv({ env: { KAFKA_DIR: path.join(tmp, 'kafka'), KAFKA_PORT: String(await freePort()), KAFKA_CONTROLLER_PORT: String(await freePort()) }, stopOnExit: true });
const brokers = broker.brokers;
const kafka = benchKafka(brokers);
const admin = kafka.admin();
await admin.connect();
const preload = (...a) => preloadOn(kafka, admin, ...a);
const drain = (group, topic, total, worker, onFirstCommit) => drainOn(admin, group, topic, total, worker, onFirstCommit);
/** A worker on the first client unless `env` names another (KAFKA_CLIENT). */
const startWorker = (kind, env) => startWorkerOn(brokers, kind, { KAFKA_CLIENT: PRIMARY, ...env });

/**
 * The ceilings: for each client, a no-op consumer of the library (and with `adapter`, one of
 * spanledger's adapter too) reading the `total` records of `topic`, each in its own process.
 * By client: { library: { rate, cpuMicrosPerRecord }, adapter? }.
 */
async function baselines(topic, total, { adapter = false, role = 'spans' } = {}) {
  const out = {};
  for (const form of adapter ? ['library', 'adapter'] : ['library']) {
    for (const client of CLIENTS) {
      const r = await noopConsumer(brokers, { client, form, topic, count: total, role });
      say(`no-op consumer, ${client} ${form}: ${fmt(r.rate)} records/s, ${r.cpuMicrosPerRecord.toFixed(1)} µs CPU per record`);
      (out[client] ??= {})[form] = r;
    }
  }
  return out;
}
/** A baseline cell: records/s (times `per`, e.g. spans per message) and CPU µs per record. */
const baseText = (r, per = 1) => (r === undefined ? '' : `${fmt(r.rate * per)} (${(r.cpuMicrosPerRecord / per).toFixed(1)} µs/rec)`);
/** The no-op consumers' own rows: one per client and form. */
function baselineRows(what, base) {
  const forms = { library: { kafkajs: 'library (eachBatch)', platformatic: 'library (MessagesStream)' }, adapter: { kafkajs: "spanledger's adapter", platformatic: "spanledger's adapter" } };
  for (const form of Object.keys(forms)) {
    for (const client of CLIENTS) {
      const r = base[client]?.[form];
      if (r) rows.push([`no-op consumer [${client}], ${forms[form][client]}, ${what} (records/s, CPU µs/record; peak RSS)`, '', `${baseText(r)}; ${mib(r.peakRssBytes)} MiB`, '', '']);
    }
  }
}
/**
 * The default client against kafkajs on one measure, when both ran: the ratio of their values
 * (`higherIsBetter`: rates; else CPU per record), judged against "not worse" (issue 19).
 */
function clientRatioRow(what, byClient, higherIsBetter) {
  const a = byClient.platformatic;
  const b = byClient.kafkajs;
  if (a === undefined || b === undefined || !(a > 0) || !(b > 0)) return;
  const ratio = a / b;
  rows.push([`  platformatic / kafkajs: ${what}`, ratio.toFixed(2), '', higherIsBetter ? '≥ 1.00' : '≤ 1.00', (higherIsBetter ? ratio >= 1 : ratio <= 1) ? 'met' : 'NOT met']);
}

const rows = [];
const peakRow = (peak, targetMiB) => rows.push(['  peak RSS (MiB, VmHWM)', mib(peak), '', targetMiB ? `≤ ${targetMiB}` : '', targetMiB ? (peak <= targetMiB * 2 ** 20 ? 'met' : 'NOT met') : '']);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
/** `f(median)`, and every run when there are several: "101,234 (median of 98,000, 101,234, 104,500)". */
const runsText = (xs, f = fmt) => (xs.length === 1 ? f(xs[0]) : `${f(median(xs))} (median of ${xs.map(f).join(', ')})`);
const runsLabel = RUNS > 1 ? `, median of ${RUNS} runs` : '';
const run = Date.now().toString(36);

/** A span worker reading `topic` in `group`, writing its span log under `dir` of the temp folder. */
async function startSpanWorker(topic, group, dir, env = {}) {
  const metricsPort = await freePort();
  const w = startWorker('spans', { SPANS_TOPIC: topic, SPANS_DLQ_TOPIC: `${topic}.dlq`, SPANS_GROUP: group, SPANLOG_DIR: path.join(tmp, dir), METRICS_PORT: String(metricsPort), ...SPAN_ENV, ...env });
  return { w, metricsPort };
}

/**
 * `drain`, and the worker's CPU per record (µs) over the same span: from the first commit on,
 * as the rate (start-up excluded); comparable between runs on a busy machine, unlike rates.
 */
async function cpuDrain(group, topic, total, w) {
  let first;
  const rate = await drain(group, topic, total, w, (done) => (first = { cpu: procCpuSeconds(w.pid), threads: procCpuByThread(w.pid), done }));
  const records = total - first.done;
  const cpuMicros = ((procCpuSeconds(w.pid) - first.cpu) * 1e6) / records;
  // Where the CPU went, by kind of thread (the collector's helpers are V8's): printed, not tabled.
  const threads = procCpuByThread(w.pid);
  const split = Object.entries(threads).map(([kind, s]) => `${kind} ${micros(((s - first.threads[kind]) * 1e6) / records)}`);
  say(`worker CPU per record by thread (µs): ${split.join(', ')}`);
  return { rate, cpuMicros };
}
/** µs with one decimal. */
const micros = (c) => (Number.isFinite(c) ? c.toFixed(1) : 'n/a');
/** A CPU-per-record row against its target (the median of the runs). */
const cpuRow = (label, values, target) => rows.push([label, runsText(values, micros), '', `≤ ${target}`, median(values) <= target ? 'met' : 'NOT met']);

/** One signal worker draining `topic` (its own group and DuckDB folder): rate and peak RSS. */
async function signalDrain(tb, topic, total, name, client = PRIMARY) {
  const { w, metricsPort, group } = await startSignalWorker(tb, topic, name, client);
  const { rate, cpuMicros } = await cpuDrain(group, topic, total, w);
  const m = await metricsText(metricsPort);
  const peak = await stopWorker(w);
  return { rate, peak, cpuMicros, flushes: quantiles(m, 'spanledger_flush_duration_seconds') };
}

/** A signal worker reading `topic` in a group and DuckDB folder of its own, named after `name`. */
async function startSignalWorker(tb, topic, name, client = PRIMARY) {
  const metricsPort = await freePort();
  const group = `bench-${run}-${name}`;
  const w = startWorker('signals', {
    SIGNALS_TOPIC: topic,
    SIGNALS_DLQ_TOPIC: `${topic}.dlq`,
    SIGNALS_GROUP: group,
    DUCKDB_DIR: path.join(tmp, `duckdb-${name}`),
    TB_ADDRESS: tb.address,
    TB_CLUSTER_ID: '0',
    METRICS_PORT: String(metricsPort),
    KAFKA_CLIENT: client,
    ...SIGNAL_ENV,
  });
  return { w, metricsPort, group };
}

/**
 * A worker under a steady load of `rate` records/s for `seconds`; every `interval` seconds: its
 * RSS, the p99 end-to-end latency of that interval (bucket deltas between scrapes) and its open
 * file descriptors. `start(topic)` starts the worker and returns { w, metricsPort, group }.
 */
async function sustained({ name, kind, tenants, tenantBase, start }, rate, seconds, interval) {
  const topic = `bench-${run}.${name}`;
  await createTopic(admin, topic);
  const { w, metricsPort, group } = await start(topic);
  await sleep(3000);
  say(`${name}: ${fmt(rate)} ${kind}/s over ${tenants} tenants for ${seconds} s, a sample every ${interval} s`);
  const load = steadyLoad(kafka, topic, { kind, rate, seconds, tenants, tenantBase });
  const histogram = 'spanledger_end_to_end_latency_seconds';
  let before = buckets(await metricsText(metricsPort), histogram);
  const t0 = performance.now();
  const samples = [];
  for (let k = 1; k * interval <= seconds; k++) {
    await sleep(Math.max(0, t0 + k * interval * 1000 - performance.now()));
    if (w.exitCode !== null) throw new Error(`worker exited with ${w.exitCode}`);
    const now = buckets(await metricsText(metricsPort), histogram);
    const q = bucketQuantiles(bucketDelta(now, before));
    before = now;
    const s = { t: k * interval, rss: procStatusBytes(w.pid, 'VmRSS'), p99: q.p99, records: q.count, fds: openFds(w.pid) };
    say(`${name} t=${s.t} s: RSS ${mib(s.rss)} MiB, p99 ${s.p99} s over ${s.records} ${kind}, ${s.fds} open fds`);
    samples.push(s);
  }
  const sent = await load;
  await drain(group, topic, sent.produced, w);
  const peak = await stopWorker(w);
  return { samples, peak, sent };
}

/** The rows of a sustained run: the rate achieved, a line per sample, the RSS slope, fd growth. */
function sustainedRows(what, kind, rate, why, { samples, peak, sent }, peakTargetMiB) {
  rows.push([`${what} sustained for ${SUSTAINED_SECONDS} s: ${fmt(rate)} ${kind}/s offered (${why}), achieved (${kind}/s)`, fmt(sent.rate), '', '', '']);
  for (const s of samples) {
    rows.push([`  t=${s.t} s: RSS (MiB) / interval p99 (s, bucket bound) / open fds`, `${mib(s.rss)} / ${s.p99 ?? 'n/a'} / ${s.fds}`, '', '', '']);
  }
  const perMinute = slope(samples.map((s) => ({ x: s.t / 60, y: s.rss / 2 ** 20 })));
  rows.push(['  RSS slope (MiB/min, least squares over the samples)', perMinute === undefined ? 'n/a' : perMinute.toFixed(1), '', '', '']);
  const fdFirst = samples[0]?.fds;
  const fdLast = samples.at(-1)?.fds;
  const fdMax = Math.max(...samples.map((s) => s.fds ?? 0));
  rows.push(['  open fds, first → last (max)', `${fdFirst} → ${fdLast} (${fdMax})`, '', 'no growth', fdLast > fdFirst ? 'NOT met' : 'met']);
  peakRow(peak, peakTargetMiB);
}

try {
  // Warm-up: a freshly started broker (and its JIT) is slower for the first few hundred MB.
  {
    const topic = `bench-${run}.warmup`;
    await preload('spans', topic, WARMUP, 20);
    say(`warm-up: consumed at ${fmt((await noopConsumer(brokers, { client: PRIMARY, form: 'library', topic, count: WARMUP })).rate)}/s`);
  }

  // Spans: drain a backlog, RUNS times on each client (each a fresh worker and group on the same
  // topic; the clients take turns, so neither gets all the quiet moments).
  let spanDrainRate;
  if (want('spans')) {
    const topic = `bench-${run}.spans`;
    await preload('spans', topic, SPANS, 20);
    const base = await baselines(topic, SPANS, { adapter: true });
    baselineRows('span backlog', base);
    const byClient = Object.fromEntries(CLIENTS.map((c) => [c, { rates: [], peaks: [], cpus: [], flushes: undefined }]));
    for (let i = 0; i < RUNS; i++) {
      for (const client of CLIENTS) {
        const r = byClient[client];
        const group = `bench-${run}-spans-${client}-${i}`;
        const { w, metricsPort } = await startSpanWorker(topic, group, `spanlog-${client}-${i}`, { KAFKA_CLIENT: client });
        const { rate, cpuMicros } = await cpuDrain(group, topic, SPANS, w);
        r.rates.push(rate);
        r.cpus.push(cpuMicros);
        r.flushes ??= quantiles(await metricsText(metricsPort), 'spanledger_flush_duration_seconds');
        r.peaks.push(await stopWorker(w));
        say(`span drain ${i + 1}/${RUNS} on ${client}: ${fmt(rate)} spans/s, ${micros(cpuMicros)} µs CPU per span`);
      }
    }
    for (const client of CLIENTS) {
      const { rates, cpus, flushes, peaks } = byClient[client];
      const rate = median(rates);
      const lib = base[client].library;
      rows.push([`span worker [${client}]: backlog drain (spans/s${runsLabel})`, runsText(rates), baseText(lib), fmt(TARGETS.spans), rate >= TARGETS.spans ? 'met' : 'NOT met']);
      rows.push([`  / baseline (library, adapter)`, `${(rate / lib.rate).toFixed(2)}, ${(rate / base[client].adapter.rate).toFixed(2)}`, '', `≥ ${TARGETS.noopRatio.toFixed(2)} (library)`, rate / lib.rate >= TARGETS.noopRatio ? 'met' : 'NOT met']);
      rows.push(['  flushes / p50 flush (s), first run', `${flushes.count} / ${flushes.p50}`, '', '', '']);
      cpuRow(`  worker CPU per span (µs${runsLabel})`, cpus, TARGETS.spanCpuMicros);
      // Node's default heap settings (no V8 cap): issue 21's bound.
      peakRow(Math.max(...peaks), TARGETS.spanRssMiB);
    }
    const med = (key) => Object.fromEntries(CLIENTS.map((c) => [c, median(byClient[c][key])]));
    clientRatioRow(`span drain rate${runsLabel}`, med('rates'), true);
    clientRatioRow(`worker CPU per span${runsLabel}`, med('cpus'), false);
    clientRatioRow('no-op library consumer rate, span backlog', Object.fromEntries(CLIENTS.map((c) => [c, base[c].library.rate])), true);
    clientRatioRow('no-op library consumer CPU per record', Object.fromEntries(CLIENTS.map((c) => [c, base[c].library.cpuMicrosPerRecord])), false);
    clientRatioRow('no-op adapter rate, span backlog', Object.fromEntries(CLIENTS.map((c) => [c, base[c].adapter.rate])), true);
    clientRatioRow('no-op adapter CPU per record', Object.fromEntries(CLIENTS.map((c) => [c, base[c].adapter.cpuMicrosPerRecord])), false);
    spanDrainRate = median(byClient[PRIMARY].rates);

    // DECODE_THREADS scan: the same backlog, one drain per thread count. On a machine with idle
    // cores the rate should grow with threads while CPU per span stays about flat (the decoding
    // moves, it is not repeated); on 2 cores shared with the broker there is nothing to move it to.
    const scan = [];
    for (const threads of DECODE_THREADS) {
      const group = `bench-${run}-spans-threads-${threads}`;
      const { w } = await startSpanWorker(topic, group, `spanlog-threads-${threads}`, { DECODE_THREADS: String(threads) });
      const { rate, cpuMicros } = await cpuDrain(group, topic, SPANS, w);
      const peak = await stopWorker(w);
      scan.push({ threads, rate, cpuMicros });
      say(`span drain with DECODE_THREADS=${threads}: ${fmt(rate)} spans/s, ${micros(cpuMicros)} µs CPU per span`);
      rows.push([`span worker [${PRIMARY}], DECODE_THREADS=${threads} (${os.availableParallelism()} cores): spans/s, CPU µs per span; peak RSS`, `${fmt(rate)}, ${micros(cpuMicros)}; ${mib(peak)} MiB`, '', '', '']);
    }
    if (scan.length > 1) {
      const [first, last] = [scan[0], scan.at(-1)];
      rows.push([`  DECODE_THREADS=${last.threads} / ${first.threads}: rate, CPU per span`, `${(last.rate / first.rate).toFixed(2)}, ${(last.cpuMicros / first.cpuMicros).toFixed(2)}`, '', '', '']);
    }

    // Memory as deployed: docker-compose.yml caps V8's old generation of span workers (a V8 flag,
    // read at process start). The same backlog once more, with that cap.
    const group = `bench-${run}-spans-capped`;
    const { w } = await startSpanWorker(topic, group, 'spanlog-capped', { NODE_OPTIONS: SPAN_WORKER_NODE_OPTIONS });
    const cappedRate = await drain(group, topic, SPANS, w);
    const cappedPeak = await stopWorker(w);
    rows.push([`span worker [${PRIMARY}]: the same drain with NODE_OPTIONS=${SPAN_WORKER_NODE_OPTIONS} (as docker-compose.yml), spans/s`, fmt(cappedRate), '', '', '']);
    rows.push([`  peak RSS (MiB, VmHWM), draining ${fmt(SPANS)} spans`, mib(cappedPeak), '', `≤ ${TARGETS.spanRssMiB}`, cappedPeak <= TARGETS.spanRssMiB * 2 ** 20 ? 'met' : 'NOT met']);
  }

  // Spans as the OpenTelemetry Collector writes them: the same number of spans, 100 per
  // otlp_proto request. Drained records are requests; rates are in spans.
  if (want('otlp')) {
    const topic = `bench-${run}.otlp`;
    const sent = await preload('spans', topic, SPANS, 20, { encoding: 'otlp_proto', spansPerMessage: 100 });
    const perMessage = sent.produced / sent.messages;
    const base = await baselines(topic, sent.messages);
    const byClient = {};
    for (const client of CLIENTS) {
      const group = `bench-${run}-otlp-${client}`;
      const { w } = await startSpanWorker(topic, group, `spanlog-otlp-${client}`, { KAFKA_CLIENT: client });
      const { rate, cpuMicros } = await cpuDrain(group, topic, sent.messages, w);
      const peak = await stopWorker(w);
      byClient[client] = rate * perMessage;
      rows.push([`span worker [${client}]: otlp_proto backlog drain (spans/s, 100 a message)`, fmt(rate * perMessage), baseText(base[client].library, perMessage), fmt(TARGETS.spans), rate * perMessage >= TARGETS.spans ? 'met' : 'NOT met']);
      cpuRow('  worker CPU per span (µs)', [cpuMicros / perMessage], TARGETS.otlpCpuMicros);
      peakRow(peak);
    }
    clientRatioRow('otlp_proto drain rate', byClient, true);
  }

  // Span latency: a steady load below capacity.
  if (want('latency')) {
    const topic = `bench-${run}.latency`;
    await createTopic(admin, topic);
    const group = `bench-${run}-latency`;
    const { w, metricsPort } = await startSpanWorker(topic, group, 'spanlog-latency');
    await sleep(3000);
    say(`steady load: ${LATENCY_RATE} spans/s for ${LATENCY_SECONDS} s`);
    await produce(kafka, { kind: 'spans', topic, count: LATENCY_RATE * LATENCY_SECONDS, tenants: 20, rate: LATENCY_RATE, bad: 0, batchSize: 200, topicPartitions: 6, maxMessageBytes: 1_000_000, progress: true });
    await drain(group, topic, LATENCY_RATE * LATENCY_SECONDS, w);
    const q = quantiles(await metricsText(metricsPort), 'spanledger_end_to_end_latency_seconds');
    const peak = await stopWorker(w);
    rows.push([`span worker [${PRIMARY}]: end-to-end p99 at ${fmt(LATENCY_RATE)}/s (s, bucket bound)`, String(q.p99), '', String(TARGETS.p99), q.p99 !== undefined && q.p99 <= TARGETS.p99 ? 'met' : 'NOT met']);
    rows.push([`  p50 (s, bucket bound)`, String(q.p50), '', '', '']);
    peakRow(peak);
  }

  // Sustained: a span worker at half of this run's drain rate, sampled as it goes (leaks: RSS
  // slope, open file descriptors; latency per interval).
  if (SUSTAINED && want('sustained')) {
    const rate = Math.round(Number(args['sustained-rate'] ?? (spanDrainRate ?? 40_000) / 2));
    const spanWorker = async (topic) => {
      const group = `bench-${run}-sustained`;
      return { ...(await startSpanWorker(topic, group, 'spanlog-sustained')), group };
    };
    const result = await sustained({ name: 'sustained', kind: 'spans', tenants: 20, tenantBase: 0x5a000, start: spanWorker }, rate, SUSTAINED_SECONDS, SUSTAINED_INTERVAL);
    sustainedRows(`span worker [${PRIMARY}]`, 'spans', rate, args['sustained-rate'] ? '--sustained-rate' : 'half the drain', result);
  }

  // Rules: the same trace backlog drained by a span worker and by a rule worker (own group), 20
  // tenants with 10 rules each. Traces of ~8 spans keyed by trace id, one starting every 2 ms of
  // event time (~500 open at a time); TRACE_IDLE_MS=1000 so the last traces close 1 s after the
  // stream ends instead of 10 s.
  if (want('rules')) {
    const topic = `bench-${run}.traces`;
    const rulesTopic = `bench-${run}.rules`;
    const tenants = await benchRuleTenants(kafka, rulesTopic, path.join(tmp, 'rules'));
    const { traces, spans } = await traceBacklog(kafka, admin, topic, tenants, RULE_SPANS, run);
    const base = await baselines(topic, spans.length);
    const spanRates = {};
    const ruleRates = {};
    for (const client of CLIENTS) {
      const spanGroup = `bench-${run}-traces-spans-${client}`;
      const { w: sw } = await startSpanWorker(topic, spanGroup, `spanlog-traces-${client}`, { KAFKA_CLIENT: client });
      const spanDrain = await cpuDrain(spanGroup, topic, spans.length, sw);
      const spanPeak = await stopWorker(sw);

      const metricsPort = await freePort();
      const ruleGroup = `bench-${run}-rules-${client}`;
      // Commits follow the oldest open trace at most this often: a short interval keeps the
      // drain's end (committed = produced) close to the moment the last trace was evaluated.
      // Each client's rule worker has its own checkpoints and signals (ruleWorkerEnv names them after the topic).
      const rw = startWorker('rules', ruleWorkerEnv(topic, rulesTopic, ruleGroup, tmp, metricsPort, { RULES_CHECKPOINT_INTERVAL_MS: '250', RULES_CHECKPOINT_TOPIC: `${topic}.checkpoints-${client}`, SIGNALS_TOPIC: `${topic}.signals-${client}`, KAFKA_CLIENT: client }));
      const ruleDrain = await cpuDrain(ruleGroup, topic, spans.length, rw);
      const m = await metricsText(metricsPort);
      const rulePeak = await stopWorker(rw);
      const drainLatency = quantiles(m, 'spanledger_rule_evaluation_latency_seconds');
      const signals = m.split('\n').filter((l) => l.startsWith('spanledger_rule_signals_produced_total{')).reduce((n, l) => n + Number(l.split(' ').pop()), 0);
      spanRates[client] = spanDrain.rate;
      ruleRates[client] = ruleDrain.rate;
      rows.push([`span worker [${client}]: trace backlog drain (spans/s)`, fmt(spanDrain.rate), baseText(base[client].library), fmt(TARGETS.spans), spanDrain.rate >= TARGETS.spans ? 'met' : 'NOT met']);
      rows.push(['  worker CPU per span (µs)', micros(spanDrain.cpuMicros), '', '', '']);
      peakRow(spanPeak);
      rows.push([`rule worker [${client}]: same backlog, 10 rules/tenant (spans/s)`, fmt(ruleDrain.rate), baseText(base[client].library), fmt(TARGETS.spans), ruleDrain.rate >= TARGETS.spans ? 'met' : 'NOT met']);
      cpuRow('  worker CPU per span (µs)', [ruleDrain.cpuMicros], TARGETS.ruleCpuMicros);
      rows.push([`  traces / signals`, `${traces.length} / ${signals}`, '', '', '']);
      rows.push([`  evaluation p50 / p99 while draining (s, bucket bound)`, `${drainLatency.p50} / ${drainLatency.p99}`, '', '', '']);
      peakRow(rulePeak);
    }
    clientRatioRow('trace backlog drain rate, span worker', spanRates, true);
    clientRatioRow('trace backlog drain rate, rule worker', ruleRates, true);

    // Evaluation latency under a steady load below capacity: traces whose event times are now,
    // produced as the clock reaches them.
    const steadyTopic = `bench-${run}.traces-steady`;
    await createTopic(admin, steadyTopic);
    const steadyPort = await freePort();
    const steadyGroup = `bench-${run}-rules-steady`;
    const steady = startWorker('rules', ruleWorkerEnv(steadyTopic, rulesTopic, steadyGroup, tmp, steadyPort));
    await sleep(3000);
    // Traces of ~7.7 spans: one every 7.7 / rate seconds gives `rate` spans/s.
    const live = corpus({ tenants, traces: Math.round((LATENCY_RATE * LATENCY_SECONDS) / 7.7), fillerSpans: 4, startMs: Date.now() + 1000, traceGapMs: 7700 / LATENCY_RATE, spanGapMs: 20, seed: `${run}-steady` });
    const liveSpans = spansInTimeOrder(live);
    say(`steady load: ${LATENCY_RATE} spans/s of traces for ${LATENCY_SECONDS} s`);
    await produceCorpus(kafka, steadyTopic, liveSpans, { chunk: 200, paced: true });
    await drain(steadyGroup, steadyTopic, liveSpans.length, steady);
    const latency = quantiles(await metricsText(steadyPort), 'spanledger_rule_evaluation_latency_seconds');
    const steadyPeak = await stopWorker(steady);
    rows.push([`rule worker [${PRIMARY}]: evaluation p99 at ${fmt(LATENCY_RATE)} spans/s, trace close → signals acked (s, bucket bound)`, String(latency.p99), '', String(TARGETS.rulesP99), latency.p99 !== undefined && latency.p99 <= TARGETS.rulesP99 ? 'met' : 'NOT met']);
    rows.push(['  p50 (s, bucket bound)', String(latency.p50), '', '', '']);
    peakRow(steadyPeak);
  }

  // Signals: drain a backlog into DuckDB + TigerBeetle, the same number of signals over 8 tenants
  // and over 500 (per-tenant batches get smaller: the drain should not fall far).
  let tb;
  if ((process.env.TB_ADDRESS || process.env.TIGERBEETLE_BIN) && want('signals')) {
    const { startTigerBeetle } = await import(path.join(ROOT, 'bench/tigerbeetle-support.mjs'));
    tb = await startTigerBeetle(tmp);
  }
  if (tb) {
    try {
      // Per client, RUNS drains, the clients taking turns; each on a fresh topic of new signals
      // (a tenant range of its own): ids or accounts an earlier drain stored would be replays.
      const byClient = Object.fromEntries(CLIENTS.map((c) => [c, []]));
      let base;
      for (let i = 0; i < RUNS; i++) {
        for (const [c, client] of CLIENTS.entries()) {
          const topic = `bench-${run}.signals-${client}-${i}`;
          await preload('signals', topic, SIGNALS, TENANTS_FEW, { tenantBase: 0x51000 + (i * CLIENTS.length + c) * TENANTS_FEW });
          base ??= await baselines(topic, SIGNALS, { role: 'signals' });
          const r = await signalDrain(tb, topic, SIGNALS, `signals-${client}-${i}`, client);
          byClient[client].push(r);
          say(`signal drain ${i + 1}/${RUNS} on ${client}: ${fmt(r.rate)} signals/s, ${micros(r.cpuMicros)} µs CPU per signal`);
        }
      }
      const summary = (runs) => ({ rate: median(runs.map((r) => r.rate)), flushes: runs[0].flushes, peak: Math.max(...runs.map((r) => r.peak)), cpuMicros: median(runs.map((r) => r.cpuMicros)) });
      for (const client of CLIENTS) {
        const runs = byClient[client];
        const s = summary(runs);
        rows.push([`signal worker [${client}]: backlog drain, ${TENANTS_FEW} tenants (signals/s${runsLabel})`, runsText(runs.map((r) => r.rate)), baseText(base[client].library), fmt(TARGETS.signals), s.rate >= TARGETS.signals ? 'met' : 'NOT met']);
        rows.push(['  flushes / p50 flush (s), first run', `${s.flushes.count} / ${s.flushes.p50}`, '', '', '']);
        cpuRow(`  worker CPU per signal (µs${runsLabel})`, runs.map((r) => r.cpuMicros), TARGETS.signalCpuMicros);
        peakRow(s.peak);
      }
      clientRatioRow(`signal drain rate${runsLabel}`, Object.fromEntries(CLIENTS.map((c) => [c, summary(byClient[c]).rate])), true);
      clientRatioRow(`worker CPU per signal${runsLabel}`, Object.fromEntries(CLIENTS.map((c) => [c, summary(byClient[c]).cpuMicros])), false);
      const few = summary(byClient[PRIMARY]);

      const manyTopic = `bench-${run}.signals-tenants`;
      // A tenant base of its own: none of these tenants has accounts from the first drain.
      await preload('signals', manyTopic, TENANT_SIGNALS, TENANTS_MANY, { tenantBase: 0x5e000 });
      const manyBase = await noopConsumer(brokers, { client: PRIMARY, form: 'library', topic: manyTopic, count: TENANT_SIGNALS });
      const many = await signalDrain(tb, manyTopic, TENANT_SIGNALS, 'signals-tenants');
      rows.push([`signal worker [${PRIMARY}]: backlog drain, ${TENANTS_MANY} tenants, ${fmt(TENANT_SIGNALS)} signals (signals/s)`, fmt(many.rate), baseText(manyBase), fmt(TARGETS.signals), many.rate >= TARGETS.signals ? 'met' : 'NOT met']);
      rows.push(['  flushes / p50 flush (s)', `${many.flushes.count} / ${many.flushes.p50}`, '', '', '']);
      cpuRow('  worker CPU per signal (µs)', [many.cpuMicros], TARGETS.manySignalCpuMicros);
      peakRow(many.peak, TARGETS.signalRssMiB);
      // A backlog committed in one go has no measurable rate (0): no ratio then.
      const ratio = few.rate > 0 && many.rate > 0 ? many.rate / few.rate : undefined;
      rows.push([`  drain ratio ${TENANTS_MANY} / ${TENANTS_FEW} tenants (${PRIMARY})`, ratio === undefined ? 'n/a' : ratio.toFixed(2), '', `≥ ${TARGETS.tenantsRatio}`, ratio === undefined ? '' : ratio >= TARGETS.tenantsRatio ? 'met' : 'NOT met']);

      // Sustained, over the 500 tenants: every tenant's database stays in use (open files, memory).
      if (SUSTAINED) {
        const rate = Math.round(Number(args['sustained-signal-rate'] ?? many.rate / 2));
        const start = (topic) => startSignalWorker(tb, topic, 'signals-sustained');
        const result = await sustained({ name: 'signals-sustained', kind: 'signals', tenants: TENANTS_MANY, tenantBase: 0x5f000, start }, rate, SUSTAINED_SECONDS, SUSTAINED_INTERVAL);
        sustainedRows(`signal worker [${PRIMARY}], ${TENANTS_MANY} tenants,`, 'signals', rate, args['sustained-signal-rate'] ? '--sustained-signal-rate' : `half the ${TENANTS_MANY}-tenant drain`, result, TARGETS.signalRssMiB);
      }
    } finally {
      await tb.stop();
    }
  } else if (want('signals')) {
    rows.push(['signal worker: skipped (set TB_ADDRESS or TIGERBEETLE_BIN)', '', '', fmt(TARGETS.signals), '']);
    rows.push([`signal worker, ${TENANTS_MANY} / ${TENANTS_FEW} tenants drain ratio: skipped (no TigerBeetle)`, '', '', `≥ ${TARGETS.tenantsRatio}`, '']);
  }
} finally {
  await admin.disconnect();
  await broker.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
}

const head = ['measure', 'spanledger', 'baseline (no-op library consumer, same client)', 'target', ''];
const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
const line = (r) => r.map((c, i) => String(c).padEnd(widths[i])).join('  ');
const mode = QUICK ? 'quick mode' : 'full';
console.log(`\nspanledger bench (${mode}, clients ${CLIENTS.join(', ')}) on ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown cpu'}), load average ${os.loadavg()[0].toFixed(1)}, broker and workers on this machine`);
console.log(line(head));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const r of rows) console.log(line(r));
