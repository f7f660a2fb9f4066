#!/usr/bin/env node
// How long each partition stops consuming while span workers scale 1 → 2 → 3 → 2 → 1 under a
// steady load, eager vs cooperative rebalancing (issue 19). Per step, partitions that kept their
// worker ("unmoved") and those that moved are reported apart: with cooperative-sticky, unmoved
// partitions should keep flowing; with eager, every partition stops until the group has rejoined.
//
// Progress of a partition is its committed offset in the group, sampled from the broker every
// --sample-ms: a span worker commits right after each flush is durable, and under a steady load
// below capacity a partition flushes as soon as it has caught up (BATCH_FLUSH_WHEN_CAUGHT_UP), so
// commits advance every fetch or so (the steady-state gap is printed as the baseline). Owners come
// from each worker's GET /status (its assigned partitions), read just before a step and at its end.
//
// node bench/rebalance.mjs [--clients platformatic,kafkajs] [--protocols cooperative,eager] [--runs N]
//   [--rate R] [--step-seconds S] [--sample-ms MS] [--tenants N] [--span-env K=V,…] [--json file]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { benchKafka, brokerFromEnv, createTopic, freePort, metricsText, parseArgs, say, sleep, startWorker, steadyLoad, stopWorker } from './lib.mjs';
import { ROOT } from './lib.mjs';

const { groupLag } = await import(path.join(ROOT, 'dist/kafka/client.js'));

const args = parseArgs(process.argv.slice(2));
const list = (name, def) => (typeof args[name] === 'string' ? args[name].split(',') : def);
const num = (name, def) => (args[name] === undefined ? def : Number(args[name]));
const CLIENTS = list('clients', ['platformatic', 'kafkajs']);
const PROTOCOLS = list('protocols', ['cooperative', 'eager']);
const RUNS = num('runs', 1);
const RATE = num('rate', 4000);
const STEP_SECONDS = num('step-seconds', 12);
const SAMPLE_MS = num('sample-ms', 100);
// Keys are tenant ids: enough of them that all 6 partitions get records.
const TENANTS = num('tenants', 60);
const SPAN_ENV = typeof args['span-env'] === 'string' ? Object.fromEntries(args['span-env'].split(',').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])) : {};
const PARTITIONS = 6;
// Worker counts after each step, from one worker.
const STEPS = [2, 3, 2, 1];

const broker = brokerFromEnv({ env: {}, stopOnExit: false });
const brokers = broker.brokers;
const kafka = benchKafka(brokers);
const admin = kafka.admin();
await admin.connect();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'spanledger-rebalance-'));
const run = Date.now().toString(36);

/** kafkajs has only eager: a kafkajs worker asked for cooperative runs eager (with a warning), so that pair is not run. */
const configs = [];
for (const client of CLIENTS) for (const protocol of PROTOCOLS) if (!(client === 'kafkajs' && protocol === 'cooperative')) configs.push({ client, protocol });

async function status(port) {
  const ctl = AbortSignal.timeout(1000);
  const r = await fetch(`http://127.0.0.1:${port}/status`, { signal: ctl });
  return r.json();
}

/** partition → worker name, from the /status of every live worker (a partition two list, mid-handover, goes to neither). */
async function owners(workers) {
  const owner = new Map();
  const seen = new Map();
  await Promise.all(
    workers.map(async (w) => {
      const s = await status(w.port).catch(() => undefined);
      for (const p of s?.partitions ?? []) seen.set(p.partition, [...(seen.get(p.partition) ?? []), w.name]);
    }),
  );
  for (const [p, names] of seen) if (names.length === 1) owner.set(p, names[0]);
  return owner;
}

/**
 * The longest stop of `partition` in (from, to]: the time between two advances of its progress
 * (`series`: samples { t, value: per partition }) while records were waiting (`waiting(s, p)`,
 * true at some sample in between); a stop still open at `to` counts up to `to` (flagged `open`).
 */
function longestStop(series, partition, from, to, waiting) {
  let lastAdvance;
  let prev;
  let waited = false;
  let longest = { ms: 0, open: false };
  for (const s of series) {
    if (s.t > to) break;
    const v = s.value[partition];
    if (prev === undefined || v > prev) {
      if (prev !== undefined && waited && s.t > from && s.t - lastAdvance > longest.ms) longest = { ms: s.t - lastAdvance, open: false };
      lastAdvance = s.t;
      waited = waiting(s.t, partition);
    } else if (waiting(s.t, partition)) waited = true;
    prev = v;
  }
  if (lastAdvance !== undefined && waited && to - lastAdvance > longest.ms) longest = { ms: to - lastAdvance, open: true };
  return longest;
}

