import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { CopyObjectCommand, DeleteObjectCommand, HeadObjectCommand, ListMultipartUploadsCommand, S3Client } from '@aws-sdk/client-s3';
import type { Kafka } from 'kafkajs';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { readDeadLetters } from '../../src/cli/dlq.js';
import { malformedRecords, tenantIdFor } from '../../src/model/generate.js';
import { RetriableError } from '../../src/errors.js';
import { ObjectStore } from '../../src/sinks/archive/object-store.js';
import { ArchiveSink } from '../../src/sinks/archive/archive-sink.js';
import { CycleDataError } from '../../src/sinks/archive/unwritable.js';
import type { ParquetWriter } from '../../src/sinks/archive/parquet-writer.js';
import { storedSpan } from '../../src/model/span-line.js';
import { storedLineOf, type ArchiveRow } from '../../src/model/archive-row.js';
import type { FlushItem } from '../../src/sinks/types.js';
import { archiveDifferences, archiveVerify, createArchiveSetup, produceMixedSpans, readArchivedRows, type ArchiveSetup, type ExpectedSpan } from '../support/archive.js';
import { CLI, ROOT, committedTotal, kafkaClient, kafkaFacade, killWorkers, metricValue, sleep, tempDir, waitForCommitted, WorkerProcess } from '../support/harness.js';
import { startS3, type S3Server } from '../support/s3.js';

const run = promisify(execFile);
const brokers = inject('kafkaBrokers');
// The suite said in one line when there is no versitygw (test/support/s3-setup.ts).
const skip = inject('s3SkipReason') || null;

let kafka: Kafka;
let s3: S3Server;
const workers: WorkerProcess[] = [];

function startWorker(setup: ArchiveSetup, env: Record<string, string> = {}): WorkerProcess {
  const w = new WorkerProcess('archive', { ...setup.env, ...env });
  workers.push(w);
  return w;
}

/** The worker exited 0 (a clean graceful stop); otherwise the failure shows its last log lines. */
async function expectCleanExit(w: WorkerProcess): Promise<void> {
  const exit = await w.exited;
  expect(exit.code, `worker exited with ${exit.code ?? exit.signal}; its last lines:\n${w.lines.slice(-25).join('\n')}`).toBe(0);
}

/** The archive holds every expected span once, field for field, and `archive verify` says OK. */
async function expectArchivedExactlyOnce(setup: ArchiveSetup, expected: Map<string, ExpectedSpan>): Promise<void> {
  const diff = archiveDifferences(await readArchivedRows(setup.objectsDir), expected);
  expect(diff).toEqual({ rows: expected.size, missing: 0, duplicates: 0, unexpected: 0, different: [], positionsTwice: 0 });
  const verify = await archiveVerify(setup);
  expect(verify.stdout).toContain('OK: every position of the committed range is archived exactly once');
  expect(verify.code).toBe(0);
}

