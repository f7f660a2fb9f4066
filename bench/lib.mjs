// Pieces shared by bench/run.mjs and bench/profile.mjs: a broker, backlogs, worker child
// processes, their metrics and their /proc numbers. Needs dist/ (npm run build).
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const CLI = path.join(ROOT, 'bin', 'spanledger.js');
const { produce } = await import(path.join(ROOT, 'dist/cli/produce.js'));
const { groupLag } = await import(path.join(ROOT, 'dist/kafka/client.js'));
const { createKafkaJsFacade } = await import(path.join(ROOT, 'dist/kafka/kafkajs/facade.js'));
const { ensureTopics } = await import(path.join(ROOT, 'dist/kafka/topics.js'));
const { corpus, produceCorpus, spansInTimeOrder, RULES_A } = await import(path.join(ROOT, 'dist/devtools/trace-corpus.js'));
const { putRules } = await import(path.join(ROOT, 'dist/cli/rules-topic.js'));
const { tenantIdFor, generateSpan, generateSignal } = await import(path.join(ROOT, 'dist/model/generate.js'));
const { pino } = await import('pino');
export { produce, corpus, produceCorpus, spansInTimeOrder, tenantIdFor };

export const say = (s) => process.stderr.write(`bench: ${s}\n`);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const fmt = (n) => (n === undefined || Number.isNaN(n) ? 'n/a' : Math.round(n).toLocaleString('en-US'));
export const mib = (bytes) => (bytes === undefined ? 'n/a' : (bytes / 2 ** 20).toFixed(0));

/** `--name value` pairs of argv; a flag followed by another flag (or nothing) is `true`. */
export function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    if (!argv[i].startsWith('--')) continue;
    const next = argv[i + 1];
    out[argv[i].slice(2)] = next === undefined || next.startsWith('--') ? true : next;
  }
  return out;
}