/** Bytes of the span log per partition: segments are <tenant>/<day>/<topic>+<partition>+<first>.jsonl (docs/spanlog.md). */
async function spanlogBytes(dir, topic) {
  const bytes = new Array(PARTITIONS).fill(0);
  const list = (d) => fs.promises.readdir(d).catch(() => []);
  for (const tenant of await list(dir)) {
    if (tenant.startsWith('.')) continue;
    for (const day of await list(path.join(dir, tenant))) {
      for (const file of await list(path.join(dir, tenant, day))) {
        if (!file.startsWith(`${topic}+`) || !file.endsWith('.jsonl')) continue;
        const partition = Number(file.slice(topic.length + 1).split('+')[0]);
        const st = await fs.promises.stat(path.join(dir, tenant, day, file)).catch(() => undefined);
        if (st && partition < PARTITIONS) bytes[partition] += st.size;
      }
    }
  }
  return bytes;
}

async function scenario({ client, protocol }, n) {
  const name = `${client}-${protocol}-${n}`;
  const topic = `bench-rb-${run}-${name}`;
  const group = `bench-rb-${run}-${name}`;
  await createTopic(admin, topic);
  const loadAverage = os.loadavg()[0];
  say(`${name}: ${RATE} spans/s on ${topic}, steps 1 → ${STEPS.join(' → ')} every ${STEP_SECONDS} s (load average ${loadAverage.toFixed(1)})`);
  // Until the last step is measured (an hour at most).
  let loading = true;
  const load = steadyLoad(kafka, topic, { rate: RATE, seconds: 3600, tenants: TENANTS, tenantBase: 0x7b000, stopped: () => !loading });

  // One span log for the group, as workers sharing a volume: a moved partition's new owner waits
  // for the old one's lock (docs/spanlog.md), part of a hand-over's cost.
  const spanlogDir = path.join(tmp, name);
  const live = [];
  let seq = 0;
  // Commit failures each worker reported, last scrape: a failed commit would stall the measure
  // (committed offsets) while records were still stored.
  const commitFailures = new Map();
  const scrapeFailures = () =>
    Promise.all(
      live.map(async (w) => {
        const text = await metricsText(w.port).catch(() => '');
        const n = text.split('\n').filter((l) => l.startsWith('spanledger_commit_failures_total')).reduce((a, l) => a + Number(l.split(' ').pop()), 0);
        commitFailures.set(w.name, Math.max(n, commitFailures.get(w.name) ?? 0));
      }),
    );
  const start = async () => {
    const port = await freePort();
    const w = { name: `w${++seq}`, port };
    w.child = startWorker(brokers, 'spans', { SPANS_TOPIC: topic, SPANS_DLQ_TOPIC: `${topic}.dlq`, SPANS_GROUP: group, SPANLOG_DIR: spanlogDir, METRICS_PORT: String(port), KAFKA_CLIENT: client, KAFKA_REBALANCE_PROTOCOL: protocol, ...SPAN_ENV });
    live.push(w);
    return w;
  };

  // Samples of the group's committed offsets and the end offsets, every SAMPLE_MS, until stopped.
  const samples = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const next = performance.now() + SAMPLE_MS;
      const lag = await groupLag(admin, group, topic).catch(() => undefined);
      if (lag) samples.push({ t: performance.now(), value: lag.map((p) => p.committed), end: lag.map((p) => p.end) });
      const wait = next - performance.now();
      if (wait > 0) await sleep(wait);
    }
  })();

  // The span log's bytes per partition, as often as a walk of its folders allows: storage itself,
  // which a refused commit does not hold up.
  const stored = [];
  const storedSampler = (async () => {
    while (sampling) {
      const next = performance.now() + SAMPLE_MS;
      const bytes = await spanlogBytes(spanlogDir, topic);
      stored.push({ t: performance.now(), value: bytes });
      const wait = next - performance.now();
      if (wait > 0) await sleep(wait);
    }
  })();
  // Records waited for `p` at `t`: the broker sample at or before `t` had its end above its committed offset.
  const waiting = (t, p) => {
    let i = samples.length - 1;
    while (i > 0 && samples[i].t > t) i--;
    const s = samples[i];
    return s !== undefined && s.end[p] > s.value[p];
  };

  const steps = [];
  try {
    await start();
    // Warm-up: until every partition has a commit, then one step of steady state as the baseline.
    const deadline = performance.now() + 60_000;
    while (!(samples.at(-1)?.value.every((c) => c > 0n) ?? false)) {
      if (performance.now() > deadline) throw new Error(`${name}: no commit on every partition within 60 s`);
      await sleep(200);
    }
    const baselineFrom = performance.now();
    await sleep(STEP_SECONDS * 1000);
    const baselineTo = performance.now();
    const baseline = Array.from({ length: PARTITIONS }, (_, p) => longestStop(samples, p, baselineFrom, baselineTo, waiting).ms);
    const storedBaseline = Array.from({ length: PARTITIONS }, (_, p) => longestStop(stored, p, baselineFrom, baselineTo, waiting).ms);

    let count = 1;
    for (const target of STEPS) {
      await scrapeFailures();
      const before = await owners(live);
      const at = performance.now();
      let exited;
      if (target > count) await start();
      else exited = stopWorker(live.pop().child);
      const label = `${count} → ${target}`;
      count = target;
      await sleep(STEP_SECONDS * 1000);
      await exited;
      const after = await owners(live);
      const to = performance.now();
      const partitions = Array.from({ length: PARTITIONS }, (_, p) => {
        const stop = longestStop(samples, p, at, to, waiting);
        const storedStop = longestStop(stored, p, at, to, waiting);
        return { partition: p, before: before.get(p), after: after.get(p), moved: before.get(p) === undefined || before.get(p) !== after.get(p), stopMs: stop.ms, open: stop.open, storedStopMs: storedStop.ms, storedOpen: storedStop.open };
      });
      steps.push({ label, partitions });
      say(`${name} ${label}: ${partitions.map((p) => `p${p.partition} ${p.before ?? '?'}→${p.after ?? '?'} ${Math.round(p.stopMs)}${p.open ? '+' : ''}/${Math.round(p.storedStopMs)}${p.storedOpen ? '+' : ''} ms`).join(', ')}`);
    }
    await scrapeFailures();
    loading = false;
    const produced = await load;
    const failures = [...commitFailures.values()].reduce((a, b) => a + b, 0);
    return { name, client, protocol, run: n, loadAverage, rate: produced.rate, baseline, storedBaseline, storedSamples: stored.length, steps, commitFailures: failures };
  } finally {
    loading = false;
    sampling = false;
    await sampler;
    await storedSampler;
    for (const w of live.splice(0)) await stopWorker(w.child);
    await load.catch(() => {});
  }
}

