/**
 * Every byte a broker can deliver is possible input: each hostile record below is either stored
 * (when valid) or dead-lettered once with its reason, byte for byte, and the worker keeps going
 * (alive, lag 0). Compression with other producers is in compression.test.ts.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { IHeaders, Kafka } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { DLQ_HEADERS } from '../../src/kafka/dead-letter.js';
import { headersInOrder, orderedHeaders, type HeaderList } from '../../src/kafka/ordered-headers.js';
import type { QuarantineEntry } from '../../src/kafka/quarantine.js';
import { generateSignal, generateSpan, tenantIdFor } from '../../src/model/generate.js';
import type { RecordHeaders } from '../../src/model/headers.js';
import { createTopic, kafkaClient, metricValue, readSpanLog, tempDir, uniqueName, waitForCommitted, WorkerProcess, kafkaClientsUnderTest, useKafkaClient } from '../support/harness.js';

const brokers = inject('kafkaBrokers');
let kafka: Kafka;
const workers: WorkerProcess[] = [];
const dirs: string[] = [];

beforeAll(() => {
  kafka = kafkaClient(brokers);
});

afterAll(async () => {
  for (const w of workers) if (w.child.exitCode === null) w.kill('SIGKILL');
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

interface Case {
  name: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: HeaderList;
  /** undefined: must be stored; otherwise the dead-letter reason class. */
  rejectedAs?: string;
  /** For stored spans: the spanId and the tenant folder it must land in. */
  spanId?: string;
  tenantId?: string;
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const tenant = tenantIdFor(1);
const upperTenant = 'abcdef01-2345-4678-9abc-def0123456ab';

function spanCase(name: string, i: number, opts: { headers?: HeaderList; key?: Buffer | null; tenantField?: string | null; tenantStored?: string } = {}): Case {
  const span = generateSpan(tenant, 10_000 + i, Date.UTC(2026, 10, 24, 10));
  const body: Record<string, unknown> = { ...span };
  if (opts.tenantField === null) delete body.tenantId;
  else if (opts.tenantField !== undefined) body.tenantId = opts.tenantField;
  return { name, key: opts.key === undefined ? Buffer.from(`k${i}`) : opts.key, value: json(body), headers: opts.headers ?? [], spanId: span.spanId, tenantId: opts.tenantStored ?? tenant };
}

