/**
 * A 3-broker KRaft cluster of its own for a test file (`scripts/kafka.sh cluster`), on six free
 * consecutive loopback ports and in a fresh temporary KAFKA_CLUSTER_DIR, so that it never touches
 * the suite's broker or a developer's cluster (.kafka-cluster, port 19092). It shares the single
 * broker's jar cache (.kafka/lib). Brokers can be killed, stopped and started by node number (1-3;
 * a node's broker id is its number).
 *
 * If the test process ends without `down()` (an exception, Ctrl-C, SIGKILL), nothing is left
 * behind: a synchronous kill on 'exit', and a detached watchdog that stops the nodes and deletes
 * the folder once this process is gone.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel, type Admin } from 'kafkajs';
import { ROOT, sleep } from './harness.js';
import { startKafkaWatchdog, stopKafkaWatchdog } from './kafka-watchdog.js';

const KAFKA_SH = join(ROOT, 'scripts', 'kafka.sh');
export const NODES = [1, 2, 3] as const;
export type Node = (typeof NODES)[number];

/** Why the cluster tests cannot run here (one line), or null. */
export function clusterSkipReason(): string | null {
  const has = (cmd: string) => {
    try {
      execFileSync('bash', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  if (!has('java')) return '3-broker cluster tests skipped: no java on PATH (scripts/kafka.sh cluster needs a JDK 17)';
  const lib = process.env.KAFKA_LIB_DIR ?? join(ROOT, '.kafka', 'lib');
  const jars = existsSync(lib) && readdirSync(lib).some((f) => f.startsWith('kafka_2.13-'));
  if (!jars && !has('mvn')) return `3-broker cluster tests skipped: no broker jars in ${lib} and no mvn on PATH to fetch them`;
  return null;
}

export class KafkaCluster {
  private constructor(
    readonly dir: string,
    readonly basePort: number,
    private readonly env: NodeJS.ProcessEnv,
    private readonly watchdog: ChildProcess,
    private readonly onExit: () => void,
  ) {}

  /** host:port of every node, comma-separated, as KAFKA_BROKERS takes it. */
  get brokers(): string {
    return NODES.map((n) => `127.0.0.1:${this.basePort + 2 * (n - 1)}`).join(',');
  }

  static async start(): Promise<KafkaCluster> {
    const dir = await mkdtemp(join(tmpdir(), 'spanledger-cluster-'));
    const onExit = () => killNodes(dir);
    process.once('exit', onExit);
    const watchdog = startKafkaWatchdog('spanledger-cluster-watchdog', KAFKA_SH, dir, 'KAFKA_CLUSTER_DIR="$dir" KAFKA_STOP_TIMEOUT=5 bash "$kafka_sh" cluster down');
    let lastError: unknown;
    // Ports found free may be taken before the nodes bind them; then try others.
    for (let attempt = 1; attempt <= 3; attempt += 1) {
      const basePort = await freePortRun(6);
      const env = { ...process.env, KAFKA_CLUSTER_DIR: dir, KAFKA_CLUSTER_BASE_PORT: String(basePort), KAFKA_UP_TIMEOUT: '120', KAFKA_STOP_TIMEOUT: '15' };
      const cluster = new KafkaCluster(dir, basePort, env, watchdog, onExit);
      try {
        await cluster.run('up');
        return cluster;
      } catch (err) {
        lastError = err;
        await cluster.run('down').catch(() => {});
        // A port taken by someone else (found before launch, or by a node that then died).
        if (!/in use|is not running/.test(String(err))) break;
      }
    }
    stopKafkaWatchdog(watchdog);
    process.off('exit', onExit);
    rmSync(dir, { recursive: true, force: true });
    throw lastError;
  }

  /** SIGKILL node n, like a crash (returns once the process is gone). */
  kill(n: Node): Promise<string> {
    return this.run('kill', String(n));
  }

  /** Stops node n cleanly (controlled shutdown: leadership moves away first). */
  stop(n: Node): Promise<string> {
    return this.run('stop', String(n));
  }

  /** Starts node n on its data and waits until it answers (not until its replicas caught up: see waitForFullIsr). */
  start(n: Node): Promise<string> {
    return this.run('start', String(n));
  }

  /** Whether node n's process is alive (it may not answer yet). */
  isRunning(n: Node): boolean {
    try {
      const pid = Number(readFileSync(join(this.dir, `node${n}`, 'kafka.pid'), 'utf8').trim());
      process.kill(pid, 0);
      return pid > 0;
    } catch {
      return false;
    }
  }

  /** Stops every node and deletes the folder. */
  async down(): Promise<void> {
    try {
      await this.run('down');
    } finally {
      stopKafkaWatchdog(this.watchdog);
      process.off('exit', this.onExit);
      killNodes(this.dir);
    }
  }

  private run(...args: string[]): Promise<string> {
    return new Promise((resolveRun, reject) => {
      const child = spawn('bash', [KAFKA_SH, 'cluster', ...args], { cwd: ROOT, env: this.env, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.on('error', reject);
      child.on('close', (code, signal) => {
        if (code === 0) resolveRun(output);
        else reject(new Error(`scripts/kafka.sh cluster ${args.join(' ')} failed (${code ?? signal}):\n${output.slice(-6000)}`));
      });
    });
  }
}

/** A kafkajs client for a cluster whose brokers come and go: short request timeouts, patient retries. */
export function clusterClient(brokers: string): Kafka {
  return new Kafka({
    clientId: 'spanledger-cluster-tests',
    brokers: brokers.split(','),
    logLevel: logLevel.NOTHING,
    connectionTimeout: 3_000,
    requestTimeout: 10_000,
    retry: { initialRetryTime: 200, maxRetryTime: 2_000, retries: 30 },
  });
}

type TopicMetadata = Awaited<ReturnType<Admin['fetchTopicMetadata']>>['topics'][number];

/**
 * `topic`'s metadata, asked again (every 250 ms, up to `timeoutMs`) until a broker answers with
 * its partitions. kafkajs' fetchTopicMetadata retries only LEADER_NOT_AVAILABLE and gives up at
 * once on anything else: a broker that has not yet heard of a topic the controller just created
 * answers UNKNOWN_TOPIC_OR_PARTITION (CI failed a scenario's first step that way), and a killed
 * broker refuses the connection.
 */
export async function topicMetadata(admin: Admin, topic: string, timeoutMs = 60_000): Promise<TopicMetadata> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let why: string;
    try {
      const found = (await admin.fetchTopicMetadata({ topics: [topic] })).topics.find((t) => t.name === topic);
      if (found && found.partitions.length > 0) return found;
      why = 'no partitions in the answer';
    } catch (e) {
      why = String(e);
    }
    if (Date.now() > deadline) throw new Error(`no metadata for ${topic} within ${timeoutMs} ms: ${why}`);
    await sleep(250);
  }
}

/** The broker id (= node number) that leads each partition of `topic` now. */
export async function leaders(admin: Admin, topic: string): Promise<Map<number, number>> {
  const { partitions } = await topicMetadata(admin, topic);
  return new Map(partitions.map((p) => [p.partitionId, p.leader]));
}

/** Waits until every partition of `topics` has all its replicas in sync again (after a broker came back). */
export async function waitForFullIsr(admin: Admin, topics: string[], timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let short = '';
  for (;;) {
    try {
      const { topics: meta } = await admin.fetchTopicMetadata({ topics });
      const lagging = meta.flatMap((t) => t.partitions.filter((p) => p.isr.length < p.replicas.length).map((p) => `${t.name}/${p.partitionId} isr ${p.isr.join(',')}`));
      if (lagging.length === 0) return;
      short = lagging.slice(0, 5).join('; ');
    } catch (e) {
      short = String(e);
    }
    if (Date.now() > deadline) throw new Error(`replicas not back in sync within ${timeoutMs} ms: ${short}`);
    await sleep(500);
  }
}

/**
 * Per-partition progress over time, sampled every `intervalMs`: `done` (records a group has
 * stored or committed) against `available` (records it could have). A partition stalls while it
 * has records available and its `done` does not move; `longestStalls` gives, per partition, the
 * longest such stretch in a time window (sampling resolution: intervalMs plus the workers' flush age).
 */
export class StallWatch {
  private readonly samples: Array<{ t: number; done: Map<number, number>; available: Map<number, number> }> = [];
  private running = true;
  private readonly loop: Promise<void>;

  constructor(sample: () => Promise<{ done: Map<number, number>; available: Map<number, number> }>, intervalMs = 200) {
    this.loop = (async () => {
      while (this.running) {
        const started = Date.now();
        try {
          this.samples.push({ t: Date.now(), ...(await sample()) });
        } catch {
          // a sample that failed (a broker away) is simply missing
        }
        await sleep(Math.max(0, intervalMs - (Date.now() - started)));
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  /** Longest stall per partition among stalls that overlap [from, to] (ms since the epoch). */
  longestStalls(from = 0, to = Number.POSITIVE_INFINITY): Map<number, number> {
    const partitions = new Set(this.samples.flatMap((s) => [...s.available.keys()]));
    const out = new Map<number, number>();
    for (const p of partitions) {
      let since: number | undefined; // when the current wait began: last progress, or records arriving
      let prevDone = -1;
      let longest = 0;
      const note = (start: number, end: number) => {
        if (end >= from && start <= to) longest = Math.max(longest, end - start);
      };
      for (const s of this.samples) {
        const done = s.done.get(p) ?? 0;
        const available = s.available.get(p) ?? 0;
        if (done > prevDone) {
          if (since !== undefined && prevDone >= 0) note(since, s.t);
          since = done < available ? s.t : undefined;
        } else if (since === undefined && done < available) {
          since = s.t;
        }
        prevDone = done;
      }
      const last = this.samples.at(-1);
      if (since !== undefined && last) note(since, last.t);
      out.set(p, longest);
    }
    return out;
  }
}

/**
 * Lines per partition in a span log folder, read incrementally (only bytes added since the last
 * call), from segment names `<topic>+<partition>+<offset>.jsonl`.
 */
export class SpanLogCounter {
  private readonly read = new Map<string, { bytes: number; partition: number }>();
  private readonly lines = new Map<number, number>();

  constructor(private readonly dir: string) {}

  count(): Map<number, number> {
    if (!existsSync(this.dir)) return new Map();
    for (const tenant of readdirSync(this.dir)) {
      if (tenant === '.locks') continue;
      for (const day of readdirSync(join(this.dir, tenant))) {
        for (const file of readdirSync(join(this.dir, tenant, day))) {
          const m = /\+(\d+)\+\d+(?:_\d+)?\.jsonl$/.exec(file);
          if (!m) continue;
          const path = join(this.dir, tenant, day, file);
          const seen = this.read.get(path) ?? { bytes: 0, partition: Number(m[1]) };
          const bytes = readFileSync(path);
          // Count complete lines only: a line being written is counted once its newline lands.
          const end = bytes.lastIndexOf(0x0a) + 1;
          let n = 0;
          for (let i = bytes.indexOf(0x0a, seen.bytes); i !== -1 && i < end; i = bytes.indexOf(0x0a, i + 1)) n += 1;
          if (end > seen.bytes) seen.bytes = end;
          this.read.set(path, seen);
          this.lines.set(seen.partition, (this.lines.get(seen.partition) ?? 0) + n);
        }
      }
    }
    return new Map(this.lines);
  }
}

/**
 * `count` consecutive loopback ports that were free a moment ago, starting at an even port, below
 * the kernel's ephemeral range: a port inside it can be handed to any outgoing connection (the
 * nodes' own, to each other's controllers) between this check and a node's bind.
 */
async function freePortRun(count: number): Promise<number> {
  const ephemeralLow = ephemeralPortLow();
  const span = Math.max(1_000, ephemeralLow - count - 20_000);
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const base = 20_000 + 2 * Math.floor(Math.random() * (span / 2));
    let free = true;
    for (let port = base; port < base + count && free; port += 1) free = await portFree(port);
    if (free) return base;
  }
  throw new Error(`no ${count} consecutive free loopback ports found`);
}

/** The first port of the kernel's ephemeral range (Linux's default 32768 where it cannot be read). */
function ephemeralPortLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 21_000 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolveFree) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolveFree(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolveFree(true)));
  });
}

function killNodes(dir: string): void {
  for (const n of NODES) {
    try {
      const pid = Number(readFileSync(join(dir, `node${n}`, 'kafka.pid'), 'utf8').trim());
      if (pid > 0) process.kill(pid, 'SIGKILL');
    } catch {
      // no pid file or no such process
    }
  }
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch {
    // best effort
  }
}
