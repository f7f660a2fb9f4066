/**
 * Static membership (KAFKA_GROUP_INSTANCE_ID, KIP-345) on @platformatic/kafka against the real
 * broker: a static member that stops (SIGTERM or kill -9) and comes back with the same instance
 * id within the session timeout gets its partitions back with no rebalance for the others, and
 * a graceful stop leaves no live handle behind (src/kafka/platformatic/group-consumer.ts).
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Kafka } from 'kafkajs';
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { generateSpan, tenantIdFor } from '../../src/model/generate.js';
import { createSpanTopics, createTopic, groupLag, kafkaClient, readSpanLog, ROOT, sleep, uniqueName, waitForCommitted, WorkerProcess, killWorkers, type SpanTopics } from '../support/harness.js';

const run = promisify(execFile);
const brokers = inject('kafkaBrokers');
const SESSION_TIMEOUT_MS = 20_000;
let kafka: Kafka;
const workers: WorkerProcess[] = [];

beforeAll(() => {
  kafka = kafkaClient(brokers);
});

afterEach(() => killWorkers(workers));

function startWorker(s: SpanTopics, instanceId: string): WorkerProcess {
  const w = new WorkerProcess('spans', { ...s.env, KAFKA_CLIENT: 'platformatic', KAFKA_GROUP_INSTANCE_ID: instanceId });
  workers.push(w);
  return w;
}

function joins(w: WorkerProcess): number[][] {
  return w.lines.filter((l) => l.includes('"msg":"joined consumer group"')).map((l) => (JSON.parse(l) as { partitions: number[] }).partitions.sort((x, y) => x - y));
}

async function waitForSplit(a: WorkerProcess, b: WorkerProcess, partitions: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const latest = [joins(a).at(-1) ?? [], joins(b).at(-1) ?? []];
    if (latest.every((p) => p.length > 0) && new Set(latest.flat()).size === partitions && latest.flat().length === partitions) return;
    if (Date.now() > deadline) throw new Error(`partitions not split: ${JSON.stringify(latest)}`);
    await sleep(200);
  }
}

/** Spans produced steadily (a batch every 200 ms) until stopped; the ids of all of them. */
function steadyLoad(topic: string): { stop: () => Promise<Set<string>> } {
  const expected = new Set<string>();
  let running = true;
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  const done = (async () => {
    await producer.connect();
    let i = 0;
    while (running) {
      const messages = [];
      for (const end = i + 60; i < end; i += 1) {
        const tenantId = tenantIdFor(i % 5);
        const span = generateSpan(tenantId, i, Date.UTC(2026, 10, 23, 10));
        expected.add(span.spanId);
        messages.push({ key: `${tenantId}-${i % 12}`, value: JSON.stringify(span) });
      }
      await producer.send({ topic, messages, acks: -1 });
      await sleep(200);
    }
    await producer.disconnect();
  })();
  return {
    stop: async () => {
      running = false;
      await done;
      return expected;
    },
  };
}

/** Committed offset per partition of the group (0 when none). */
async function committed(s: SpanTopics): Promise<Map<number, bigint>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return new Map((await groupLag(admin, s.group, s.topic)).map((p) => [p.partition, p.committed]));
  } finally {
    await admin.disconnect();
  }
}

function expectEachSpanOnce(dir: string, expected: Set<string>): void {
  const counts = new Map<string, number>();
  for (const { line } of readSpanLog(dir)) counts.set(line.spanId, (counts.get(line.spanId) ?? 0) + 1);
  const duplicates = [...counts].filter(([, n]) => n > 1).length;
  const unexpected = [...counts.keys()].filter((id) => !expected.has(id)).length;
  const missing = [...expected].filter((id) => !counts.has(id)).length;
  expect({ duplicates, unexpected, missing, stored: counts.size }).toEqual({ duplicates: 0, unexpected: 0, missing: 0, stored: expected.size });
}