function spanCases(maxMessageBytes: number): Case[] {
  const valid = generateSpan(tenant, 1, Date.UTC(2026, 10, 24, 10));
  const manyHeaders: HeaderList = Array.from({ length: 20_000 }, (_, i) => [`h${i}`, i % 2 ? null : Buffer.from([i & 0xff])]);
  const bigAttribute = generateSpan(tenant, 10_900, Date.UTC(2026, 10, 24, 10));
  const bigBody = { ...bigAttribute, attributes: { ...bigAttribute.attributes, blob: 'x'.repeat(maxMessageBytes - 2_000) } };
  const invalidUtf8 = Buffer.concat([json(valid).subarray(0, 30), Buffer.from([0xc3, 0x28, 0xff]), json(valid).subarray(30)]);
  return [
    spanCase('null header value', 1, { headers: [['x-null', null]] }),
    spanCase('empty header value', 2, { headers: [['x-empty', Buffer.alloc(0)]] }),
    spanCase('binary header value', 3, { headers: [['x-bin', Buffer.from([0xff, 0x00, 0xfe, 0x80])]] }),
    spanCase('repeated header keys, interleaved', 4, { headers: [['a', Buffer.from('1')], ['b', null], ['a', Buffer.from('2')], ['a', Buffer.from([0xff])]] }),
    spanCase('20,000 headers', 5, { headers: manyHeaders }),
    spanCase('null key', 6, { key: null }),
    spanCase('binary key', 7, { key: Buffer.from([0x00, 0xff, 0x10]) }),
    spanCase('tenant id in upper case (field)', 8, { tenantField: upperTenant.toUpperCase(), tenantStored: upperTenant }),
    spanCase('tenant id only in a header', 9, { tenantField: null, headers: [['tenant-id', Buffer.from(tenant)]] }),
    spanCase('tenant id in an upper-case header only', 10, { tenantField: null, headers: [['tenant-id', Buffer.from(upperTenant.toUpperCase())]], tenantStored: upperTenant }),
    spanCase('null tenant-id header next to the field', 11, { headers: [['tenant-id', null]] }),
    { ...spanCase('huge valid span (just under the limit)', 12), value: json(bigBody), spanId: bigAttribute.spanId },
    { name: 'tombstone', key: Buffer.from('gone'), value: null, headers: [], rejectedAs: 'EmptyRecord' },
    { name: 'empty value', key: Buffer.from('e'), value: Buffer.alloc(0), headers: [['x', Buffer.from([0xff])]], rejectedAs: 'EmptyRecord' },
    { name: 'binary garbage', key: Buffer.from([0xde, 0xad]), value: Buffer.from([0xff, 0xfe, 0x00, 0x01, 0x9c, 0x80, 0xc0]), headers: [['x', null], ['x', Buffer.from([0])]], rejectedAs: 'InvalidUtf8' },
    { name: 'invalid UTF-8 inside JSON', key: null, value: invalidUtf8, headers: [], rejectedAs: 'InvalidUtf8' },
    { name: 'deeply nested JSON', key: null, value: Buffer.from(`${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}`), headers: [], rejectedAs: 'SchemaViolation' },
    { name: 'huge field name', key: null, value: json({ ...valid, ['f'.repeat(300_000)]: 1 }), headers: [], rejectedAs: 'SchemaViolation' },
    { name: 'huge field value', key: null, value: json({ ...valid, name: 'n'.repeat(300_000) }), headers: [], rejectedAs: 'SchemaViolation' },
    { name: 'over MAX_MESSAGE_BYTES', key: null, value: json({ ...bigBody, attributes: { blob: 'y'.repeat(maxMessageBytes) } }), headers: [], rejectedAs: 'RecordTooLarge' },
    { name: 'tenant only in a null header', key: null, value: json({ ...valid, tenantId: undefined }), headers: [['tenant-id', null]], rejectedAs: 'MissingTenantId' },
    { name: 'tenant header not UTF-8', key: null, value: json({ ...valid, tenantId: undefined }), headers: [['tenant-id', Buffer.from([0xff, 0xfe])]], rejectedAs: 'InvalidTenantId' },
    { name: 'repeated tenant headers that disagree', key: null, value: json({ ...valid, tenantId: undefined }), headers: [['tenant-id', Buffer.from(tenant)], ['tenant-id', Buffer.from(tenantIdFor(2))]], rejectedAs: 'InvalidTenantId' },
    { name: 'tenant header differs from field', key: null, value: json(valid), headers: [['tenant-id', Buffer.from(tenantIdFor(3))]], rejectedAs: 'TenantMismatch' },
  ];
}

async function produce(topic: string, cases: Array<Pick<Case, 'key' | 'value' | 'headers'>>, partition = 0): Promise<void> {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    // One request per record: several of them are close to the broker's size limit.
    for (const c of cases) {
      await producer.send({ topic, acks: -1, messages: [{ partition, key: c.key, value: c.value, headers: headersInOrder(c.headers) as IHeaders }] });
    }
  } finally {
    await producer.disconnect();
  }
}

interface Raw {
  key: Buffer | null;
  value: Buffer | null;
  headers: HeaderList;
}

/** Every record of a topic, as bytes, with headers in wire order. */
async function readAll(topic: string, expected: number, timeoutMs = 60_000): Promise<Raw[]> {
  const consumer = kafka.consumer({ groupId: uniqueName('reader'), maxBytes: 50 << 20, maxBytesPerPartition: 20 << 20 });
  const out: Raw[] = [];
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      out.push({ key: message.key, value: message.value, headers: orderedHeaders(message.headers as RecordHeaders) });
    },
  });
  const deadline = Date.now() + timeoutMs;
  while (out.length < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  // A little longer, to see any duplicate.
  await new Promise((r) => setTimeout(r, 1_000));
  await consumer.disconnect();
  return out;
}

