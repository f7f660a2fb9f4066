import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import type { Kafka } from 'kafkajs';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { readDeadLetters } from '../../src/cli/dlq.js';
import { DLQ_HEADERS } from '../../src/kafka/dead-letter.js';
import { generateSpan, malformedRecords, tenantIdFor } from '../../src/model/generate.js';
import { spanDay } from '../../src/model/span.js';
import { CLI, metricValue, ROOT, committedTotal, createSpanTopics, type SpanTopics, kafkaClient, readSpanLog, sleep, waitForCommitted, WorkerProcess, killWorkers, kafkaFacade, kafkaClientsUnderTest, useKafkaClient } from '../support/harness.js';

const run = promisify(execFile);
const brokers = inject('kafkaBrokers');
let kafka: Kafka;
const workers: WorkerProcess[] = [];
const dirs: string[] = [];

type Setup = SpanTopics;

async function setup(partitions: number, extraEnv: Record<string, string> = {}): Promise<Setup> {
  const s = await createSpanTopics(kafka, brokers, partitions, extraEnv);
  dirs.push(s.dir);
  return s;
}

function startWorker(s: Setup, env: Record<string, string> = {}): WorkerProcess {
  const w = new WorkerProcess('spans', { ...s.env, ...env });
  workers.push(w);
  return w;
}

/** Produces `count` spans over `tenants` tenants (tenant in body, or in the header for every third). */
async function produceSpans(topic: string, count: number, tenants: number, from = 0): Promise<Map<string, { tenantId: string; day: string }>> {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const expected = new Map<string, { tenantId: string; day: string }>();
  try {
    for (let start = from; start < from + count; start += 500) {
      const messages = [];
      for (let i = start; i < Math.min(start + 500, from + count); i += 1) {
        const tenantId = tenantIdFor(i % tenants);
        // Spread spans over two UTC days to exercise per-day files.
        const span = generateSpan(tenantId, i, Date.UTC(2026, 10, 23 + (i % 2), 10));
        expected.set(span.spanId, { tenantId, day: spanDay(span)! });
        if (i % 3 === 0) {
          const { tenantId: _t, ...body } = span;
          messages.push({ key: tenantId, value: JSON.stringify(body), headers: { 'tenant-id': tenantId } });
        } else {
          messages.push({ key: tenantId, value: JSON.stringify(span) });
        }
      }
      await producer.send({ topic, messages, acks: -1 });
    }
  } finally {
    await producer.disconnect();
  }
  return expected;
}

/** Each expected span exactly once, in the folder of its tenant and day; nothing else. */
function expectExactlyOnce(dir: string, expected: Map<string, { tenantId: string; day: string }>): void {
  const lines = readSpanLog(dir);
  const seen = new Map<string, number>();
  for (const { tenantId, day, line } of lines) {
    seen.set(line.spanId, (seen.get(line.spanId) ?? 0) + 1);
    const want = expected.get(line.spanId);
    expect(want, `unexpected span ${line.spanId} in the span log`).toBeDefined();
    expect({ tenantId, day }).toEqual(want);
    expect(line.tenantId).toBe(tenantId);
  }
  const duplicates = [...seen].filter(([, n]) => n > 1);
  const missing = [...expected.keys()].filter((id) => !seen.has(id));
  expect({ duplicates: duplicates.length, missing: missing.length, lines: lines.length }).toEqual({ duplicates: 0, missing: 0, lines: expected.size });
}

beforeAll(() => {
  kafka = kafkaClient(brokers);
});

afterEach(() => killWorkers(workers));

afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe.each(kafkaClientsUnderTest())('span worker on a real broker on %s', (client) => {
  useKafkaClient(client);
  it('writes N spans for M tenants exactly once into the file of their tenant and day', async () => {
    const s = await setup(3);
    const expected = await produceSpans(s.topic, 6000, 5);
    const w = startWorker(s);
    const started = await w.waitForLog('worker started');
    await waitForCommitted(kafka, s.group, s.topic);
    expectExactlyOnce(s.dir, expected);
    // Records keep their partition order within each segment.
    for (const [file, offsets] of groupOffsetsByFile(s.dir)) {
      expect(offsets, file).toEqual([...offsets].sort((a, b) => a - b));
    }
    // Health and metrics endpoints answer while it runs.
    const port = Number(started.metricsPort);
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metricValue(metrics, 'spanledger_records_written_total')).toBe(6000);
    expect(metricValue(metrics, 'spanledger_records_consumed_total')).toBe(6000);
    expect(metrics).toContain('spanledger_consumer_lag{');
    expect(metrics).toContain('spanledger_flush_duration_seconds_bucket');
    w.kill('SIGTERM');
    expect((await w.exited).code).toBe(0);
  });

  it('dead-letters malformed records of each kind with their reason and origin, and keeps going', async () => {
    const s = await setup(1, { MAX_MESSAGE_BYTES: '4096' });
    const before = await produceSpans(s.topic, 100, 2);
    const producer = kafka.producer();
    await producer.connect();
    const bad = malformedRecords(tenantIdFor(0), 4096);
    await producer.send({
      topic: s.topic,
      messages: bad.map((b, i) => ({ key: `bad-${i}`, value: b.value, headers: { ...b.headers, 'x-origin': `case-${b.kind}` } })),
    });
    await producer.disconnect();
    const after = await produceSpans(s.topic, 100, 2, 100);
    const w = startWorker(s);
    await w.waitForLog('worker started');
    await waitForCommitted(kafka, s.group, s.topic);
    expectExactlyOnce(s.dir, new Map([...before, ...after]));

    const letters = await readDeadLetters(kafkaFacade(brokers), s.dlqTopic);
    expect(letters.map((l) => l.errorClass)).toEqual(bad.map((b) => b.kind));
    letters.forEach((l, i) => {
      expect(l.source).toEqual({ topic: s.topic, partition: 0, offset: String(100 + i) });
      expect(l.key).toBe(`bad-${i}`);
      expect(l.value).toBe(bad[i]!.value.toString('utf8'));
      expect(l.headers['x-origin']).toBe(`case-${bad[i]!.kind}`);
      expect(l.message.length).toBeGreaterThan(5);
      expect(l.stage).toBe('DECODE');
      expect(l.headers[DLQ_HEADERS.connector]).toBe(s.group);
      expect(Date.parse(l.failedAt)).toBeGreaterThan(Date.now() - 600_000);
      expect(l.worker.length).toBeGreaterThan(0);
    });

    // Replay one reason back to the source topic: still invalid, so it is dead-lettered again,
    // now carrying where it was replayed from; nothing reaches the span log.
    const replay = await run(process.execPath, [CLI, 'dlq', 'replay', '--topic', s.dlqTopic, '--reason', 'InvalidTenantId'], {
      cwd: ROOT,
      env: { ...process.env, KAFKA_BROKERS: brokers },
    });
    expect(replay.stdout).toContain('replayed 1 record(s)');
    await waitForCommitted(kafka, s.group, s.topic);
    const again = await readDeadLetters(kafkaFacade(brokers), s.dlqTopic);
    expect(again).toHaveLength(bad.length + 1);
    const replayed = again.at(-1)!;
    expect(replayed.errorClass).toBe('InvalidTenantId');
    expect(replayed.source.offset).toBe('205');
    expect(replayed.headers['spanledger.replayed.from']).toBe(`${s.dlqTopic}/0/2`);
    expect(replayed.headers['x-origin']).toBe('case-InvalidTenantId');
    expectExactlyOnce(s.dir, new Map([...before, ...after]));
    w.kill('SIGTERM');
    expect((await w.exited).code).toBe(0);
  });

  it('loses nothing and doubles nothing when a worker is killed with SIGKILL mid-stream and restarted', async () => {
    const s = await setup(3, { BATCH_MAX_RECORDS: '200' });
    const producing = produceSpans(s.topic, 30000, 7);
    let w = startWorker(s);
    await w.waitForLog('worker started');
    // Kill it twice while it is writing, each time after some progress, then let a third finish.
    for (let round = 0; round < 2; round += 1) {
      const target = BigInt(3000 * (round + 1));
      const deadline = Date.now() + 60_000;
      while ((await committedTotal(kafka, s.group, s.topic)) < target && Date.now() < deadline) await sleep(50);
      w.kill('SIGKILL');
      await w.exited;
      w = startWorker(s);
    }
    const expected = await producing;
    await waitForCommitted(kafka, s.group, s.topic, 180_000);
    expectExactlyOnce(s.dir, expected);
    w.kill('SIGTERM');
    expect((await w.exited).code).toBe(0);
  });

  it.each(['SIGTERM', 'SIGKILL'] as const)('two workers share the partitions; one stopped mid-stream with %s loses and doubles nothing', async (signal) => {
    const s = await setup(4, { BATCH_MAX_RECORDS: '200' });
    const one = startWorker(s, { WORKER_ID: 'worker-one' });
    const two = startWorker(s, { WORKER_ID: 'worker-two' });
    // Produce only once the group has settled with the partitions split between both.
    await waitForSplit([one, two], 4);
    const producing = produceSpans(s.topic, 30000, 8);
    const deadline = Date.now() + 60_000;
    while ((await committedTotal(kafka, s.group, s.topic)) < 8000n && Date.now() < deadline) await sleep(50);
    two.kill(signal);
    const exit = await two.exited;
    if (signal === 'SIGTERM') expect(exit.code).toBe(0);
    else expect(exit.signal).toBe('SIGKILL');
    const expected = await producing;
    await waitForCommitted(kafka, s.group, s.topic, 180_000);
    expectExactlyOnce(s.dir, expected);
    // Both workers wrote: the partitions were really shared.
    const locked = (w: WorkerProcess) => w.lines.filter((l) => l.includes('span log partition lock taken')).length;
    expect(locked(one)).toBeGreaterThan(0);
    expect(locked(two)).toBeGreaterThan(0);
    one.kill('SIGTERM');
    expect((await one.exited).code).toBe(0);
  });

  it('keeps memory bounded under a large backlog: fetching pauses at MAX_IN_FLIGHT_BYTES', async () => {
    const budget = 1 << 20;
    // A slow span log (an fsync per file, many tenants) and a budget far below the backlog.
    const s = await setup(2, { MAX_IN_FLIGHT_BYTES: String(budget), BATCH_MAX_RECORDS: '100000', BATCH_MAX_BYTES: String(budget), BATCH_MAX_AGE_MS: '50' });
    const expected = await produceSpans(s.topic, 40000, 50);
    const w = startWorker(s);
    await waitForCommitted(kafka, s.group, s.topic);
    expectExactlyOnce(s.dir, expected);
    const metrics = await (await fetch(`http://127.0.0.1:${String((await w.waitForLog('worker started')).metricsPort)}/metrics`)).text();
    expect(metricValue(metrics, 'spanledger_fetch_pauses_total')).toBeGreaterThan(0);
    // The worker stops taking records as soon as the budget is passed: at most one record over
    // per partition taken in at the same time (2 here; a record counts with key, headers and
    // overhead, under 1,000 bytes).
    expect(metricValue(metrics, 'spanledger_bytes_in_flight_max')).toBeLessThanOrEqual(budget + 2 * 1000);
    expect(metricValue(metrics, 'spanledger_bytes_in_flight')).toBe(0);
    w.kill('SIGTERM');
    expect((await w.exited).code).toBe(0);
  });

  it('a graceful stop flushes what is buffered, commits it and exits 0', async () => {
    // Age and count limits far away: records stay buffered until the stop flushes them.
    const s = await setup(2, { BATCH_MAX_AGE_MS: '600000', BATCH_MAX_RECORDS: '100000', BATCH_FLUSH_WHEN_CAUGHT_UP: 'false', SHUTDOWN_TIMEOUT_MS: '20000' });
    const w = startWorker(s);
    await w.waitForLog('worker started');
    await w.waitForLog('joined consumer group');
    const expected = await produceSpans(s.topic, 2000, 3);
    // Wait until the worker has taken them in (consumed), though nothing is flushed yet.
    await sleep(3000);
    expect(readSpanLog(s.dir)).toHaveLength(0);
    expect(await committedTotal(kafka, s.group, s.topic)).toBe(0n);
    const stoppedAt = Date.now();
    w.kill('SIGTERM');
    const exit = await w.exited;
    expect(exit.code).toBe(0);
    expect(Date.now() - stoppedAt).toBeLessThan(20_000);
    expectExactlyOnce(s.dir, expected);
    expect(await committedTotal(kafka, s.group, s.topic)).toBe(2000n);
  });
});

/** Waits until the latest assignments of the workers cover all partitions, each worker having some. */
async function waitForSplit(group: WorkerProcess[], partitions: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const latest = group.map((w) => {
      const joins = w.lines.filter((l) => l.includes('"msg":"joined consumer group"'));
      const last = joins.at(-1);
      return last ? (JSON.parse(last) as { partitions: number[] }).partitions : [];
    });
    const union = new Set(latest.flat());
    if (latest.every((p) => p.length > 0) && union.size === partitions && latest.flat().length === partitions) return;
    if (Date.now() > deadline) throw new Error(`partitions not split between workers: ${JSON.stringify(latest)}`);
    await sleep(200);
  }
}

function groupOffsetsByFile(dir: string): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const { tenantId, day, file, line } of readSpanLog(dir)) {
    const key = `${tenantId}/${day}/${file}`;
    const offsets = out.get(key) ?? [];
    offsets.push(Number((line._kafka as { offset: string }).offset));
    out.set(key, offsets);
  }
  return out;
}

