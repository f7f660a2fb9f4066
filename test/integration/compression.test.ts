import fs from 'node:fs';
import type { Kafka } from 'kafkajs';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { generateSpan, tenantIdFor } from '../../src/model/generate.js';
import { createTopic, kafkaClient, metricValue, readSpanLog, sleep, tempDir, uniqueName, waitForCommitted, WorkerProcess, killWorkers, kafkaFacade, groupLag, kafkaClientsUnderTest, useKafkaClient } from '../support/harness.js';
import { kcatProduce, kcatSkipReason } from '../support/kcat.js';

const brokers = inject('kafkaBrokers');
const skipReason = kcatSkipReason();
if (skipReason) console.log(`\n*** compression tests skipped: ${skipReason} ***\n`);

let kafka: Kafka;
const workers: WorkerProcess[] = [];
const dirs: string[] = [];

/** A fresh spans topic, its dead-letter topic, group and span log folder, and a worker's env for them. */
async function setup(partitions: number) {
  const topic = uniqueName('spans-codecs');
  const group = uniqueName('group');
  const dir = tempDir('spanlog');
  dirs.push(dir);
  await createTopic(kafka, topic, partitions);
  await createTopic(kafka, `${topic}.dlq`, 1);
  const env = {
    KAFKA_BROKERS: brokers,
    SPANS_TOPIC: topic,
    SPANS_DLQ_TOPIC: `${topic}.dlq`,
    SPANS_GROUP: group,
    SPANLOG_DIR: dir,
    KAFKA_SESSION_TIMEOUT_MS: '8000',
    KAFKA_HEARTBEAT_INTERVAL_MS: '1000',
    BATCH_MAX_AGE_MS: '200',
  };
  return { topic, group, dir, env };
}

function startWorker(env: Record<string, string>): WorkerProcess {
  const w = new WorkerProcess('spans', env);
  workers.push(w);
  return w;
}

/**
 * Produces `count` spans with kcat in `codec` to one partition, in one call. With `tenantInHeader`
 * the tenant is only in a `tenant-id` header. Returns the span ids.
 */
async function produce(topic: string, partition: number, codec: string, count: number, tenantInHeader = false): Promise<string[]> {
  const tenantId = tenantIdFor(partition);
  const spans = Array.from({ length: count }, (_, i) => generateSpan(tenantId, partition * 100_000 + i, Date.UTC(2026, 10, 23, 10)));
  const lines = spans.map((s) => {
    if (!tenantInHeader) return JSON.stringify(s);
    const { tenantId: _t, ...body } = s;
    return JSON.stringify(body);
  });
  await kcatProduce({ brokers, topic, partition, codec, headers: tenantInHeader ? { 'tenant-id': tenantId } : {}, lines });
  return spans.map((s) => s.spanId);
}

/** Span log lines per span id: each expected id once, nothing else. */
function expectExactlyOnce(dir: string, expected: string[]): void {
  const counts = new Map<string, number>();
  for (const { line } of readSpanLog(dir)) counts.set(line.spanId, (counts.get(line.spanId) ?? 0) + 1);
  const missing = expected.filter((id) => !counts.has(id)).length;
  const duplicated = [...counts.values()].filter((n) => n > 1).length;
  const unexpected = [...counts.keys()].filter((id) => !expected.includes(id)).length;
  expect({ missing, duplicated, unexpected, distinct: counts.size }).toEqual({ missing: 0, duplicated: 0, unexpected: 0, distinct: expected.length });
}

async function lagByPartition(group: string, topic: string): Promise<Map<number, { committed: bigint; lag: bigint }>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return new Map((await groupLag(admin, group, topic)).map((p) => [p.partition, p]));
  } finally {
    await admin.disconnect();
  }
}

beforeAll(() => {
  kafka = kafkaClient(brokers);
});

afterEach(() => killWorkers(workers));

afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe.skipIf(skipReason !== undefined).each(kafkaClientsUnderTest())('span worker reading batches compressed by librdkafka (kcat) on %s', (client) => {
  useKafkaClient(client);
  it('stores every record of every codec exactly once', async () => {
    const codecs = ['none', 'gzip', 'snappy', 'lz4', 'zstd'];
    const s = await setup(codecs.length);
    const expected: string[] = [];
    // zstd gets batches above 1 MiB uncompressed, which librdkafka writes without a content size.
    for (const [partition, codec] of codecs.entries()) expected.push(...(await produce(s.topic, partition, codec, codec === 'zstd' ? 4000 : 600, codec === 'snappy')));
    const w = startWorker(s.env);
    const started = await w.waitForLog('worker started');
    await waitForCommitted(kafka, s.group, s.topic);
    expectExactlyOnce(s.dir, expected);
    expect([...(await lagByPartition(s.group, s.topic)).values()].map((p) => p.lag)).toEqual(codecs.map(() => 0n));
    const metrics = await (await fetch(`http://127.0.0.1:${Number(started.metricsPort)}/metrics`)).text();
    expect(metricValue(metrics, 'spanledger_records_written_total')).toBe(expected.length);
    expect(metricValue(metrics, 'spanledger_partition_stuck')).toBe(0);
    expect(w.child.exitCode).toBeNull();
    w.kill('SIGTERM');
    expect((await w.exited).code).toBe(0);
  });

  it('pauses only the partition whose batches it cannot decompress, reports it, and goes on with the others', async () => {
    const s = await setup(3);
    const readable = [...(await produce(s.topic, 0, 'gzip', 300)), ...(await produce(s.topic, 2, 'lz4', 300))];
    const stuck = await produce(s.topic, 1, 'zstd', 300);
    const w = startWorker({ ...s.env, NODE_ENV: 'test', SPANLEDGER_TEST_DISABLE_CODECS: 'zstd' });
    const started = await w.waitForLog('worker started');
    const paused = await w.waitForLog('partition paused: a batch cannot be decompressed; its records stay uncommitted until a worker that can read them takes over');
    expect(paused).toMatchObject({ level: 50, partition: 1 });
    expect(String(paused.reason)).toMatch(/^zstd decompression failed: no zstd codec in this worker \(batch of \d+ records at offsets 0\.\.\d+\)$/);

    // The other partitions are committed to the end; partition 1 keeps all its lag.
    const deadline = Date.now() + 60_000;
    let lag = await lagByPartition(s.group, s.topic);
    while ((lag.get(0)!.lag !== 0n || lag.get(2)!.lag !== 0n) && Date.now() < deadline) {
      await sleep(250);
      lag = await lagByPartition(s.group, s.topic);
    }
    expect([0, 1, 2].map((p) => lag.get(p)!.lag)).toEqual([0n, 300n, 0n]);
    expectExactlyOnce(s.dir, readable);

    // Still alive a while later, still paused, and saying so on /readyz and /metrics.
    await sleep(2000);
    expect(w.child.exitCode).toBeNull();
    expect((await lagByPartition(s.group, s.topic)).get(1)!.lag).toBe(300n);
    const port = Number(started.metricsPort);
    const readyz = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect(readyz.status).toBe(503);
    expect(await readyz.text()).toMatch(new RegExp(`^not ready\\npartition ${s.topic}/1 stuck: zstd decompression failed: no zstd codec`));
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metricValue(metrics, 'spanledger_partition_stuck', 'partition="1",reason="undecodable_batch:zstd"')).toBe(1);
    expect(metricValue(metrics, 'spanledger_records_written_total')).toBe(600);
    w.kill('SIGTERM');
    expect((await w.exited).code).toBe(0);

    // A worker that has the codec takes over and reads the partition from where it stopped.
    const next = startWorker(s.env);
    await next.waitForLog('worker started');
    await waitForCommitted(kafka, s.group, s.topic);
    expectExactlyOnce(s.dir, [...readable, ...stuck]);
    next.kill('SIGTERM');
    expect((await next.exited).code).toBe(0);
  });
});