const header = (r: Raw, name: string) => {
  const v = r.headers.find(([k]) => k === name)?.[1];
  return v === undefined || v === null ? undefined : v.toString();
};
const isDlqHeader = (name: string) => name.startsWith('__connect.errors.') || name.startsWith('spanledger.dlq.');
const hex = (b: Buffer | string | null) => (b === null ? null : Buffer.from(b).toString('hex'));
const asHex = (list: HeaderList) => list.map(([k, v]) => [k, hex(v)]);

/**
 * Each case with `rejectedAs` (case i was produced at offset i) is in the dead-letter topic once,
 * with that reason (capped at 1 KiB) and its key, value and headers, in order, byte for byte.
 */
async function expectDeadLetteredOnce(dlqTopic: string, cases: Case[]): Promise<void> {
  const rejected = cases.filter((c) => c.rejectedAs !== undefined);
  const letters = await readAll(dlqTopic, rejected.length);
  expect(letters.length).toBe(rejected.length);
  const byOffset = new Map(letters.map((l) => [Number(header(l, DLQ_HEADERS.offset)), l]));
  expect(byOffset.size).toBe(rejected.length);
  cases.forEach((c, offset) => {
    if (c.rejectedAs === undefined) return;
    const letter = byOffset.get(offset);
    expect(letter, c.name).toBeDefined();
    expect(header(letter!, DLQ_HEADERS.errorClass), c.name).toBe(c.rejectedAs);
    expect(header(letter!, DLQ_HEADERS.message)!.length, c.name).toBeLessThanOrEqual(1024);
    expect(hex(letter!.key), c.name).toBe(hex(c.key));
    expect(hex(letter!.value), c.name).toBe(hex(c.value));
    expect(asHex(letter!.headers.filter(([k]) => !isDlqHeader(k))), c.name).toEqual(asHex(c.headers));
  });
}

async function metrics(w: WorkerProcess): Promise<string> {
  const started = await w.waitForLog('worker started');
  const res = await fetch(`http://127.0.0.1:${String(started.metricsPort)}/metrics`);
  return res.text();
}

async function readyz(w: WorkerProcess): Promise<{ status: number; body: string }> {
  const started = await w.waitForLog('worker started');
  const res = await fetch(`http://127.0.0.1:${String(started.metricsPort)}/readyz`);
  return { status: res.status, body: await res.text() };
}

