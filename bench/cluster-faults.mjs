// Span workers on a real 3-broker KRaft cluster (scripts/kafka.sh cluster: RF 3, min ISR 2,
// acks=all) through the issue 19 fault schedule, once per worker configuration:
//   kafkajs      KAFKA_CLIENT=kafkajs (eager rebalancing, dynamic membership)
//   cooperative  KAFKA_CLIENT=platformatic (cooperative-sticky, dynamic membership)
//   static       KAFKA_CLIENT=platformatic + KAFKA_GROUP_INSTANCE_ID=w1/w2/w3 (cooperative, static)
// Schedule, under a steady load of --spans spans spread over --seconds: kill -9 of the leader of a
// partition, its restart, replicas back in sync; then a rolling restart of the three brokers (clean
// stop, start, replicas in sync, one at a time) with, during it (--worker-kill during-roll, the
// default: the overlap issue 19 saw stall 34–70 s) or before it (before-roll), kill -9 of worker w2
// and its restart 5 s later (same instance id in the static case).
// Progress is the span log itself, sampled every 200 ms: complete lines per partition (what the
// workers stored and fdatasynced or are about to; commits trail it by a flush), against the records
// the producer had acknowledged per partition. A partition stalls while it has acknowledged records
// not yet stored and its line count does not move. Afterwards: every acknowledged span stored once
// (by its spanledger.seq attribute), nothing doubled, group lag 0.
// Not a test: it prints numbers. Needs dist/ (npm run build), java and the broker jars (.kafka/lib).
//   node bench/cluster-faults.mjs [--spans 200000] [--seconds 150] [--runs 1]
//        [--configs kafkajs,cooperative,static] [--worker-kill during-roll|before-roll] [--keep-logs DIR]
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, CLI, say, sleep, parseArgs } from './lib.mjs';
import { freeClusterPort, clusterRun, waitForFullIsr, leaders, SpanLogProgress, stallsOf, groupStalls, verifySpanLog, committedLag } from './cluster-support.mjs';

const { Kafka, logLevel } = await import('kafkajs');
const { generateSpan, tenantIdFor } = await import(path.join(ROOT, 'dist/model/generate.js'));

const args = parseArgs(process.argv.slice(2));
const SPANS = Number(args.spans ?? 200_000);
const SECONDS = Number(args.seconds ?? 150);
const RUNS = Number(args.runs ?? 1);
const CONFIGS = String(args.configs ?? 'kafkajs,cooperative,static').split(',');
const WORKER_KILL = String(args['worker-kill'] ?? 'during-roll');
const PARTITIONS = 6;
const TENANTS = 12; // tenant t goes to partition t % 6: two tenants per partition
const OFFSETS_TOPIC = '__consumer_offsets';
const CONFIG_ENV = {
  kafkajs: () => ({ KAFKA_CLIENT: 'kafkajs' }),
  cooperative: () => ({ KAFKA_CLIENT: 'platformatic', KAFKA_REBALANCE_PROTOCOL: 'cooperative' }),
  static: (n) => ({ KAFKA_CLIENT: 'platformatic', KAFKA_REBALANCE_PROTOCOL: 'cooperative', KAFKA_GROUP_INSTANCE_ID: `w${n}` }),
};
for (const c of CONFIGS) if (!CONFIG_ENV[c]) throw new Error(`--configs: no configuration '${c}' (kafkajs, cooperative, static)`);

const s = (ms) => `${(ms / 1000).toFixed(1)} s`;

