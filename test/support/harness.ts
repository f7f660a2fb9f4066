import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Kafka, logLevel, type Admin } from 'kafkajs';
import pino from 'pino';
import { afterAll, beforeAll } from 'vitest';
import { createKafkaJsFacade } from '../../src/kafka/kafkajs/facade.js';
import { createPlatformaticFacade } from '../../src/kafka/platformatic/index.js';
import { KAFKA_CLIENTS, type KafkaClientKind, type KafkaFacade } from '../../src/kafka/facade.js';
// So that tests can read topics written in any codec.
import '../../src/kafka/codecs.js';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const CLI = path.join(ROOT, 'bin', 'spanledger.js');

/**
 * The Kafka clients (KAFKA_CLIENT) the client-relevant integration tests run on, from
 * SPANLEDGER_TEST_CLIENTS (comma list; default every client): use it as
 * `describe.each(kafkaClientsUnderTest())('... on %s', (client) => ...)` and give `client` to the
 * worker (KAFKA_CLIENT). An unknown name fails the run at once rather than test nothing.
 */
export function kafkaClientsUnderTest(): KafkaClientKind[] {
  const raw = process.env.SPANLEDGER_TEST_CLIENTS?.trim() || KAFKA_CLIENTS.join(',');
  const names = [...new Set(raw.split(',').map((n) => n.trim()).filter((n) => n.length > 0))];
  const unknown = names.filter((n) => !(KAFKA_CLIENTS as readonly string[]).includes(n));
  if (unknown.length > 0 || names.length === 0) throw new Error(`SPANLEDGER_TEST_CLIENTS=${raw}: each must be one of ${KAFKA_CLIENTS.join(', ')}`);
  return names as KafkaClientKind[];
}

/**
 * Every other test (one not run per client) and every CLI command or worker a test starts with
 * `...process.env` runs on the first client under test, explicitly: KAFKA_CLIENT's own default
 * (platformatic) is not what SPANLEDGER_TEST_CLIENTS=kafkajs asks for.
 */
process.env.KAFKA_CLIENT ??= kafkaClientsUnderTest()[0]!;

/**
 * Runs the enclosing describe block's workers, CLI commands and in-process facades (kafkaFacade)
 * on `client`: KAFKA_CLIENT for the block (each of them takes process.env), restored after it.
 * Integration files run one at a time, their tests in order, so nothing else sees the change.
 */
export function useKafkaClient(client: KafkaClientKind): void {
  let before: string | undefined;
  beforeAll(() => {
    before = process.env.KAFKA_CLIENT;
    process.env.KAFKA_CLIENT = client;
  });
  afterAll(() => {
    process.env.KAFKA_CLIENT = before;
  });
}

/** spanledger's own Kafka facade on `client` (default: KAFKA_CLIENT as set above), for calling src/ in-process. */
export function kafkaFacade(brokers: string, client: KafkaClientKind = process.env.KAFKA_CLIENT as KafkaClientKind): KafkaFacade {
  // Both client libraries loaded up front (src/kafka/client.ts loads the one named, on first use): a sync call for the tests.
  const create = client === 'kafkajs' ? createKafkaJsFacade : createPlatformaticFacade;
  return create({ brokers: brokers.split(','), clientId: 'spanledger-tests', logger: pino({ level: 'silent' }) });
}

export function kafkaClient(brokers: string): Kafka {
  return new Kafka({ clientId: 'spanledger-tests', brokers: brokers.split(','), logLevel: logLevel.NOTHING });
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
}

export async function createTopic(kafka: Kafka, topic: string, numPartitions: number): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    // A broker that just started may still answer "does not host this topic-partition" while
    // the new topic's leaders settle; that passes.
    await retryWhileTransient(() => admin.createTopics({ topics: [{ topic, numPartitions }], waitForLeaders: true }), (e) => /already exists/.test(String(e)));
  } finally {
    await admin.disconnect();
  }
}

/** A fresh spans topic with its dead-letter topic, group and span log folder, and a span worker's env for them. */
export interface SpanTopics {
  topic: string;
  dlqTopic: string;
  group: string;
  dir: string;
  env: Record<string, string>;
}