describe.each(kafkaClientsUnderTest())('hostile input on the span topic on %s', (client) => {
  useKafkaClient(client);
  it('stores every valid record once, dead-letters every invalid one once byte for byte, and keeps going', async () => {
    const maxMessageBytes = 600_000;
    const topic = uniqueName('hostile-spans');
    const dlqTopic = `${topic}.dlq`;
    const group = uniqueName('group');
    const dir = tempDir('spanlog');
    dirs.push(dir);
    await createTopic(kafka, topic, 1);
    const cases = spanCases(maxMessageBytes);
    // 1,000 schema-invalid spans of ~1.2 KB under one key, then one valid span: their dead
    // letters (1.2 MB) do not fit one produce request and must be split under the DLQ's limit.
    const padded = generateSpan(tenant, 20_000, Date.UTC(2026, 10, 24, 10));
    for (let i = 0; i < 1_000; i += 1) {
      cases.push({ name: `invalid #${i}`, key: Buffer.from('same-key'), value: json({ ...padded, traceId: `bad-${i}`, attributes: { pad: 'p'.repeat(1_100) } }), headers: [['n', Buffer.from(String(i))]], rejectedAs: 'SchemaViolation' });
    }
    cases.push(spanCase('valid span behind 1,000 invalid ones', 13, { key: Buffer.from('same-key') }));
    await produce(topic, cases);

    const w = new WorkerProcess('spans', {
      KAFKA_BROKERS: brokers,
      SPANS_TOPIC: topic,
      SPANS_DLQ_TOPIC: dlqTopic,
      SPANS_GROUP: group,
      SPANLOG_DIR: dir,
      QUARANTINE_DIR: path.join(dir, '..', `${path.basename(dir)}-quarantine`),
      MAX_MESSAGE_BYTES: String(maxMessageBytes),
      BATCH_MAX_AGE_MS: '200',
    });
    workers.push(w);
    await waitForCommitted(kafka, group, topic, 120_000);
    expect(w.child.exitCode).toBeNull();

    // Valid ones: once each, in their tenant's (lower-case) folder.
    const stored = cases.filter((c) => c.rejectedAs === undefined);
    const lines = readSpanLog(dir);
    const counts = new Map<string, number>();
    for (const l of lines) counts.set(l.line.spanId, (counts.get(l.line.spanId) ?? 0) + 1);
    for (const c of stored) {
      expect(counts.get(c.spanId!), c.name).toBe(1);
      const line = lines.find((l) => l.line.spanId === c.spanId)!;
      expect(line.tenantId, c.name).toBe(c.tenantId);
      expect(line.line.tenantId, c.name).toBe(c.tenantId);
    }
    expect(lines.length).toBe(stored.length);

    await expectDeadLetteredOnce(dlqTopic, cases);

    const text = await metrics(w);
    expect(metricValue(text, 'spanledger_records_dead_lettered_total')).toBe(cases.filter((c) => c.rejectedAs !== undefined).length);
    expect(metricValue(text, 'spanledger_dead_letters_quarantined_total')).toBe(0);
    expect((await readyz(w)).status).toBe(200);
    w.kill('SIGTERM');
    expect((await w.exited).code).toBe(0);
  });

  it('quarantines a dead letter the dead-letter topic refuses for good, commits, and goes on', async () => {
    const topic = uniqueName('hostile-quarantine');
    const dlqTopic = `${topic}.dlq`;
    const group = uniqueName('group');
    const dir = tempDir('spanlog');
    const quarantineDir = tempDir('quarantine');
    dirs.push(dir, quarantineDir);
    await createTopic(kafka, topic, 2);
    // A dead-letter topic someone made with a small limit: larger dead letters can never go there.
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic: dlqTopic, numPartitions: 1, configEntries: [{ name: 'max.message.bytes', value: '20000' }] }], waitForLeaders: true });
    await admin.disconnect();

    const big: Case = { name: 'big invalid', key: Buffer.from([1, 2, 3]), value: Buffer.from(`{"oops": "${'z'.repeat(50_000)}"`), headers: [['h', null], ['h', Buffer.from([0xff])]], rejectedAs: 'InvalidJson' };
    const small: Case = { name: 'small invalid', key: null, value: Buffer.from('not json'), headers: [], rejectedAs: 'InvalidJson' };
    const after = spanCase('valid after them', 20);
    const other = spanCase('valid on the other partition', 21);
    await produce(topic, [big, small, after], 0);
    await produce(topic, [other], 1);

    const w = new WorkerProcess('spans', {
      KAFKA_BROKERS: brokers,
      SPANS_TOPIC: topic,
      SPANS_DLQ_TOPIC: dlqTopic,
      SPANS_GROUP: group,
      SPANLOG_DIR: dir,
      QUARANTINE_DIR: quarantineDir,
      BATCH_MAX_AGE_MS: '200',
    });
    workers.push(w);
    await waitForCommitted(kafka, group, topic, 60_000);
    expect(w.child.exitCode).toBeNull();
    expect(readSpanLog(dir).map((l) => l.line.spanId).sort()).toEqual([after.spanId, other.spanId].sort());

    // The small one went to the topic; the big one is in the quarantine file, bytes intact.
    const letters = await readAll(dlqTopic, 1, 10_000);
    expect(letters.map((l) => hex(l.value))).toEqual([hex(small.value)]);
    const file = path.join(quarantineDir, dlqTopic, `${topic}+0.jsonl`);
    const entries = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as QuarantineEntry);
    expect(entries.length).toBe(1);
    const [entry] = entries;
    expect(entry!.errorClass).toBe('InvalidJson');
    expect(entry!.offset).toBe('0');
    expect(entry!.refusal).toMatch(/DeadLetterTooLarge|MESSAGE_TOO_LARGE/);
    expect(Buffer.from(entry!.value!, 'base64').equals(big.value!)).toBe(true);
    expect(Buffer.from(entry!.key!, 'base64').equals(big.key!)).toBe(true);
    expect(entry!.headers).toEqual([['h', null], ['h', Buffer.from([0xff]).toString('base64')]]);

    const text = await metrics(w);
    expect(metricValue(text, 'spanledger_dead_letters_quarantined_total')).toBe(1);
    const ready = await readyz(w);
    expect(ready.status).toBe(200);
    expect(ready.body).toMatch(/1 dead letter\(s\) quarantined/);
    expect(w.lines.some((l) => l.includes('quarantined them on disk'))).toBe(true);
    w.kill('SIGTERM');
    expect((await w.exited).code).toBe(0);
  });
});

