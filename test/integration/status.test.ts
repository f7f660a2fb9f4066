import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import type { Kafka } from 'kafkajs';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { FleetStatus, GroupStatus } from '../../src/cli/fleet-status.js';
import { fleetStatus } from '../../src/cli/status-command.js';
import { envValues, resolveSettings } from '../../src/config/load.js';
import { kafkaSettings, spanSettings, workerSettings } from '../../src/config/settings.js';
import type { KafkaClientKind } from '../../src/kafka/facade.js';
import { generateSpan, tenantIdFor } from '../../src/model/generate.js';
import { createRegistry } from '../../src/observability/metrics.js';
import { createSpanWorker } from '../../src/workers/span-worker.js';
import type { Worker } from '../../src/workers/worker.js';
import { CLI, ROOT, createSpanTopics, kafkaClient, sleep, waitForCommitted, groupLag } from '../support/harness.js';

const run = promisify(execFile);
const brokers = inject('kafkaBrokers');
const PARTITIONS = 4;
const SPANS = 400;
let kafka: Kafka;
const running: Array<Worker<unknown>> = [];
const dirs: string[] = [];

beforeAll(() => {
  kafka = kafkaClient(brokers);
});

afterAll(async () => {
  for (const w of running.splice(0)) await w.stop();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** A span worker in this process, its /status on a free port advertised as <hostname>:<port>. */
function spanWorker(env: Record<string, string>, workerId: string): Worker<unknown> {
  const all = { ...env, WORKER_ID: workerId, METRICS_PORT: '0' };
  const config = {
    kafka: resolveSettings(kafkaSettings, envValues(kafkaSettings, all), {}),
    worker: resolveSettings(workerSettings, envValues(workerSettings, all), {}),
    spans: resolveSettings(spanSettings, envValues(spanSettings, all), {}),
  };
  const worker = createSpanWorker(config, pino({ level: 'silent' }), createRegistry(false)) as Worker<unknown>;
  running.push(worker);
  return worker;
}

async function produceSpans(topic: string, count: number): Promise<void> {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    const messages = Array.from({ length: count }, (_, i) => {
      const span = generateSpan(tenantIdFor(i % 5), i);
      // Every partition gets records, so that every partition has a commit to compare.
      return { key: span.tenantId, value: JSON.stringify(span), partition: i % PARTITIONS };
    });
    await producer.send({ topic, messages, acks: -1 });
  } finally {
    await producer.disconnect();
  }
}

/** Asks `status` again until `check` passes (the group settles after a join or a leave), at most `timeoutMs`. */
async function statusUntil(read: () => Promise<FleetStatus>, check: (g: GroupStatus) => void, timeoutMs = 60_000): Promise<GroupStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const group = (await read()).groups[0]!;
    try {
      check(group);
      return group;
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await sleep(500);
    }
  }
}

describe('spanledger status on a real broker', () => {
  it('shows both workers, every partition with its owner and Kafka’s committed offsets, lag 0 once drained; a stopped worker’s partitions move', async () => {
    const { topic, group, dir, env } = await createSpanTopics(kafka, brokers, PARTITIONS);
    dirs.push(dir);
    const a = spanWorker(env, 'status-a');
    const b = spanWorker(env, 'status-b');
    await a.start();
    await b.start();
    expect(a.statusAddress).toMatch(/^[^:]+:\d+$/);
    expect(a.statusAddress).not.toBe(b.statusAddress);

    await produceSpans(topic, SPANS);
    await waitForCommitted(kafka, group, topic);

    const read = () => fleetStatus({ client: process.env.KAFKA_CLIENT as KafkaClientKind, brokers: [brokers], clientId: 'spanledger-tests', groups: [{ group, topics: [topic] }], timeoutMs: 2_000 });
    const settled = await statusUntil(read, (g) => {
      expect(g.state).toBe('Stable');
      expect(g.members.map((m) => m.status?.workerId).sort()).toEqual(['status-a', 'status-b']);
      expect(g.members.map((m) => m.state)).toEqual(['ready', 'ready']);
      expect(g.partitions.every((p) => p.owner !== null && p.lag === '0')).toBe(true);
    });
    expect(settled.partitions).toHaveLength(PARTITIONS);
    expect(new Set(settled.members.map((m) => m.address))).toEqual(new Set([a.statusAddress, b.statusAddress]));

    // The committed offsets are Kafka's, and they add up to every record produced.
    const admin = kafka.admin();
    await admin.connect();
    const lag = await groupLag(admin, group, topic).finally(() => admin.disconnect());
    expect(settled.partitions.map((p) => [p.partition, p.committed, p.end])).toEqual(lag.map((l) => [l.partition, l.committed.toString(), l.end.toString()]));
    expect(lag.reduce((n, l) => n + l.committed, 0n)).toBe(BigInt(SPANS));

    // Each worker's own /status agrees with the group about what it owns, and counted what it wrote.
    for (const m of settled.members) {
      const owned = settled.partitions.filter((p) => p.owner?.memberId === m.memberId).map((p) => p.partition);
      expect(m.status!.partitions.map((p) => p.partition)).toEqual(owned);
      expect(m.status!.partitions.every((p) => p.lag === '0' || p.lag === null)).toBe(true);
      expect(m.status!.role).toBe('spans');
      expect(m.status!.process.rssBytes).toBeGreaterThan(0);
    }
    expect(settled.members.reduce((n, m) => n + m.status!.totals.written, 0)).toBeGreaterThanOrEqual(SPANS);

    // The command-line binary (dist/) says the same.
    const { stdout } = await run(process.execPath, [CLI, 'status', '--group', group, '--json', '--brokers', brokers], { cwd: ROOT, timeout: 60_000 });
    const fromCli = JSON.parse(stdout) as FleetStatus;
    expect(fromCli.groups.map((g) => g.group)).toEqual([group]);
    expect(fromCli.groups[0]!.members.map((m) => m.state).sort()).toEqual(['ready', 'ready']);
    expect(fromCli.groups[0]!.partitions.map((p) => [p.partition, p.committed, p.lag])).toEqual(settled.partitions.map((p) => [p.partition, p.committed, '0']));

    // b leaves: its partitions go to a (unowned only while the group rebalances).
    await b.stop();
    running.splice(running.indexOf(b), 1);
    const after = await statusUntil(read, (g) => {
      expect(g.members.map((m) => m.status?.workerId)).toEqual(['status-a']);
      expect(g.partitions.map((p) => p.owner?.workerId ?? null)).toEqual(Array.from({ length: PARTITIONS }, () => 'status-a'));
    });
    expect(after.members[0]!.status!.partitions.map((p) => p.partition)).toEqual([0, 1, 2, 3]);
  });
});