/** Creates SpanTopics; short group timings and flushes so that tests rebalance and drain quickly. The caller removes `dir`. */
export async function createSpanTopics(kafka: Kafka, brokers: string, partitions: number, extraEnv: Record<string, string> = {}): Promise<SpanTopics> {
  const topic = uniqueName('spans');
  const dlqTopic = `${topic}.dlq`;
  const group = uniqueName('group');
  const dir = tempDir('spanlog');
  await createTopic(kafka, topic, partitions);
  await createTopic(kafka, dlqTopic, 1);
  return {
    topic,
    dlqTopic,
    group,
    dir,
    env: {
      KAFKA_BROKERS: brokers,
      KAFKA_CLIENT: process.env.KAFKA_CLIENT!,
      SPANS_TOPIC: topic,
      SPANS_DLQ_TOPIC: dlqTopic,
      SPANS_GROUP: group,
      SPANLOG_DIR: dir,
      SPANLOG_LOCK_STALE_MS: '3000',
      KAFKA_SESSION_TIMEOUT_MS: '8000',
      KAFKA_REBALANCE_TIMEOUT_MS: '10000',
      KAFKA_HEARTBEAT_INTERVAL_MS: '1000',
      BATCH_MAX_AGE_MS: '200',
      ...extraEnv,
    },
  };
}

/** Retries what a freshly started broker refuses for a moment (kafkajs marks those retriable). */
async function retryWhileTransient<T>(fn: () => Promise<T>, done: (e: unknown) => boolean = () => false, timeoutMs = 30_000): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (done(e)) return undefined;
      const retriable = (e as { retriable?: boolean }).retriable === true || /not the correct coordinator|does not host this topic-partition|coordinator is loading/i.test(String(e));
      if (!retriable || Date.now() > deadline) throw e;
      await sleep(250);
    }
  }
}

/** How a worker process is started: by default `node bin/spanledger.js worker <kind>`. */
export interface WorkerLaunch {
  file: string;
  args: string[];
}

/** The image's NODE_OPTIONS (deploy/Dockerfile): V8's young generation capped as Node 20 had it. */
export const DEPLOYED_NODE_OPTIONS = '--max-semi-space-size=16';

/**
 * A worker as a real child process (`spanledger worker <kind>`, or `launch`: e.g. a test's own
 * entry point run with vite-node), with its log lines kept.
 */
export class WorkerProcess {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  /** The worker's WORKER_ID, else its kind: names its kept log (SPANLEDGER_TEST_WORKER_LOGS). */
  readonly label: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(kind: 'spans' | 'signals' | 'rules' | 'archive', env: Record<string, string>, launch: WorkerLaunch = { file: process.execPath, args: [CLI, 'worker', kind] }) {
    this.label = env.WORKER_ID ?? kind;
    this.child = spawn(launch.file, launch.args, {
      cwd: ROOT,
      // V8 flags as the image deploys them (deploy/Dockerfile): the memory bounds tested here are
      // the deployed worker's.
      env: { ...process.env, NODE_OPTIONS: process.env.NODE_OPTIONS || DEPLOYED_NODE_OPTIONS, METRICS_PORT: '0', LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n')) if (line) this.lines.push(line);
    };
    this.child.stdout!.on('data', keep);
    this.child.stderr!.on('data', keep);
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve({ code, signal })));
  }

  /** Resolves once the worker logged `msg` (a pino message), or rejects after timeoutMs. */
  async waitForLog(msg: string, timeoutMs = 60_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const line of this.lines) {
        try {
          const parsed = JSON.parse(line) as Record<string, unknown>;
          if (parsed.msg === msg) return parsed;
        } catch {
          // not a JSON line
        }
      }
      if (this.child.exitCode !== null) throw new Error(`worker exited (${this.child.exitCode}) before logging "${msg}":\n${this.lines.slice(-20).join('\n')}`);
      if (Date.now() > deadline) throw new Error(`worker did not log "${msg}" within ${timeoutMs} ms:\n${this.lines.slice(-20).join('\n')}`);
      await sleep(100);
    }
  }

  kill(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Waits until the group has committed every record of the topic. */
export async function waitForCommitted(kafka: Kafka, group: string, topic: string, timeoutMs = 120_000): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const lag = (await retryWhileTransient(() => groupLag(admin, group, topic)))!;
      if (lag.every((p) => p.lag === 0n)) return;
      if (Date.now() > deadline) throw new Error(`group ${group} still lags on ${topic}: ${lag.map((p) => `${p.partition}:${p.lag}`).join(' ')}`);
      await sleep(250);
    }
  } finally {
    await admin.disconnect();
  }
}