describe.skipIf(skip !== null)('archive worker on a real broker and a real S3 server (versitygw)', () => {
  beforeAll(async () => {
    kafka = kafkaClient(brokers);
    s3 = await startS3();
  });
  afterEach(() => killWorkers(workers));
  afterAll(async () => {
    await s3?.destroy();
  });

  it('archives JSON and OTLP spans of many tenants across days once, field for field; ls, verify and query agree', async () => {
    const setup = await createArchiveSetup(kafka, brokers, s3, 3);
    const expected = await produceMixedSpans(kafka, setup.topic, { json: 3000, otlp: 60, spansPerRequest: 20, tenants: 7 });
    const w = startWorker(setup);
    const started = await w.waitForLog('worker started');
    await waitForCommitted(kafka, setup.group, setup.topic);
    await expectArchivedExactlyOnce(setup, expected);

    const metrics = await (await fetch(`http://127.0.0.1:${Number(started.metricsPort)}/metrics`)).text();
    expect(metricValue(metrics, 'spanledger_records_written_total')).toBe(expected.size);
    expect(metricValue(metrics, 'spanledger_archive_objects_uploaded_total')).toBeGreaterThanOrEqual(7 * 3);

    const env = { ...process.env, ...setup.env };
    const ls = await run(process.execPath, [CLI, 'archive', 'ls', '--json'], { cwd: ROOT, env });
    const lines = ls.stdout.trim().split('\n').map((l) => JSON.parse(l) as { tenantId: string; day: string; spans: number });
    expect(lines).toHaveLength(7 * 3);
    expect(lines.reduce((n, l) => n + l.spans, 0)).toBe(expected.size);

    const tenant = tenantIdFor(1);
    const day = [...expected.values()].find((e) => e.tenantId === tenant)!.day;
    const want = [...expected.values()].filter((e) => e.tenantId === tenant && e.day === day);
    const query = await run(process.execPath, [CLI, 'query', '--tenant', tenant, '--day', day, '--json', 'SELECT count(*) AS n, count(DISTINCT span_id) AS ids, min(tenant) AS tenant FROM spans'], { cwd: ROOT, env });
    expect(JSON.parse(query.stdout.trim())).toEqual({ n: String(want.length), ids: String(want.length), tenant });
    // With a span log of that tenant-day beside it, `spanlog` is its segments, joinable with `spans`.
    const spanlogDir = tempDir('archive-query-spanlog');
    fs.mkdirSync(path.join(spanlogDir, tenant, day), { recursive: true });
    fs.writeFileSync(path.join(spanlogDir, tenant, day, `${setup.topic}+0+0.jsonl`), `${JSON.stringify(want[0]!.span)}\n`);
    const both = await run(process.execPath, [CLI, 'query', '--tenant', tenant, '--day', day, '--spanlog-dir', spanlogDir, '--json', 'SELECT (SELECT count(*) FROM spans) AS archived, (SELECT count(*) FROM spanlog) AS logged, (SELECT count(*) FROM spans JOIN spanlog ON spans.span_id = spanlog.spanId) AS joined'], { cwd: ROOT, env });
    expect(JSON.parse(both.stdout.trim())).toEqual({ archived: String(want.length), logged: '1', joined: '1' });
    fs.rmSync(spanlogDir, { recursive: true, force: true });
    w.kill('SIGTERM');
    await expectCleanExit(w);
  });

  it('archive verify fails on an object archived twice and on a missing one', async () => {
    const setup = await createArchiveSetup(kafka, brokers, s3, 1);
    await produceMixedSpans(kafka, setup.topic, { json: 300, otlp: 2, tenants: 2 });
    const w = startWorker(setup);
    await waitForCommitted(kafka, setup.group, setup.topic);
    w.kill('SIGTERM');
    await w.exited;
    expect((await archiveVerify(setup)).code).toBe(0);
    const client = new S3Client({ endpoint: s3.endpoint, forcePathStyle: true, region: s3.env.AWS_REGION, credentials: { accessKeyId: s3.env.AWS_ACCESS_KEY_ID!, secretAccessKey: s3.env.AWS_SECRET_ACCESS_KEY! } });
    try {
      const file = (fs.readdirSync(setup.objectsDir, { recursive: true }) as string[]).find((f) => f.endsWith('.parquet'))!;
      const key = `${setup.prefix}/${file}`;
      const copy = key.replace(/\.parquet$/, '_9.parquet');
      await client.send(new CopyObjectCommand({ Bucket: s3.bucket, Key: copy, CopySource: `${s3.bucket}/${key.split('/').map(encodeURIComponent).join('/')}` }));
      const twice = await archiveVerify(setup);
      expect(twice.code).toBe(1);
      expect(twice.stdout).toMatch(/duplicates [1-9]\d*, missing 0, unexpected 0, misnamed objects 1;/);
      expect(twice.stdout).toContain('FAILED');
      await client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: copy }));
      await client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: key }));
      const gone = await archiveVerify(setup);
      expect(gone.code).toBe(1);
      expect(gone.stdout).toMatch(/duplicates 0, missing [1-9]\d*, unexpected 0, misnamed objects 0;/);
    } finally {
      client.destroy();
    }
  });

  it('an aborted upload (a released partition) stops at once and leaves neither the object nor its parts', async () => {
    // The store takes its credentials from the AWS chain, as in a worker.
    const saved = { ...process.env };
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: s3.env.AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: s3.env.AWS_SECRET_ACCESS_KEY, AWS_REGION: s3.env.AWS_REGION });
    const store = new ObjectStore({ endpoint: s3.endpoint, bucket: s3.bucket, forcePathStyle: true, requestTimeoutMs: 30_000, partSizeBytes: 5 * 2 ** 20 });
    const dir = tempDir('archive-abort');
    const file = path.join(dir, 'big.parquet');
    fs.writeFileSync(file, randomBytes(40 * 2 ** 20));
    const key = `abort-test/${Date.now()}.parquet`;
    try {
      const released = new AbortController();
      setTimeout(() => released.abort(new Error('partition released')), 150);
      const started = Date.now();
      const error = await store.putFile(key, file, released.signal).then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(RetriableError);
      expect(String((error as Error).message)).toMatch(/aborted/);
      expect(Date.now() - started).toBeLessThan(5_000);
      const head = await store.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: key })).then(() => 'exists', (e: { name?: string; $metadata?: { httpStatusCode?: number } }) => e.$metadata?.httpStatusCode ?? e.name);
      expect(head).toBe(404);
      await sleep(500);
      const uploads = await store.client.send(new ListMultipartUploadsCommand({ Bucket: s3.bucket, Prefix: 'abort-test/' }));
      expect(uploads.Uploads ?? []).toEqual([]);
      // The client goes on serving the worker's other partitions.
      expect(await store.putFile(`${key}.after`, file)).toBe(40 * 2 ** 20);
    } finally {
      for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION']) {
        if (saved[name] === undefined) delete process.env[name];
        else process.env[name] = saved[name];
      }
      store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('dead-letters the records of spans DuckDB refuses (whole) and uploads the rest of the cycle', async () => {
    const saved = { ...process.env };
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: s3.env.AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: s3.env.AWS_SECRET_ACCESS_KEY, AWS_REGION: s3.env.AWS_REGION });
    const prefix = `poison-${Date.now()}`;
    const sink = new ArchiveSink(
      { endpoint: s3.endpoint, bucket: s3.bucket, forcePathStyle: true, requestTimeoutMs: 30_000, partSizeBytes: 5 * 2 ** 20, prefix, scratchDir: tempDir('archive-poison'), duckdbMemoryLimit: '128MB' },
      { logger: pino({ level: 'silent' }), registry: new Registry() },
    );
    // No span DuckDB refuses is known (lone surrogates are replaced): this writer refuses the one named "poison" as DuckDB would.
    const writer = (sink as unknown as { writer: ParquetWriter }).writer;
    const write = writer.write.bind(writer);
    writer.write = async (partition, tenants) => {
      if ([...tenants.values()].some((items) => items.some((i) => String(i.value.line).includes('"name":"poison"')))) throw new CycleDataError('Invalid Input Error: refused');
      return write(partition, tenants);
    };
    const tenant = tenantIdFor(7);
    const item = (offset: number, index: number, name: string): FlushItem<ArchiveRow> => ({
      offset: BigInt(offset),
      index,
      value: { day: '2026-11-22', line: storedLineOf(storedSpan({ traceId: 'a'.repeat(32), spanId: `${String(offset).padStart(12, '0')}000${index}`, name, startTimeUnixNano: '1763800000000000000', endTimeUnixNano: '1763800000000000001' }, tenant)) },
    });
    // Offset 5 is one record of three spans (an OTLP request), one of them refused.
    const items = [item(4, 0, 'a'), item(5, 0, 'b'), item(5, 1, 'poison'), item(5, 2, 'c'), item(6, 0, 'd')];
    try {
      await sink.start();
      const result = await sink.write({ topic: 'spans-poison', partition: 2, tenants: new Map([[tenant, items]]) });
      expect([...result.rejected.keys()].map((i) => `${i.offset}_${i.index}`)).toEqual(['5_0', '5_1', '5_2']);
      expect([...result.rejected.values()].every((e) => e.errorClass === 'ArchiveUnwritable')).toBe(true);
      const rows = await readArchivedRows(path.join(s3.dataDir, s3.bucket, prefix));
      expect(rows.map((r) => `${r.offset}_${r.index}:${r.object}`)).toEqual(['4_0:spans-poison+2+4.parquet', '6_0:spans-poison+2+4.parquet']);
    } finally {
      await sink.close();
      for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION']) {
        if (saved[name] === undefined) delete process.env[name];
        else process.env[name] = saved[name];
      }
    }
  });

  it('stays exactly once when the worker dies before, during and after a cycle\'s uploads (before its commit), and at random points', async () => {
    // Many cycles (at most 500 spans each, or 300 ms), whose ends depend on timing (arrivals, and the
    // batches that merge while a cycle uploads): a replay cuts its cycles elsewhere than the crashed run.
    const setup = await createArchiveSetup(kafka, brokers, s3, 3, { ARCHIVE_CYCLE_MAX_RECORDS: '500', ARCHIVE_CYCLE_MAX_AGE_MS: '300' });
    const producing = produceMixedSpans(kafka, setup.topic, { json: 12000, otlp: 100, spansPerRequest: 30, tenants: 5 });
    // Exactly at each point (SPANLEDGER_TEST_ARCHIVE_KILL: the worker SIGKILLs itself there)...
    for (const point of ['after-upload:3', 'mid-upload:2', 'before-upload:2']) {
      const w = startWorker(setup, { SPANLEDGER_TEST_ARCHIVE_KILL: point });
      const exit = await Promise.race([w.exited, sleep(90_000).then(() => undefined)]);
      expect(exit, `worker with ${point} did not reach it:\n${w.lines.slice(-10).join('\n')}`).toEqual({ code: null, signal: 'SIGKILL' });
    }
    // ...then wherever a kill -9 from outside lands.
    let w = startWorker(setup);
    for (let round = 0; round < 2; round += 1) {
      await w.waitForLog('joined consumer group', 90_000);
      await sleep(400 + Math.floor(Math.random() * 2500));
      w.kill('SIGKILL');
      await w.exited;
      w = startWorker(setup);
    }
    const expected = await producing;
    await waitForCommitted(kafka, setup.group, setup.topic, 170_000);
    await expectArchivedExactlyOnce(setup, expected);
    w.kill('SIGTERM');
    await expectCleanExit(w);
  });

  it('stays exactly once through a rebalance from 1 to 3 workers and back to 1, one of them killed with SIGKILL', async () => {
    const setup = await createArchiveSetup(kafka, brokers, s3, 6, { ARCHIVE_CYCLE_MAX_RECORDS: '800' });
    const first = startWorker(setup, { WORKER_ID: 'archive-one' });
    await first.waitForLog('joined consumer group');
    // Load arrives throughout: a slice before the others join, one while they do, one after.
    const expected = new Map<string, ExpectedSpan>();
    const add = (m: Map<string, ExpectedSpan>) => m.forEach((v, k) => expected.set(k, v));
    add(await produceMixedSpans(kafka, setup.topic, { json: 4000, otlp: 30, tenants: 6 }));
    const second = startWorker(setup, { WORKER_ID: 'archive-two' });
    const third = startWorker(setup, { WORKER_ID: 'archive-three' });
    add(await produceMixedSpans(kafka, setup.topic, { json: 4000, otlp: 30, tenants: 6, from: 10_000 }));
    await Promise.all([second.waitForLog('joined consumer group'), third.waitForLog('joined consumer group')]);
    const during = produceMixedSpans(kafka, setup.topic, { json: 4000, otlp: 30, tenants: 6, from: 20_000 });
    await sleep(1500);
    second.kill('SIGKILL');
    third.kill('SIGTERM');
    await expectCleanExit(third);
    add(await during);
    await waitForCommitted(kafka, setup.group, setup.topic, 170_000);
    await expectArchivedExactlyOnce(setup, expected);
    const wrote = [first, second, third].filter((w) => w.lines.some((l) => l.includes('"msg":"joined consumer group"') && !l.includes('"partitions":[]')));
    expect(wrote.length).toBe(3);
    first.kill('SIGTERM');
    await expectCleanExit(first);
  });

  it('while the S3 server is down for 30 s: the breaker opens, nothing is committed or dead-lettered; afterwards everything lands once', async () => {
    const setup = await createArchiveSetup(kafka, brokers, s3, 3, { RETRY_MAX_DELAY_MS: '2000', BREAKER_HALF_OPEN_AFTER_MS: '5000', BREAKER_WINDOW_MS: '30000' });
    const before = await produceMixedSpans(kafka, setup.topic, { json: 1500, otlp: 20, tenants: 4 });
    const w = startWorker(setup);
    const started = await w.waitForLog('worker started');
    const metricsUrl = `http://127.0.0.1:${Number(started.metricsPort)}/metrics`;
    await waitForCommitted(kafka, setup.group, setup.topic);
    await s3.stop();
    try {
      await sleep(1000);
      const committedAtOutage = await committedTotal(kafka, setup.group, setup.topic);
      const during = await produceMixedSpans(kafka, setup.topic, { json: 1500, otlp: 20, tenants: 4, from: 5_000 });
      let opened = false;
      const outageEnds = Date.now() + 30_000;
      while (Date.now() < outageEnds) {
        if (metricValue(await (await fetch(metricsUrl)).text(), 'spanledger_breaker_state', 'store="archive"') === 2) opened = true;
        await sleep(500);
      }
      expect(opened).toBe(true);
      expect(await committedTotal(kafka, setup.group, setup.topic)).toBe(committedAtOutage);
      expect(w.child.exitCode).toBeNull();
      before.forEach((v, k) => during.set(k, v));
      await s3.start();
      await waitForCommitted(kafka, setup.group, setup.topic, 120_000);
      await expectArchivedExactlyOnce(setup, during);
    } finally {
      await s3.start();
    }
    expect(await readDeadLetters(kafkaFacade(brokers), setup.dlqTopic)).toEqual([]);
    const metrics = await (await fetch(metricsUrl)).text();
    expect(metricValue(metrics, 'spanledger_archive_upload_failures_total')).toBeGreaterThan(0);
    w.kill('SIGTERM');
    await expectCleanExit(w);
  });

  it('dead-letters hostile input byte for byte and archives the valid spans around it once', async () => {
    const setup = await createArchiveSetup(kafka, brokers, s3, 1, { MAX_MESSAGE_BYTES: '4096' });
    const before = await produceMixedSpans(kafka, setup.topic, { json: 100, otlp: 3, spansPerRequest: 4, tenants: 2 });
    const bad = malformedRecords(tenantIdFor(0), 4096);
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic: setup.topic, messages: bad.map((b, i) => ({ key: `bad-${i}`, value: b.value, headers: { ...b.headers, 'x-origin': `case-${b.kind}` } })) });
    await producer.disconnect();
    const after = await produceMixedSpans(kafka, setup.topic, { json: 100, otlp: 3, spansPerRequest: 4, tenants: 2, from: 1000 });
    const w = startWorker(setup);
    await w.waitForLog('worker started');
    await waitForCommitted(kafka, setup.group, setup.topic);
    after.forEach((v, k) => before.set(k, v));
    await expectArchivedExactlyOnce(setup, before);
    const letters = await readDeadLetters(kafkaFacade(brokers), setup.dlqTopic);
    expect(letters.map((l) => l.errorClass)).toEqual(bad.map((b) => b.kind));
    letters.forEach((l, i) => {
      expect(l.source).toEqual({ topic: setup.topic, partition: 0, offset: String(103 + i) });
      expect(l.key).toBe(`bad-${i}`);
      expect(l.value).toBe(bad[i]!.value.toString('utf8'));
      expect(l.headers['x-origin']).toBe(`case-${bad[i]!.kind}`);
      expect(l.stage).toBe('DECODE');
    });
    expect(w.child.exitCode).toBeNull();
    w.kill('SIGTERM');
    await expectCleanExit(w);
  });
});