/** The three span workers of one run, restarted like a supervisor would when one exits on its own. */
class Workers {
  constructor(env, config, logDir) {
    this.env = env;
    this.config = config;
    this.logDir = logDir;
    this.procs = new Map();
    this.exits = [];
    this.stopping = false;
  }
  start(n) {
    const log = fs.openSync(path.join(this.logDir, `w${n}.log`), 'a');
    const child = spawn(process.execPath, [CLI, 'worker', 'spans'], {
      cwd: ROOT,
      env: { ...process.env, ...this.env, ...CONFIG_ENV[this.config](n), WORKER_ID: `w${n}`, METRICS_PORT: '0', LOG_LEVEL: 'info' },
      stdio: ['ignore', log, log],
    });
    fs.closeSync(log);
    this.procs.set(n, child);
    child.once('exit', (code, signal) => {
      if (this.procs.get(n) !== child || this.stopping || child.killedOnPurpose) return;
      this.exits.push(`w${n} exited on its own (${code ?? signal}) at ${new Date().toISOString()}; restarted 1 s later`);
      say(`worker w${n} exited on its own (${code ?? signal}); restarting it`);
      setTimeout(() => !this.stopping && this.start(n), 1_000);
    });
  }
  kill9(n) {
    const child = this.procs.get(n);
    child.killedOnPurpose = true;
    child.kill('SIGKILL');
    return new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', r)));
  }
  async stopAll() {
    this.stopping = true;
    const all = [...this.procs.values()].filter((c) => c.exitCode === null && c.signalCode === null);
    for (const c of all) c.kill('SIGTERM');
    await Promise.all(all.map((c) => new Promise((r) => (c.exitCode !== null ? r() : c.once('exit', r)))));
  }
}

/** Spans with acks=all, one partition per send (kafkajs#1303), paced to `total` over `seconds`. */
function startLoad(kafka, topic, total, seconds) {
  const acked = new Array(PARTITIONS).fill(0);
  const expected = new Set(); // spanledger.seq of every acknowledged span
  const uncertain = new Set(); // seq of spans in a send that failed (may or may not be in the topic)
  let seq = 0;
  let stopping = false;
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, retry: { initialRetryTime: 200, maxRetryTime: 2_000, retries: 30 } });
  const started = Date.now();
  const done = (async () => {
    await producer.connect();
    try {
      while (seq < total && !stopping) {
        const due = Math.min(total, Math.ceil(((Date.now() - started) / 1000 / seconds) * total));
        if (due <= seq) {
          await sleep(50);
          continue;
        }
        const byPartition = Array.from({ length: PARTITIONS }, () => []);
        for (const end = Math.min(due, seq + 3_000); seq < end; seq += 1) {
          const tenant = seq % TENANTS;
          const tenantId = tenantIdFor(0xc1f000 + tenant);
          const span = generateSpan(tenantId, seq, Date.UTC(2026, 11, 6, 12));
          byPartition[tenant % PARTITIONS].push({ seq, message: { key: tenantId, value: JSON.stringify(span), partition: tenant % PARTITIONS } });
        }
        for (let p = 0; p < PARTITIONS; p += 1) {
          const part = byPartition[p];
          if (part.length === 0) continue;
          try {
            await producer.send({ topic, acks: -1, messages: part.map((x) => x.message) });
            for (const x of part) expected.add(x.seq);
            acked[p] += part.length;
          } catch (e) {
            for (const x of part) uncertain.add(x.seq);
            say(`send of ${part.length} spans to partition ${p} failed (${e.message}); they count as uncertain`);
          }
        }
      }
    } finally {
      await producer.disconnect();
    }
  })();
  const finished = done.then(() => Date.now());
  return { acked, expected, uncertain, done: finished, stop: () => (stopping = true), busiest: () => acked.indexOf(Math.max(...acked)) };
}

async function waitForGroup(admin, group, members, timeoutMs = 90_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { groups } = await admin.describeGroups([group]).catch(() => ({ groups: [] }));
    const g = groups[0];
    if (g && g.state === 'Stable' && g.members.length === members && g.members.every((m) => m.memberAssignment?.length > 0)) return;
    if (Date.now() > deadline) throw new Error(`group ${group} not stable with ${members} members within ${timeoutMs} ms (${g?.state}, ${g?.members.length})`);
    await sleep(500);
  }
}

