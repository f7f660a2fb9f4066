import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RecordRejectedError, RetriableError } from '../../../src/errors.js';
import { DeadLetterProducer } from '../../../src/kafka/dead-letter.js';
import type { KafkaFacade, OutgoingRecord } from '../../../src/kafka/facade.js';
import type { DeadLetter } from '../../../src/pipeline/consumer-port.js';
import { Quarantine, type QuarantineEntry } from '../../../src/kafka/quarantine.js';

/** A producer that refuses values over `refuseOver` bytes for good, or fails transiently on demand. */
class FakeProducer {
  readonly requests: Array<{ topic: string; messages: OutgoingRecord[] }> = [];
  transientFailures = 0;
  refuseOver = Number.POSITIVE_INFINITY;
  failWith: unknown;

  async connect(): Promise<void> {}
  async disconnect(): Promise<void> {}
  async send(topic: string, messages: OutgoingRecord[]): Promise<void> {
    const record = { topic, messages };
    if (this.failWith !== undefined) throw this.failWith;
    if (this.transientFailures > 0) {
      this.transientFailures -= 1;
      throw Object.assign(new Error('Connection timeout'), { name: 'KafkaJSConnectionError', retriable: true });
    }
    if (record.messages.some((m) => (m.value as Buffer).length > this.refuseOver)) {
      throw Object.assign(new Error('The request included a message larger than the max message size the server will accept'), { name: 'KafkaJSProtocolError', type: 'MESSAGE_TOO_LARGE', retriable: false });
    }
    this.requests.push(record);
  }
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function setup(maxMessageBytes: number) {
  const fake = new FakeProducer();
  const kafka = { producer: () => fake } as unknown as KafkaFacade;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'quarantine-'));
  dirs.push(dir);
  const seen: string[] = [];
  const quarantine = new Quarantine(dir, (_letters, refusal) => seen.push(refusal));
  const producer = new DeadLetterProducer(kafka, 'spans.dlq', { group: 'g', workerId: 'w' }, quarantine);
  return { fake, producer, dir, quarantine, seen, start: () => producer.start(maxMessageBytes) };
}

function letter(offset: number, valueBytes: number): DeadLetter {
  return {
    topic: 'spans',
    partition: 3,
    stage: 'DECODE',
    error: new RecordRejectedError('InvalidJson', 'value is not JSON'),
    source: { offset: BigInt(offset), key: Buffer.from([0xff, offset & 0xff]), value: Buffer.alloc(valueBytes, 0x7b), headers: { a: [Buffer.from('1'), null] }, timestamp: '1700000000000' },
  };
}

function quarantined(dir: string): QuarantineEntry[] {
  const file = path.join(dir, 'spans.dlq', 'spans+3.jsonl');
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as QuarantineEntry);
}

describe('DeadLetterProducer', () => {
  it('splits a large set of dead letters into requests under the topic limit, in order', async () => {
    const s = setup(20_000);
    await s.start();
    const letters = Array.from({ length: 200 }, (_, i) => letter(i, 1_200));
    await s.producer.send(letters);
    expect(letters.every((l) => l.outcome === 'delivered')).toBe(true);
    expect(s.fake.requests.length).toBeGreaterThan(10);
    const sent = s.fake.requests.flatMap((r) => r.messages);
    expect(sent.map((m) => (m.key as Buffer)[1])).toEqual(letters.map((_, i) => i & 0xff));
    for (const r of s.fake.requests) {
      const bytes = r.messages.reduce((n, m) => n + (m.value as Buffer).length, 0);
      expect(bytes).toBeLessThan(20_000);
    }
    // The record's own headers first, in wire order, then the reason headers.
    const headers = sent[0]!.headers!;
    expect(headers.slice(0, 2)).toEqual([['a', Buffer.from('1')], ['a', null]]);
    expect(headers.find(([k]) => k === '__connect.errors.class.name')?.[1]).toBe('InvalidJson');
  });

  it('quarantines only the letters the broker refuses for good and delivers the rest', async () => {
    const s = setup(1_000_000);
    await s.start();
    s.fake.refuseOver = 5_000;
    const letters = [letter(0, 100), letter(1, 9_000), letter(2, 100)];
    await s.producer.send(letters);
    expect(letters.map((l) => l.outcome)).toEqual(['delivered', 'quarantined', 'delivered']);
    const entries = quarantined(s.dir);
    expect(entries.map((e) => e.offset)).toEqual(['1']);
    expect(entries[0]!.refusal).toMatch(/^MESSAGE_TOO_LARGE/);
    expect(Buffer.from(entries[0]!.value!, 'base64').equals(letters[1]!.source.value!)).toBe(true);
    expect(entries[0]!.headers).toEqual([['a', Buffer.from('1').toString('base64')], ['a', null]]);
    expect(s.quarantine.detail()).toMatch(/^1 dead letter\(s\) quarantined under /);
  });

  it('quarantines a letter that cannot fit the topic without sending it', async () => {
    const s = setup(10_000);
    await s.start();
    const letters = [letter(0, 50_000), letter(1, 10)];
    await s.producer.send(letters);
    expect(letters.map((l) => l.outcome)).toEqual(['quarantined', 'delivered']);
    expect(s.seen[0]).toMatch(/^DeadLetterTooLarge/);
    expect(s.fake.requests.flatMap((r) => r.messages).length).toBe(1);
  });

  it('a transient failure is retriable and the retry does not send delivered letters again', async () => {
    const s = setup(3_000);
    await s.start();
    const letters = [letter(0, 2_000), letter(1, 2_000), letter(2, 2_000)];
    s.fake.transientFailures = 0;
    // First request goes through, the second fails transiently.
    const send = s.fake.send.bind(s.fake);
    let calls = 0;
    s.fake.send = async (topic, records) => {
      calls += 1;
      if (calls === 2) throw Object.assign(new Error('Request timed out'), { name: 'KafkaJSRequestTimeoutError', retriable: true });
      return send(topic, records);
    };
    await expect(s.producer.send(letters)).rejects.toBeInstanceOf(RetriableError);
    expect(letters.map((l) => l.outcome)).toEqual(['delivered', undefined, undefined]);
    await s.producer.send(letters);
    expect(letters.every((l) => l.outcome === 'delivered')).toBe(true);
    expect(s.fake.requests.flatMap((r) => r.messages).length).toBe(3);
    expect(quarantined(s.dir)).toEqual([]);
  });

  it('a topic that is gone (after kafkajs gave up retrying) quarantines the whole set', async () => {
    const s = setup(1_000_000);
    await s.start();
    const cause = Object.assign(new Error('This server does not host this topic-partition'), { type: 'UNKNOWN_TOPIC_OR_PARTITION', retriable: true });
    s.fake.failWith = Object.assign(new Error('Number of retries exceeded'), { name: 'KafkaJSNumberOfRetriesExceeded', retriable: false, cause });
    const letters = [letter(0, 10), letter(1, 10)];
    await s.producer.send(letters);
    expect(letters.map((l) => l.outcome)).toEqual(['quarantined', 'quarantined']);
    expect(quarantined(s.dir).map((e) => e.offset)).toEqual(['0', '1']);
  });
});