describe('static membership on platformatic (KIP-345)', () => {
  for (const stop of ['SIGTERM', 'SIGKILL'] as const) {
    it(`${stop} and a restart with the same instance id within the session timeout: no rebalance, same partitions, every span once`, async () => {
      const s = await createSpanTopics(kafka, brokers, 6, { KAFKA_SESSION_TIMEOUT_MS: String(SESSION_TIMEOUT_MS), KAFKA_REBALANCE_TIMEOUT_MS: '20000' });
      const a = startWorker(s, 'a');
      await a.waitForLog('joined consumer group');
      const b = startWorker(s, 'b');
      await waitForSplit(a, b, 6);
      const load = steadyLoad(s.topic);
      await sleep(2_000);
      const aPartitions = joins(a).at(-1)!;
      const bJoins = joins(b);
      const bRebalances = () => b.lines.filter((l) => l.includes('"msg":"group is rebalancing; flushing buffers"')).length;
      const bRebalancesBefore = bRebalances();

      const stoppedAt = Date.now();
      a.kill(stop);
      const exit = await a.exited;
      if (stop === 'SIGTERM') expect(exit.code).toBe(0);
      const before = await committed(s);
      const restartedAt = Date.now();
      const a2 = startWorker(s, 'a');
      await a2.waitForLog('joined consumer group', SESSION_TIMEOUT_MS);
      const joinedAfterMs = Date.now() - restartedAt;
      // First progress of the restarted member: a commit past where a left off on one of its partitions.
      let progressAfterMs = -1;
      for (const deadline = Date.now() + 30_000; progressAfterMs < 0 && Date.now() < deadline; await sleep(100)) {
        const now = await committed(s);
        if (aPartitions.some((p) => (now.get(p) ?? 0n) > (before.get(p) ?? 0n))) progressAfterMs = Date.now() - restartedAt;
      }
      console.log(`static member ${stop}: down ${restartedAt - stoppedAt} ms; restart -> joined ${joinedAfterMs} ms; restart -> first commit ${progressAfterMs} ms`);
      expect(Date.now() - stoppedAt).toBeLessThan(SESSION_TIMEOUT_MS);
      await sleep(3_000);
      const expected = await load.stop();
      await waitForCommitted(kafka, s.group, s.topic, 60_000);

      expect(joins(a2)).toEqual([aPartitions]);
      // b was never told of a new assignment nor of a rebalance.
      expect(joins(b)).toEqual(bJoins);
      expect(bRebalances()).toBe(bRebalancesBefore);
      expect(progressAfterMs).toBeGreaterThan(0);
      expectEachSpanOnce(s.dir, expected);
    });
  }

  it('a graceful stop of a static member leaves no live handle and does not leave the group', async () => {
    const topic = uniqueName('static-close');
    const group = uniqueName('g');
    await createTopic(kafka, topic, 3);
    const heartbeatIntervalMs = 2_000;
    // The adapter as built (dist), in its own process that must end by itself: nothing calls process.exit.
    const script = `
      const { PlatformaticGroupConsumer } = await import(${JSON.stringify(path.join(ROOT, 'dist/kafka/platformatic/group-consumer.js'))});
      const { pino } = await import('pino');
      const c = new PlatformaticGroupConsumer({ brokers: ${JSON.stringify(brokers.split(','))}, clientId: 'static-close', logger: pino({ level: 'silent' }) },
        { group: ${JSON.stringify(group)}, groupInstanceId: 'only', sessionTimeoutMs: ${SESSION_TIMEOUT_MS}, rebalanceTimeoutMs: ${SESSION_TIMEOUT_MS}, heartbeatIntervalMs: ${heartbeatIntervalMs}, maxInFlightBytes: 1 << 24, partitionsConcurrency: 2 });
      const joined = new Promise((resolve) => c.onGroupJoin(resolve));
      await c.connect();
      await c.subscribe(${JSON.stringify(topic)}, true);
      await c.run(async (batch) => { for (const m of batch.messages) batch.resolveOffset(m.offset); });
      await joined;
      await new Promise((r) => setTimeout(r, ${heartbeatIntervalMs * 2}));
      await c.disconnect();
      console.log(Date.now());
    `;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, timeout: 60_000 });
    const exitedAt = Date.now();
    const disconnectedAt = Number(stdout.trim().split('\n').at(-1));
    // The library's one heartbeat timer already scheduled fires once and stops (no request: the client is closed).
    expect(exitedAt - disconnectedAt).toBeLessThan(heartbeatIntervalMs + 1_000);
    // No LeaveGroup went out: the broker still holds the member (until the session timeout).
    const admin = kafka.admin();
    await admin.connect();
    try {
      const [described] = (await admin.describeGroups([group])).groups;
      expect({ state: described!.state, members: described!.members.length }).toEqual({ state: 'Stable', members: 1 });
    } finally {
      await admin.disconnect();
    }
  });
});