const results = [];
try {
  for (let n = 1; n <= RUNS; n++) for (const c of configs) results.push(await scenario(c, n));
} finally {
  await admin.disconnect();
  await broker.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
}
if (typeof args.json === 'string') fs.writeFileSync(args.json, JSON.stringify(results, null, 2));

const s = (ms) => (ms / 1000).toFixed(1);
// "committed / stored" seconds: the longest stop of the committed offset, then of the span log's bytes.
const maxOf = (ps) => (ps.length === 0 ? '-' : ['stopMs', 'storedStopMs'].map((k) => `${s(Math.max(...ps.map((p) => p[k])))}${ps.some((p) => p[k === 'stopMs' ? 'open' : 'storedOpen']) ? '+' : ''}`).join(' / '));
const rangeOf = (ps) => (ps.length === 0 ? '-' : ['stopMs', 'storedStopMs'].map((k) => `${s(Math.min(...ps.map((p) => p[k])))}-${s(Math.max(...ps.map((p) => p[k])))}`).join(' / '));
const head = ['client / protocol', 'run', 'load avg', 'commit failures', 'baseline max', 'step', 'unmoved', 'unmoved stop (s, min-max)', 'moved', 'moved stop (s, max)'];
const rows = [];
for (const r of results) {
  for (const [i, st] of r.steps.entries()) {
    const unmoved = st.partitions.filter((p) => !p.moved);
    const moved = st.partitions.filter((p) => p.moved);
    rows.push([i === 0 ? `${r.client} / ${r.protocol}` : '', i === 0 ? String(r.run) : '', i === 0 ? r.loadAverage.toFixed(1) : '', i === 0 ? String(r.commitFailures) : '', i === 0 ? `${s(Math.max(...r.baseline))} / ${s(Math.max(...r.storedBaseline))}` : '', st.label, String(unmoved.length), rangeOf(unmoved), String(moved.length), maxOf(moved)]);
  }
}
const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (r) => r.map((c, i) => c.padEnd(widths[i])).join('  ');
console.log(`\nspanledger rebalance bench: ${RATE} spans/s over ${PARTITIONS} partitions, steps every ${STEP_SECONDS} s, sampled every ${SAMPLE_MS} ms, on ${os.cpus().length} cores, broker and workers on this machine`);
console.log('stop = longest time between two advances of a partition\'s committed offset / of its bytes in the span log, while records waited; + = still stopped at the step\'s end');
console.log(line(head));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const r of rows) console.log(line(r));