export async function committedTotal(kafka: Kafka, group: string, topic: string): Promise<bigint> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return (await retryWhileTransient(() => groupLag(admin, group, topic)))!.reduce((n, p) => n + p.committed, 0n);
  } finally {
    await admin.disconnect();
  }
}

/** Committed vs. end offset per partition, as an outside kafkajs admin sees them (nothing committed counts as 0). */
export async function groupLag(admin: Admin, group: string, topic: string): Promise<Array<{ partition: number; committed: bigint; end: bigint; lag: bigint }>> {
  const ends = await admin.fetchTopicOffsets(topic);
  const committed = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  const byPartition = new Map<number, bigint>();
  for (const t of committed) for (const p of t.partitions) byPartition.set(p.partition, BigInt(p.offset === '-1' ? '0' : p.offset));
  return ends
    .map((e) => {
      const end = BigInt(e.high);
      const c = byPartition.get(e.partition) ?? 0n;
      return { partition: e.partition, committed: c, end, lag: end - c };
    })
    .sort((a, b) => a.partition - b.partition);
}

/** Complete lines in the span log so far: safe to call while a worker is writing (a line being written is not counted). */
export function spanLogLineCount(dir: string): number {
  let n = 0;
  if (!fs.existsSync(dir)) return 0;
  for (const tenantId of fs.readdirSync(dir)) {
    if (tenantId === '.locks') continue;
    for (const day of fs.readdirSync(path.join(dir, tenantId))) {
      for (const file of fs.readdirSync(path.join(dir, tenantId, day))) {
        const bytes = fs.readFileSync(path.join(dir, tenantId, day, file));
        for (let i = bytes.indexOf(0x0a); i !== -1; i = bytes.indexOf(0x0a, i + 1)) n += 1;
      }
    }
  }
  return n;
}

/** Every line of every span log segment, parsed, with the tenant and day of its folder. */
export function readSpanLog(dir: string): Array<{ tenantId: string; day: string; file: string; line: Record<string, unknown> & { spanId: string; tenantId: string } }> {
  const out: Array<{ tenantId: string; day: string; file: string; line: Record<string, unknown> & { spanId: string; tenantId: string } }> = [];
  if (!fs.existsSync(dir)) return out;
  for (const tenantId of fs.readdirSync(dir)) {
    if (tenantId === '.locks') continue;
    for (const day of fs.readdirSync(path.join(dir, tenantId))) {
      for (const file of fs.readdirSync(path.join(dir, tenantId, day))) {
        const text = fs.readFileSync(path.join(dir, tenantId, day, file), 'utf8');
        for (const raw of text.split('\n')) {
          if (raw) out.push({ tenantId, day, file, line: JSON.parse(raw) });
        }
      }
    }
  }
  return out;
}

/** Sum of a metric's samples in Prometheus text, optionally only those whose labels contain `label`. */
export function metricValue(text: string, name: string, label = ''): number {
  return text
    .split('\n')
    .filter((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && l.includes(label))
    .reduce((n, l) => n + Number(l.split(' ').pop()), 0);
}

/** SIGKILLs every worker still running (a test's leftovers) and empties the list. */
export async function killWorkers(workers: WorkerProcess[]): Promise<void> {
  for (const w of workers.splice(0)) {
    if (w.child.exitCode === null && w.child.signalCode === null) {
      w.kill('SIGKILL');
      await w.exited;
    }
    keepWorkerLog(w);
  }
}

/**
 * With SPANLEDGER_TEST_WORKER_LOGS set to a folder, each worker's log lines are written there once
 * it is gone (one file per worker): what a failed run on a cluster needs to be understood after.
 */
function keepWorkerLog(w: WorkerProcess): void {
  const dir = process.env.SPANLEDGER_TEST_WORKER_LOGS;
  if (!dir) return;
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}-${w.label}-${w.child.pid}.log`), w.lines.join('\n') + '\n');
}