describe.each(kafkaClientsUnderTest())('hostile input on the signal topic on %s', (client) => {
  useKafkaClient(client);
  it('dead-letters every invalid signal once, byte for byte, and keeps going (no store is needed for that)', async () => {
    const topic = uniqueName('hostile-signals');
    const dlqTopic = `${topic}.dlq`;
    const group = uniqueName('group');
    const dir = tempDir('duckdb');
    dirs.push(dir);
    await createTopic(kafka, topic, 1);
    const signal = generateSignal(tenant, 1);
    const cases: Case[] = [
      { name: 'tombstone', key: Buffer.from('k'), value: null, headers: [['x', null]], rejectedAs: 'EmptyRecord' },
      { name: 'binary garbage', key: Buffer.from([0xff]), value: Buffer.from([0x80, 0x81, 0xff]), headers: [['b', Buffer.from([0xfe])], ['b', null]], rejectedAs: 'InvalidUtf8' },
      { name: 'deep metadata', key: null, value: Buffer.from(JSON.stringify({ ...signal, metadata: {} }).replace('"metadata":{}', `"metadata":${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}`)), headers: [], rejectedAs: 'SchemaViolation' },
      { name: 'huge field name', key: null, value: json({ ...signal, ['q'.repeat(200_000)]: 1 }), headers: [], rejectedAs: 'SchemaViolation' },
      { name: 'tenant only in a null header', key: null, value: json({ ...signal, tenantId: undefined }), headers: [['tenant-id', null]], rejectedAs: 'MissingTenantId' },
      { name: 'tenant header differs', key: null, value: json(signal), headers: [['tenant-id', Buffer.from(tenantIdFor(4))]], rejectedAs: 'TenantMismatch' },
      { name: '20,000 headers', key: null, value: Buffer.from('{'), headers: Array.from({ length: 20_000 }, (_, i) => [`k${i % 7}`, i % 3 ? Buffer.from([i & 0xff]) : null] as [string, Buffer | null]), rejectedAs: 'InvalidJson' },
    ];
    await produce(topic, cases);
    const w = new WorkerProcess('signals', {
      KAFKA_BROKERS: brokers,
      SIGNALS_TOPIC: topic,
      SIGNALS_DLQ_TOPIC: dlqTopic,
      SIGNALS_GROUP: group,
      DUCKDB_DIR: dir,
      // No TigerBeetle is needed: nothing here reaches a store.
      TB_ADDRESS: '127.0.0.1:1',
      BATCH_MAX_AGE_MS: '200',
    });
    workers.push(w);
    await waitForCommitted(kafka, group, topic, 60_000);
    expect(w.child.exitCode).toBeNull();
    await expectDeadLetteredOnce(dlqTopic, cases);
    w.kill('SIGTERM');
    await w.exited;
  });
});
