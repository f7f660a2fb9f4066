// Pieces of bench/cluster-faults.mjs: the 3-node cluster of scripts/kafka.sh, replica and
// leader look-ups, span-log progress and stall arithmetic. The same ideas as
// test/support/cluster.ts (which bench/ cannot import: it is TypeScript run by vitest).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { ROOT, sleep } from './lib.mjs';

const KAFKA_SH = path.join(ROOT, 'scripts', 'kafka.sh');
const clusterDirs = new Set();

// Nodes of a cluster still up when the bench ends (an exception, Ctrl-C) are killed with it.
process.on('exit', () => {
  for (const dir of clusterDirs) {
    for (const n of [1, 2, 3]) {
      try {
        const pid = Number(fs.readFileSync(path.join(dir, `node${n}`, 'kafka.pid'), 'utf8').trim());
        if (pid > 0) process.kill(pid, 'SIGKILL');
      } catch {
        // no pid file or no such process
      }
    }
  }
});

/** `bash scripts/kafka.sh cluster …` with `env` (KAFKA_CLUSTER_DIR, KAFKA_CLUSTER_BASE_PORT); its output. */
export function clusterRun(env, ...args) {
  clusterDirs.add(env.KAFKA_CLUSTER_DIR);
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [KAFKA_SH, 'cluster', ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`kafka.sh cluster ${args.join(' ')} failed (${code}):\n${out.slice(-3000)}`))));
  });
}

function portFree(port) {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** An even port with the 5 after it free a moment ago (the cluster's client and controller ports). */
export async function freeClusterPort() {
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const base = 20_000 + 2 * Math.floor(Math.random() * 15_000);
    let free = true;
    for (let p = base; p < base + 6 && free; p += 1) free = await portFree(p);
    if (free) return base;
  }
  throw new Error('no 6 consecutive free loopback ports');
}

/** Partition → broker id (= node number) of its leader. */
export async function leaders(admin, topic) {
  const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
  return new Map(topics[0].partitions.map((p) => [p.partitionId, p.leader]));
}

/** Waits until every partition of `topics` has all its replicas in sync. */
export async function waitForFullIsr(admin, topics, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      const { topics: meta } = await admin.fetchTopicMetadata({ topics });
      const lagging = meta.flatMap((t) => t.partitions.filter((p) => p.leader < 0 || p.isr.length < p.replicas.length).map((p) => `${t.name}/${p.partitionId}`));
      if (lagging.length === 0) return;
      last = lagging.slice(0, 4).join(' ');
    } catch (e) {
      last = String(e);
    }
    if (Date.now() > deadline) throw new Error(`replicas not in sync within ${timeoutMs} ms: ${last}`);
    await sleep(500);
  }
}

/** Committed lag of `group` on `topic` summed over partitions (a partition without a commit counts whole). */
export async function committedLag(admin, group, topic) {
  const [ends, [committed]] = await Promise.all([admin.fetchTopicOffsets(topic), admin.fetchOffsets({ groupId: group, topics: [topic] })]);
  const at = new Map(committed.partitions.map((p) => [p.partition, Number(p.offset)]));
  return ends.reduce((n, p) => n + Number(p.high) - Math.max(0, at.get(p.partition) ?? 0), 0);
}

/**
 * Complete lines per partition in a span log, read incrementally (each file from where the last
 * call stopped), from segment names `<topic>+<partition>+<offset>[_<index>].jsonl`.
 */
export class SpanLogProgress {
  constructor(dir, partitions) {
    this.dir = dir;
    this.files = new Map();
    this.lines = new Array(partitions).fill(0);
    this.buf = Buffer.alloc(1 << 20);
  }
  count() {
    if (!fs.existsSync(this.dir)) return [...this.lines];
    for (const tenant of fs.readdirSync(this.dir)) {
      if (tenant.startsWith('.')) continue;
      for (const day of fs.readdirSync(path.join(this.dir, tenant))) {
        for (const name of fs.readdirSync(path.join(this.dir, tenant, day))) {
          const m = /\+(\d+)\+\d+(?:_\d+)?\.jsonl$/.exec(name);
          if (!m) continue;
          const file = path.join(this.dir, tenant, day, name);
          const seen = this.files.get(file) ?? { at: 0, partition: Number(m[1]) };
          this.files.set(file, seen);
          let fd;
          try {
            fd = fs.openSync(file, 'r');
          } catch {
            continue; // removed (an empty segment a recovering worker deleted)
          }
          try {
            for (;;) {
              const n = fs.readSync(fd, this.buf, 0, this.buf.length, seen.at);
              if (n === 0) break;
              const end = this.buf.lastIndexOf(0x0a, n - 1) + 1;
              if (end === 0) break; // only a partial line so far
              for (let i = this.buf.indexOf(0x0a); i !== -1 && i < end; i = this.buf.indexOf(0x0a, i + 1)) this.lines[seen.partition] += 1;
              seen.at += end;
              if (n < this.buf.length) break;
            }
          } finally {
            fs.closeSync(fd);
          }
        }
      }
    }
    return [...this.lines];
  }
}

/** Per partition: every stall (from, ms) and the longest; a stall = records acknowledged but not stored, stored count not moving. */
export function stallsOf(samples, partitions) {
  return Array.from({ length: partitions }, (_, p) => stretches(samples, (x) => x.done[p], (x) => x.available[p]));
}

/** The whole group stalled: no partition stored anything while some had records waiting. */
export function groupStalls(samples) {
  const sum = (a) => a.reduce((x, y) => x + y, 0);
  const r = stretches(samples, (x) => sum(x.done), (x) => sum(x.available));
  return { longest: r.longest, total: r.stalls.filter((x) => x.ms >= 2_000).reduce((n, x) => n + x.ms, 0) };
}

function stretches(samples, doneOf, availableOf) {
  const stalls = [];
  let since;
  let prev = -1;
  for (const x of samples) {
    const done = doneOf(x);
    const waiting = done < availableOf(x);
    if (done > prev) {
      if (since !== undefined && prev >= 0 && x.t > since) stalls.push({ from: since, ms: x.t - since });
      since = waiting ? x.t : undefined;
    } else if (since === undefined && waiting) {
      since = x.t;
    }
    prev = Math.max(prev, done);
  }
  const last = samples.at(-1);
  if (since !== undefined && last) stalls.push({ from: since, ms: last.t - since });
  return { stalls, longest: Math.max(0, ...stalls.map((x) => x.ms)) };
}

/** Every acknowledged span (by its spanledger.seq) in the span log exactly once. */
export function verifySpanLog(dir, expected, uncertain) {
  const seen = new Map();
  let lines = 0;
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (e.name.startsWith('.')) continue;
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.jsonl')) {
        for (const line of fs.readFileSync(p, 'utf8').split('\n')) {
          if (!line) continue;
          lines += 1;
          const seq = JSON.parse(line).attributes['spanledger.seq'];
          seen.set(seq, (seen.get(seq) ?? 0) + 1);
        }
      }
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  let missing = 0;
  for (const seq of expected) if (!seen.has(seq)) missing += 1;
  const doubled = [...seen.values()].filter((n) => n > 1).length;
  const unexpected = [...seen.keys()].filter((seq) => !expected.has(seq) && !uncertain.has(seq)).length;
  const uncertainStored = [...uncertain].filter((seq) => seen.has(seq)).length;
  return { lines, missing, doubled, unexpected, uncertainStored };
}