async function oneRun(config, run) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `spanledger-faults-${config}-`));
  const env = { ...process.env, KAFKA_CLUSTER_DIR: path.join(dir, 'cluster'), KAFKA_CLUSTER_BASE_PORT: String(await freeClusterPort()), KAFKA_UP_TIMEOUT: '180', KAFKA_STOP_TIMEOUT: '20' };
  const cluster = (...a) => clusterRun(env, ...a);
  const logDir = args['keep-logs'] ? path.join(String(args['keep-logs']), `${config}-${run}`) : path.join(dir, 'logs');
  fs.mkdirSync(logDir, { recursive: true });
  say(`[${config} #${run}] cluster up on ${env.KAFKA_CLUSTER_BASE_PORT}… (${dir})`);
  const t0up = Date.now();
  await cluster('up');
  const brokers = (await cluster('brokers')).trim().split('\n').at(-1);
  say(`[${config} #${run}] cluster up in ${s(Date.now() - t0up)}: ${brokers}`);
  const kafka = new Kafka({ clientId: 'spanledger-bench-faults', brokers: brokers.split(','), logLevel: logLevel.NOTHING, connectionTimeout: 3_000, requestTimeout: 10_000, retry: { initialRetryTime: 200, maxRetryTime: 2_000, retries: 30 } });
  const admin = kafka.admin();
  await admin.connect();
  const topic = `spans-${config}-${run}`;
  const group = `faults-${config}-${run}`;
  const spanlog = path.join(dir, 'spanlog');
  // A fresh cluster may answer "does not host this topic-partition" for a moment: the full ISR wait covers it.
  await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS }, { topic: `${topic}.dlq`, numPartitions: 1 }], waitForLeaders: false });
  await waitForFullIsr(admin, [topic, `${topic}.dlq`]);
  const workers = new Workers({ KAFKA_BROKERS: brokers, SPANS_TOPIC: topic, SPANS_DLQ_TOPIC: `${topic}.dlq`, SPANS_GROUP: group, SPANLOG_DIR: spanlog }, config, logDir);
  const events = [];
  const event = async (name, fn) => {
    const from = Date.now();
    const detail = await fn();
    events.push({ name, from, to: Date.now(), detail });
    say(`[${config} #${run}] ${name}: ${s(Date.now() - from)}${detail ? ` (${detail})` : ''}`);
  };
  try {
    for (const n of [1, 2, 3]) workers.start(n);
    await waitForGroup(admin, group, 3);
    await waitForFullIsr(admin, [topic, OFFSETS_TOPIC]);
    const progress = new SpanLogProgress(spanlog, PARTITIONS);
    const load = startLoad(kafka, topic, SPANS, SECONDS);
    const samples = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const t = Date.now();
        samples.push({ t, done: progress.count(), available: [...load.acked] });
        await sleep(Math.max(0, 200 - (Date.now() - t)));
      }
    })();
    const loadStart = Date.now();
    await sleep(10_000);
    await event('kill -9 of a leader, restart, in sync', async () => {
      const partition = load.busiest();
      const victim = (await leaders(admin, topic)).get(partition);
      const t = Date.now();
      await cluster('kill', String(victim));
      while ((await leaders(admin, topic).catch(() => new Map())).get(partition) === victim) await sleep(200);
      const moved = Date.now() - t;
      await cluster('start', String(victim));
      await waitForFullIsr(admin, [topic, OFFSETS_TOPIC]);
      return `broker ${victim}, leader of p${partition}: leadership moved after ${s(moved)}`;
    });
    const workerKill = () =>
      event('kill -9 of worker w2, restart 5 s later', async () => {
        await workers.kill9(2);
        await sleep(5_000);
        workers.start(2);
      });
    if (WORKER_KILL === 'before-roll') {
      await sleep(5_000);
      await workerKill();
      await sleep(10_000);
    }
    await event('rolling restart', async () => {
      const steps = [];
      for (const n of [1, 2, 3]) {
        const t = Date.now();
        await cluster('stop', String(n));
        if (n === 1 && WORKER_KILL === 'during-roll') await workerKill();
        await cluster('start', String(n));
        await waitForFullIsr(admin, [topic, OFFSETS_TOPIC]);
        steps.push(`broker ${n} ${s(Date.now() - t)}`);
      }
      return steps.join(', ');
    });
    const loadEnd = await load.done;
    say(`[${config} #${run}] load done: ${load.expected.size} acknowledged in ${s(loadEnd - loadStart)}, ${load.uncertain.size} uncertain; waiting for lag 0`);
    const deadline = Date.now() + 240_000;
    let lag;
    for (;;) {
      lag = await committedLag(admin, group, topic).catch(() => undefined);
      const stored = progress.count().reduce((a, b) => a + b, 0);
      if (lag !== undefined && lag === 0 && stored >= load.expected.size) break;
      if (Date.now() > deadline) break;
      await sleep(500);
    }
    await sleep(1_000);
    sampling = false;
    await sampler;
    await workers.stopAll();
    const check = verifySpanLog(spanlog, load.expected, load.uncertain);
    const perPartition = stallsOf(samples, PARTITIONS);
    const whole = groupStalls(samples);
    return { config, run, spans: load.expected.size, uncertain: load.uncertain.size, seconds: (loadEnd - loadStart) / 1000, lag, check, perPartition, whole, events: events.map((e) => ({ ...e, from: e.from - loadStart, to: e.to - loadStart })), exits: workers.exits, loadStart, logDir };
  } finally {
    await workers.stopAll();
    await admin.disconnect().catch(() => {});
    await cluster('down').catch((e) => say(`cluster down failed: ${e.message}`));
    // The span log and the cluster's data go; worker logs stay only under --keep-logs (outside dir).
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function print(r) {
  const lines = [];
  lines.push(`== ${r.config} #${r.run}: ${r.spans.toLocaleString('en-US')} spans acknowledged (${r.uncertain} uncertain) over ${r.seconds.toFixed(0)} s`);
  for (const e of r.events) lines.push(`   ${s(e.from).padStart(7)} → ${s(e.to).padStart(7)}  ${e.name}${e.detail ? `: ${e.detail}` : ''}`);
  for (const x of r.exits) lines.push(`   ${x}`);
  lines.push(`   longest stall per partition (records acknowledged, none stored): ${r.perPartition.map((p, i) => `p${i} ${s(p.longest)}`).join(', ')}`);
  lines.push(`   stalls ≥ 2 s: ${r.perPartition.flatMap((p, i) => p.stalls.filter((x) => x.ms >= 2_000).map((x) => `p${i} ${s(x.from - r.loadStart)}+${s(x.ms)}`)).join(', ') || 'none'}`);
  lines.push(`   partition-seconds stalled (stalls ≥ 2 s): ${(r.perPartition.reduce((n, p) => n + p.stalls.filter((x) => x.ms >= 2_000).reduce((a, x) => a + x.ms, 0), 0) / 1000).toFixed(1)}`);
  lines.push(`   whole group (nothing stored anywhere while records waited): longest ${s(r.whole.longest)}, total of stretches ≥ 2 s ${s(r.whole.total)}`);
  lines.push(`   span log: ${r.check.lines} lines, ${r.check.missing} missing, ${r.check.doubled} doubled, ${r.check.uncertainStored}/${r.uncertain} uncertain stored; committed lag ${r.lag}`);
  return lines.join('\n');
}

const results = [];
for (let run = 1; run <= RUNS; run += 1) {
  for (const config of CONFIGS) {
    const r = await oneRun(config, run);
    results.push(r);
    console.log(print(r));
  }
}
console.log('\nconfig       run  spans     longest partition stall  partition-s ≥2s  group longest  group total  missing doubled lag');
for (const r of results) {
  const longest = Math.max(...r.perPartition.map((p) => p.longest));
  const ps = r.perPartition.reduce((n, p) => n + p.stalls.filter((x) => x.ms >= 2_000).reduce((a, x) => a + x.ms, 0), 0);
  console.log(`${r.config.padEnd(12)} ${String(r.run).padStart(3)}  ${String(r.spans).padEnd(9)} ${s(longest).padStart(10)}               ${(ps / 1000).toFixed(1).padStart(8)}        ${s(r.whole.longest).padStart(8)}     ${s(r.whole.total).padStart(8)}    ${r.check.missing}       ${r.check.doubled}      ${r.lag}`);
}
