#!/usr/bin/env node
// CPU profile of one worker draining a backlog, as a flame graph (`make profile WORKER=…`).
//
//   node bench/profile.mjs --worker spans|signals|rules [--count N] [--tenants N (signals)]
//                          [--encoding json|otlp_proto (spans; otlp_proto at 100 spans a request)] [--out DIR]
//
// Produces a backlog on fresh topics (spans: JSON spans over 20 tenants; signals: over 8 tenants;
// rules: the trace corpus of bench/run.mjs, 20 tenants of 10 rules), runs the worker under
// `node --cpu-prof` until the whole backlog is committed, stops it with SIGTERM (the profile is
// written as it exits), and turns the .cpuprofile into an HTML flame graph with 0x. Output: DIR
// (default .cache/profile/<worker>-<time>/), with the worker's data folders inside it.
//
// Broker: KAFKA_BROKERS, else the local one of `make kafka-up` (scripts/kafka.sh up, left running).
// Signals need TigerBeetle: TB_ADDRESS, or TIGERBEETLE_BIN (a replica started here for the run).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  ROOT, say, fmt, mib, parseArgs, freePort, brokerFromEnv, benchKafka, preload, drain, startWorker, stopWorker, benchRuleTenants, traceBacklog, ruleWorkerEnv,
} from './lib.mjs';

/** Self time by where the code lives: a first reading of the flame graph, printed beside it. */
function selfTimeShares(file) {
  const p = JSON.parse(fs.readFileSync(file, 'utf8'));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const where = ({ url, functionName }) => {
    if (url === '' && functionName.startsWith('(')) return functionName; // (garbage collector), (program), (idle)
    if (url.includes('/node_modules/kafkajs/')) return 'kafkajs';
    if (url.includes('/node_modules/')) return 'other packages';
    if (url.startsWith('node:') || url === '') return 'node core and builtins';
    return 'spanledger (dist/, bin/)';
  };
  const shares = new Map();
  let total = 0;
  p.samples.forEach((id, i) => {
    const dt = p.timeDeltas[i] ?? 0;
    const k = where(byId.get(id).callFrame);
    shares.set(k, (shares.get(k) ?? 0) + dt);
    total += dt;
  });
  return [...shares].sort((a, b) => b[1] - a[1]).map(([k, t]) => `${k} ${((100 * t) / total).toFixed(1)}%`).join(', ');
}

const args = parseArgs(process.argv.slice(2));
const WORKER = args.worker;
const DEFAULT_COUNT = { spans: 300_000, signals: 100_000, rules: 200_000 };
if (!(WORKER in DEFAULT_COUNT)) {
  process.stderr.write('usage: node bench/profile.mjs --worker spans|signals|rules [--count N] [--out DIR]\n');
  process.exit(2);
}
if (WORKER === 'signals' && !process.env.TB_ADDRESS && !process.env.TIGERBEETLE_BIN) {
  process.stderr.write('profile: the signal worker needs TigerBeetle: set TB_ADDRESS (a running replica) or TIGERBEETLE_BIN (a tigerbeetle binary)\n');
  process.exit(2);
}
const COUNT = Number(args.count ?? DEFAULT_COUNT[WORKER]);
const ENCODING = args.encoding ?? 'json';
if (!['json', 'otlp_proto'].includes(ENCODING) || (ENCODING !== 'json' && WORKER !== 'spans')) {
  process.stderr.write('profile: --encoding is json or otlp_proto, for --worker spans only\n');
  process.exit(2);
}
/** Signals only: tenants the signals are spread over (8; 500 is the many-tenant case of make bench). */
const TENANTS = Number(args.tenants ?? 8);
const run = Date.now().toString(36);
const out = path.resolve(typeof args.out === 'string' ? args.out : path.join(ROOT, '.cache', 'profile', `${WORKER}-${run}`));
const data = path.join(out, 'data');
fs.mkdirSync(data, { recursive: true });

const broker = brokerFromEnv({ env: {}, stopOnExit: false });
const kafka = benchKafka(broker.brokers);
const admin = kafka.admin();
await admin.connect();
let tb;
try {
  const topic = `profile-${run}.${WORKER}`;
  const group = `profile-${run}-${WORKER}`;
  const metricsPort = await freePort();
  let env;
  let total;
  if (WORKER === 'spans') {
    // total counts records (OTLP requests of 100 spans each when --encoding otlp_proto).
    const otlp = ENCODING === 'otlp_proto' ? { encoding: 'otlp_proto', spansPerMessage: 100 } : {};
    const sent = await preload(kafka, admin, 'spans', topic, COUNT, 20, otlp);
    total = sent.messages;
    env = { SPANS_TOPIC: topic, SPANS_DLQ_TOPIC: `${topic}.dlq`, SPANS_GROUP: group, SPANLOG_DIR: path.join(data, 'spanlog'), METRICS_PORT: String(metricsPort) };
  } else if (WORKER === 'signals') {
    const { startTigerBeetle } = await import(path.join(ROOT, 'bench/tigerbeetle-support.mjs'));
    tb = await startTigerBeetle(data);
    total = (await preload(kafka, admin, 'signals', topic, COUNT, TENANTS, { tenantBase: Date.now() % 1_000_000 })).produced;
    env = { SIGNALS_TOPIC: topic, SIGNALS_DLQ_TOPIC: `${topic}.dlq`, SIGNALS_GROUP: group, DUCKDB_DIR: path.join(data, 'duckdb'), TB_ADDRESS: tb.address, TB_CLUSTER_ID: '0', METRICS_PORT: String(metricsPort) };
  } else {
    const rulesTopic = `profile-${run}.rules-topic`;
    const tenants = await benchRuleTenants(kafka, rulesTopic, path.join(data, 'rules'));
    total = (await traceBacklog(kafka, admin, topic, tenants, COUNT, run)).spans.length;
    env = ruleWorkerEnv(topic, rulesTopic, group, data, metricsPort, { RULES_CHECKPOINT_INTERVAL_MS: '250' });
  }
  const profDir = path.join(out, 'cpuprofile');
  say(`profiling the ${WORKER} worker draining ${fmt(total)} records`);
  const w = startWorker(broker.brokers, WORKER, env, ['--cpu-prof', `--cpu-prof-dir=${profDir}`]);
  const rate = await drain(admin, group, topic, total, w);
  const peak = await stopWorker(w);
  say(`drained at ${fmt(rate)} records/s under the profiler (slower than without it), peak RSS ${mib(peak)} MiB`);
  const profile = fs.readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
  if (!profile) throw new Error(`no .cpuprofile in ${profDir}: did the worker exit cleanly?`);
  execFileSync(process.execPath, [path.join(ROOT, 'node_modules/0x/cmd.js'), '--visualize-cpu-profile', path.join(profDir, profile), '--name', 'flamegraph', '--title', `spanledger ${WORKER} worker`], { cwd: profDir, stdio: 'ignore' });
  const html = path.join(profDir, 'flamegraph.html');
  if (!fs.existsSync(html)) throw new Error(`0x wrote no ${html}`);
  console.log(`self time: ${selfTimeShares(path.join(profDir, profile))}`);
  console.log(`flame graph: ${path.relative(process.cwd(), html) || html}`);
  console.log(`CPU profile: ${path.relative(process.cwd(), path.join(profDir, profile))} (also opens in Chrome DevTools or speedscope)`);
} finally {
  await admin.disconnect();
  await tb?.stop();
  await broker.stop();
}