export async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** One field of /proc/<pid>/status in bytes (VmHWM: peak resident set; VmRSS: now). */
export function procStatusBytes(pid, field) {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat (100 ticks/s). */
export function procCpuSeconds(pid) {
  try {
    // Fields after the command name (which may hold spaces, hence from the last ')'): utime is the 12th, stime the 13th.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

/**
 * CPU seconds the whole machine has been busy so far (every core's user, nice, system, irq,
 * softirq and steal time from /proc/stat) and the seconds it was idle: what a drain leaves to
 * the worker when the broker (and any server of the bench) share its cores.
 */
export function machineCpuSeconds() {
  try {
    const cpu = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, idle, iowait, irq, softirq, steal] = cpu;
    return { busy: (user + nice + system + irq + softirq + (steal ?? 0)) / 100, idle: (idle + (iowait ?? 0)) / 100 };
  } catch {
    return { busy: NaN, idle: NaN };
  }
}

/** The pid in `file` (a pid file of scripts/kafka.sh or scripts/s3.sh), or undefined. */
export function pidFromFile(file) {
  try {
    const pid = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isSafeInteger(pid) && pid > 0 && fs.existsSync(`/proc/${pid}`) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * CPU seconds a process has used so far by kind of thread, from /proc/<pid>/task/<tid>/stat: the
 * main thread (JavaScript, and the collector's share of it), V8's helper threads (concurrent
 * marking, parallel scavenging, compilation), libuv's pool (fs calls, zlib, DuckDB queries) and
 * the rest (native clients' own threads). Threads that ended are not counted.
 */
export function procCpuByThread(pid) {
  const out = { main: 0, v8: 0, libuv: 0, other: 0 };
  let tids = [];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const seconds = (Number(fields[11]) + Number(fields[12])) / 100;
      const kind = tid === String(pid) ? 'main' : comm.startsWith('V8') ? 'v8' : comm.startsWith('libuv') ? 'libuv' : 'other';
      out[kind] += seconds;
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

/** Open file descriptors of a process (entries of /proc/<pid>/fd). */
export function openFds(pid) {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return undefined;
  }
}

/**
 * A broker: KAFKA_BROKERS, or `scripts/kafka.sh up` with `env` (a private one in a temp folder
 * for the bench, the default local one for `make profile`). `stop` stops only a broker started here
 * when `stopOnExit`.
 */
export function brokerFromEnv({ env, stopOnExit }) {
  if (process.env.KAFKA_BROKERS) return { brokers: process.env.KAFKA_BROKERS, stop: async () => {} };
  const port = env.KAFKA_PORT ?? '9092';
  say(`starting a local Kafka broker on 127.0.0.1:${port}`);
  execFileSync('bash', [path.join(ROOT, 'scripts/kafka.sh'), 'up'], { env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit'] });
  return {
    brokers: `127.0.0.1:${port}`,
    stop: async () => {
      if (stopOnExit) execFileSync('bash', [path.join(ROOT, 'scripts/kafka.sh'), 'down'], { env: { ...process.env, ...env }, stdio: 'ignore' });
    },
  };
}

/**
 * spanledger's Kafka facade (src/kafka/facade.ts) on kafkajs, for what the bench does through
 * spanledger's own code (topics, produce, rules, corpus, lag): the bench's load tools are not what
 * it measures (the workers, child processes on their KAFKA_CLIENT, are).
 */
export function benchKafka(brokers) {
  return createKafkaJsFacade({ clientId: 'spanledger-bench', brokers: brokers.split(','), logger: pino({ level: 'silent' }) });
}

/**
 * The baseline: a consumer that only counts `count` records of `topic`, on `client`
 * (platformatic, kafkajs), as the library offers it (`form` library) or through spanledger's
 * adapter (`form` adapter), in a child process of its own (bench/noop-consumer.mjs): its rate
 * (records/s), CPU per record (µs) and peak RSS.
 */
export async function noopConsumer(brokers, { client, form, topic, count, role = 'spans' }) {
  const child = spawn(process.execPath, [path.join(ROOT, 'bench/noop-consumer.mjs'), '--client', client, '--form', form, '--topic', topic, '--count', String(count), '--role', role], {
    cwd: ROOT,
    env: { ...process.env, KAFKA_BROKERS: brokers },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.add(child);
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const code = await new Promise((resolve) => child.once('exit', resolve));
  children.delete(child);
  if (code !== 0) throw new Error(`no-op consumer (${client}, ${form}) exited with ${code}`);
  return JSON.parse(out.trim().split('\n').at(-1));
}

export async function createTopic(admin, topic) {
  // The workers' one topic function connects and disconnects an admin of its own; the bench's
  // admin stays connected for the whole run, so it is lent without its connect and disconnect.
  const lent = Object.assign(Object.create(admin), { connect: async () => {}, disconnect: async () => {} });
  await ensureTopics({ admin: () => lent }, [{ topic, numPartitions: 6 }]);
}

export async function preload(kafka, admin, kind, topic, count, tenants, extra = {}) {
  await createTopic(admin, topic);
  say(`producing ${count} ${kind} over ${tenants} tenants to ${topic}${extra.encoding ? ` as ${extra.encoding}` : ''}`);
  const r = await produce(kafka, { kind, topic, count, tenants, rate: 0, bad: 0, batchSize: 1000, topicPartitions: 6, maxMessageBytes: 1_000_000, progress: true, ...extra });
  say(`produced at ${r.rate}/s`);
  return r;
}

/** Time from the first committed record to the group's lag reaching zero (records/s). */
export async function drain(admin, group, topic, total, worker, onFirstCommit = () => {}) {
  let first;
  let last = 0;
  for (;;) {
    const lag = await groupLag(admin, group, topic).catch(() => undefined);
    const done = lag ? Number(lag.reduce((n, p) => n + p.committed, 0n)) : 0;
    if (done > 0 && first === undefined) {
      first = { t: performance.now(), done };
      onFirstCommit(done);
    }
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

// Workers still running when the bench is interrupted or fails are stopped with it.
const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGTERM');
});
for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => process.exit(130));

/** A worker as a child process (`nodeArgs` before the CLI, e.g. --cpu-prof). */
export function startWorker(brokers, kind, env, nodeArgs = []) {
  // BENCH_WORKER_LOGS=dir keeps each worker's log (warnings and up) as dir/<kind>-<n>.log.
  const logDir = process.env.BENCH_WORKER_LOGS;
  let out = 'ignore';
  if (logDir) {
    fs.mkdirSync(logDir, { recursive: true });
    out = fs.openSync(path.join(logDir, `${kind}-${Date.now()}.log`), 'a');
  }
  const child = spawn(process.execPath, [...nodeArgs, CLI, 'worker', kind], {
    cwd: ROOT,
    env: { ...process.env, KAFKA_BROKERS: brokers, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', out, 'inherit'],
  });
  if (typeof out === 'number') fs.closeSync(out);
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/**
 * Spans (or signals, `kind`) at `rate` per second for `seconds` of wall clock over `tenants`
 * tenants from `tenantBase`, then stop (a producer that cannot keep up sends fewer: `produced` /
 * `seconds` is the rate achieved). Batches of a tenth of a second. `stopped()` true ends it early.
 */
export async function steadyLoad(kafka, topic, { kind = 'spans', rate, seconds, tenants = 20, tenantBase = 0x5a000, stopped = () => false }) {
  const producer = kafka.producer({ delivery: 'bounded' });
  await producer.connect();
  const started = performance.now();
  const end = started + seconds * 1000;
  const perBatch = Math.max(1, Math.round(rate / 10));
  const inFlight = [];
  let seq = 0;
  try {
    while (performance.now() < end && !stopped()) {
      const messages = [];
      for (let i = 0; i < perBatch; i++, seq++) {
        const tenantId = tenantIdFor(tenantBase + (seq % tenants));
        const record = kind === 'signals' ? generateSignal(tenantId, seq) : generateSpan(tenantId, seq);
        messages.push({ key: tenantId, value: JSON.stringify(record), timestamp: String(Date.now()) });
      }
      inFlight.push(producer.send(topic, messages));
      if (inFlight.length >= 8) await inFlight.shift();
      const dueMs = started + (seq / rate) * 1000 - performance.now();
      if (dueMs > 0) await sleep(dueMs);
    }
    await Promise.all(inFlight);
  } finally {
    await producer.disconnect();
  }
  return { produced: seq, rate: seq / ((performance.now() - started) / 1000) };
}

/** SIGTERM and wait for the exit; returns the worker's peak RSS (VmHWM, read just before). */
export async function stopWorker(child) {
  const peakRss = procStatusBytes(child.pid, 'VmHWM');
  if (child.exitCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  return peakRss;
}

export async function metricsText(port) {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

/** Cumulative bucket counts of a Prometheus histogram, summed over its label sets, by `le`. */
export function buckets(text, name) {
  const byLe = new Map();
  for (const l of text.split('\n')) {
    if (!l.startsWith(`${name}_bucket{`)) continue;
    const bound = /le="([^"]+)"/.exec(l)[1];
    const le = bound === '+Inf' ? Infinity : Number(bound);
    byLe.set(le, (byLe.get(le) ?? 0) + Number(l.split(' ').pop()));
  }
  return [...byLe].map(([le, n]) => ({ le, n })).sort((a, b) => a.le - b.le);
}

/** p50/p99 from cumulative buckets (upper bucket bounds: the true value is at most this). */
export function bucketQuantiles(bs) {
  const total = bs.at(-1)?.n ?? 0;
  const q = (p) => (total === 0 ? undefined : bs.find((b) => b.n >= p * total)?.le);
  return { count: total, p50: q(0.5), p99: q(0.99) };
}

export const quantiles = (text, name) => bucketQuantiles(buckets(text, name));

/** Buckets of `now` minus those of `before` (same histogram, two scrapes): one interval. */
export function bucketDelta(now, before) {
  const prev = new Map(before.map((b) => [b.le, b.n]));
  return now.map((b) => ({ le: b.le, n: b.n - (prev.get(b.le) ?? 0) }));
}

/** Least-squares slope of y over x. */
export function slope(points) {
  const n = points.length;
  if (n < 2) return undefined;
  const mx = points.reduce((s, p) => s + p.x, 0) / n;
  const my = points.reduce((s, p) => s + p.y, 0) / n;
  const sxx = points.reduce((s, p) => s + (p.x - mx) ** 2, 0);
  return sxx === 0 ? undefined : points.reduce((s, p) => s + (p.x - mx) * (p.y - my), 0) / sxx;
}

// 10 rules per tenant over the corpus' span names: the 3 of RULES_A and 7 more.
export const BENCH_RULES = `${RULES_A}  - id: server-errors
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

/** 20 bench tenants with BENCH_RULES put on `rulesTopic` (rule files written under `dir`). */
export async function benchRuleTenants(kafka, rulesTopic, dir) {
  const tenants = Array.from({ length: 20 }, (_, i) => ({ tenantId: tenantIdFor(0xbe000 + i), rules: 'A' }));
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'rules.yaml'), BENCH_RULES);
  const logger = pino({ level: 'silent' });
  for (const t of tenants) await putRules({ kafka, topic: rulesTopic, logger, timeoutMs: 30_000 }, t.tenantId, path.join(dir, 'rules.yaml'), false);
  return tenants;
}

/**
 * A trace backlog of about `spanCount` spans on a fresh `topic`: traces of ~8 spans keyed by trace
 * id, one starting every 2 ms of event time (~500 open at a time), an hour in the past.
 */
export async function traceBacklog(kafka, admin, topic, tenants, spanCount, seed) {
  await createTopic(admin, topic);
  const traces = corpus({ tenants, traces: Math.round(spanCount / 7.7), fillerSpans: 4, startMs: Date.now() - 3_600_000, traceGapMs: 2, spanGapMs: 20, seed });
  const spans = spansInTimeOrder(traces);
  say(`producing ${spans.length} spans of ${traces.length} traces to ${topic}`);
  const t0 = performance.now();
  await produceCorpus(kafka, topic, spans, { chunk: 2000, onProgress: (n) => process.stderr.write(`\rbench: produced ${n}/${spans.length}   `) });
  process.stderr.write('\n');
  say(`produced at ${fmt(spans.length / ((performance.now() - t0) / 1000))}/s`);
  return { traces, spans };
}

/** The environment of a rule worker reading `topic` (its own dead letters, checkpoints, signals). */
export function ruleWorkerEnv(topic, rulesTopic, group, dataDir, metricsPort, extra = {}) {
  return {
    SPANS_TOPIC: topic,
    RULES_TOPIC: rulesTopic,
    RULES_GROUP: group,
    RULES_DLQ_TOPIC: `${topic}.rules-dlq`,
    RULES_CHECKPOINT_TOPIC: `${topic}.checkpoints`,
    SIGNALS_TOPIC: `${topic}.signals`,
    TRACE_IDLE_MS: '1000',
    QUARANTINE_DIR: path.join(dataDir, 'quarantine'),
    METRICS_PORT: String(metricsPort),
    ...extra,
  };
}
