import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { IHeaders, Kafka, KafkaMessage } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { DLQ_HEADERS } from '../../src/kafka/dead-letter.js';
import { CLI, ROOT, createTopic, kafkaClient, uniqueName, kafkaClientsUnderTest, useKafkaClient } from '../support/harness.js';

const run = promisify(execFile);
const brokers = inject('kafkaBrokers');
const kafka: Kafka = kafkaClient(brokers);

/** Reads the first `count` records of a one-partition topic. */
async function readTopic(topic: string, count: number): Promise<KafkaMessage[]> {
  const consumer = kafka.consumer({ groupId: uniqueName('dlq-replay-reader'), maxWaitTimeInMs: 250 });
  await consumer.connect();
  const out: KafkaMessage[] = [];
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`read ${out.length} of ${count} records of ${topic}`)), 60_000);
      void consumer.run({
        autoCommit: false,
        eachMessage: async ({ message }) => {
          out.push(message);
          if (out.length === count) {
            clearTimeout(timer);
            resolve();
          }
        },
      });
    });
  } finally {
    await consumer.disconnect();
  }
  return out;
}

function cli(args: string[], env: Record<string, string> = {}) {
  return run(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env, KAFKA_BROKERS: brokers, ...env } });
}

describe.each(kafkaClientsUnderTest())('dlq replay on %s', (client) => {
  useKafkaClient(client);
  const dlqTopic = uniqueName('replay.dlq');
  const sourceTopic = uniqueName('replay-source');
  const deadLetterHeaders = (offset: number, reason: string): IHeaders => ({
    [DLQ_HEADERS.topic]: sourceTopic,
    [DLQ_HEADERS.partition]: '0',
    [DLQ_HEADERS.offset]: String(offset),
    [DLQ_HEADERS.connector]: 'spanledger-spans',
    [DLQ_HEADERS.task]: 'test-worker',
    [DLQ_HEADERS.stage]: 'DECODE',
    [DLQ_HEADERS.errorClass]: reason,
    [DLQ_HEADERS.message]: 'why it failed',
    [DLQ_HEADERS.failedAt]: new Date().toISOString(),
    [DLQ_HEADERS.worker]: 'test-worker',
    [DLQ_HEADERS.originalTimestamp]: '1767225600000',
  });
  // The source records' own keys, values and headers: what a replay must send back, byte for byte.
  const originals: Array<{ key: Buffer | null; value: Buffer | null; headers: Record<string, Buffer | null | Array<Buffer | null>> }> = [
    {
      key: Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x0a, 0xc3]),
      value: Buffer.from([0xc3, 0x28, 0x00, 0xff, 0x7b]),
      headers: {
        'x-bin': Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00]),
        'x-null': null,
        'x-rep': [Buffer.from('first'), Buffer.from([0xff, 0xfe]), null, Buffer.alloc(0), Buffer.from('last')],
        'tenant-id': Buffer.from('00000000-0000-4000-8000-000000000001'),
      },
    },
    { key: null, value: null, headers: { 'x-tombstone': Buffer.from('yes') } }, // null key, tombstone
    { key: Buffer.from('text-key'), value: Buffer.alloc(0), headers: { 'x-empty': Buffer.alloc(0) } }, // empty value
    { key: Buffer.from('no-headers'), value: Buffer.from('{"not":"a span"}'), headers: {} },
  ];

  beforeAll(async () => {
    await createTopic(kafka, dlqTopic, 1);
    await createTopic(kafka, sourceTopic, 1);
    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    try {
      const messages = originals.map((o, i) => ({ key: o.key, value: o.value, headers: { ...(o.headers as IHeaders), ...deadLetterHeaders(100 + i, i === 3 ? 'SchemaViolation' : 'InvalidJson') } }));
      // An earlier replay's mark is replaced, not repeated.
      messages[3]!.headers['spanledger.replayed.from'] = 'older.dlq/0/9';
      await producer.send({ topic: dlqTopic, acks: -1, messages });
    } finally {
      await producer.disconnect();
    }
  });

  afterAll(async () => {
    const admin = kafka.admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [dlqTopic, sourceTopic] }).catch(() => undefined);
    await admin.disconnect();
  });

  it('dlq inspect --json shows every record, binary bytes as base64 and null as null', async () => {
    const { stdout } = await cli(['dlq', 'inspect', '--topic', dlqTopic, '--json']);
    const rows = stdout.trim().split('\n').map((l) => JSON.parse(l) as { offset: string; errorClass: string; key: unknown; value: unknown; headers: Array<[string, unknown]> });
    expect(rows.map((r) => [r.offset, r.errorClass])).toEqual([['0', 'InvalidJson'], ['1', 'InvalidJson'], ['2', 'InvalidJson'], ['3', 'SchemaViolation']]);
    expect(rows[0]!.key).toEqual({ base64: originals[0]!.key!.toString('base64') });
    expect(rows[0]!.value).toEqual({ base64: originals[0]!.value!.toString('base64') });
    expect(rows[0]!.headers.filter(([name]) => name.startsWith('x-'))).toEqual([
      ['x-bin', { base64: '3q2+7wA=' }],
      ['x-null', null],
      ['x-rep', 'first'],
      ['x-rep', { base64: '//4=' }],
      ['x-rep', null],
      ['x-rep', ''],
      ['x-rep', 'last'],
    ]);
    expect([rows[1]!.key, rows[1]!.value, rows[2]!.value, rows[3]!.value]).toEqual([null, null, '', '{"not":"a span"}']);
    const table = await cli(['dlq', 'inspect', '--topic', dlqTopic]);
    expect(table.stdout).toContain(`4 dead-lettered record(s) in ${dlqTopic}`);
  });

  it('sends key, value and headers back byte for byte, repeated headers in order, dead-letter headers removed', async () => {
    const { stdout } = await cli(['dlq', 'replay', '--topic', dlqTopic]);
    expect(stdout).toContain('replayed 4 record(s)');
    const replayed = await readTopic(sourceTopic, originals.length);
    replayed.forEach((m, i) => {
      const o = originals[i]!;
      expect(m.key).toEqual(o.key);
      expect(m.value).toEqual(o.value);
      expect(m.headers).toEqual({ ...o.headers, 'spanledger.replayed.from': Buffer.from(`${dlqTopic}/0/${i}`) });
      // Header order as sent: the record's own headers first, the replay mark last.
      expect(Object.keys(m.headers!)).toEqual([...Object.keys(o.headers), 'spanledger.replayed.from']);
    });
    expect(replayed[0]!.headers!['x-rep']).toEqual([Buffer.from('first'), Buffer.from([0xff, 0xfe]), null, Buffer.alloc(0), Buffer.from('last')]);
  });
});

describe.each(kafkaClientsUnderTest())('produce on %s', (client) => {
  useKafkaClient(client);
  it('writes to SPANS_TOPIC when no --topic is given', async () => {
    const topic = uniqueName('produce-env-topic');
    const { stdout } = await cli(['produce', 'spans', '--count', '30', '--tenants', '2'], { SPANS_TOPIC: topic, TOPIC_PARTITIONS: '1' });
    expect(stdout).toContain(`produced 30 spans (+0 malformed) for 2 tenants to ${topic}`);
    const admin = kafka.admin();
    await admin.connect();
    try {
      const offsets = await admin.fetchTopicOffsets(topic);
      expect(offsets.reduce((n, p) => n + Number(p.high), 0)).toBe(30);
      await admin.deleteTopics({ topics: [topic] });
    } finally {
      await admin.disconnect();
    }
  });
});
