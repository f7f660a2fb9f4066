import { randomBytes } from 'node:crypto';
import { createRecord, defaultPartitioner, murmur2, type MessageRecord } from '@platformatic/kafka';
import kafkajsMurmur2 from 'kafkajs/src/producer/partitioners/default/murmur2.js';
import { Partitioners, type PartitionerArgs } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import type { HeaderList, OutgoingRecord } from '../../../src/kafka/facade.js';
import { orderedHeaders } from '../../../src/kafka/ordered-headers.js';
import { retryDelay } from '../../../src/kafka/platformatic/options.js';
import { JavaCompatiblePartitioner, keyedPartition } from '../../../src/kafka/partitioner.js';
import { headersInWireOrder, toPlatformaticMessage } from '../../../src/kafka/platformatic/producer.js';
import type { RecordHeaders } from '../../../src/model/headers.js';
import { decodeRecord } from '../../support/kafkajs-record.js';

/** The partition kafkajs' DefaultPartitioner (Java's murmur2 partitioner) gives a keyed record. */
function kafkajsPartition(key: Buffer | string, partitionCount: number): number {
  const partitioner = Partitioners.DefaultPartitioner();
  const partitionMetadata = Array.from({ length: partitionCount }, (_, partitionId) => ({ partitionId, leader: 1 })) as PartitionerArgs['partitionMetadata'];
  return partitioner({ topic: 't', partitionMetadata, message: { key, value: null } });
}

/** One record as @platformatic/kafka's record encoder writes it, decoded by kafkajs' consumer decoder. */
function roundTrip(record: OutgoingRecord) {
  const message = toPlatformaticMessage('t', record);
  const encoded = createRecord(message as unknown as MessageRecord, 0, message.timestamp ?? 0n).buffer;
  return decodeRecord(encoded);
}

describe('@platformatic/kafka producer adapter', () => {
  it('puts a keyed record on the partition kafkajs (and Java) would: murmur2, sign bit masked', () => {
    const keys: Array<Buffer | string> = ['tenant-1', 'tenant-42', '', 'é', ...Array.from({ length: 500 }, (_, i) => randomBytes(1 + (i % 40)))];
    let defaultDisagrees = 0;
    for (const key of keys) {
      const bytes = typeof key === 'string' ? Buffer.from(key) : key;
      for (const partitions of [1, 3, 6, 7, 12, 64]) {
        expect(keyedPartition(bytes, partitions, murmur2)).toBe(kafkajsPartition(key, partitions));
        // What the client's partitioner hook returns, taken modulo the partition count by the client.
        expect(new JavaCompatiblePartitioner(murmur2).partition('t', bytes) % partitions).toBe(kafkajsPartition(key, partitions));
      }
      // The kafkajs adapter hashes with kafkajs' murmur2: the same function.
      expect(kafkajsMurmur2(bytes)).toBe(murmur2(bytes));
      // @platformatic/kafka's own default partitioner (murmur2 >>> 0) puts many keys elsewhere.
      if (defaultPartitioner({ topic: 't' }, bytes) % 6 !== kafkajsPartition(key, 6)) defaultDisagrees += 1;
    }
    expect(defaultDisagrees).toBeGreaterThan(keys.length / 10);
  });

  it('spreads records without a key over the partitions in turn', () => {
    const partitioner = new JavaCompatiblePartitioner(murmur2);
    expect(Array.from({ length: 7 }, () => partitioner.partition('a', undefined) % 3)).toEqual([0, 1, 2, 0, 1, 2, 0]);
    expect(partitioner.partition('b', undefined)).toBe(0);
  });

  it('writes headers in order, with repeated names and null values, byte for byte (decoded by kafkajs)', () => {
    const headers: HeaderList = [
      ['b', 'first'],
      ['a', Buffer.from([0, 255, 1])],
      ['b', null],
      ['b', 'third'],
      ['', ''],
      ['ü', null],
    ];
    const decoded = roundTrip({ key: 'k', value: Buffer.from('v'), headers });
    expect(orderedHeaders(decoded.headers as RecordHeaders)).toEqual(headers.map(([k, v]) => [k, typeof v === 'string' ? Buffer.from(v) : v]));
    expect(decoded.key).toEqual(Buffer.from('k'));
    expect(decoded.value).toEqual(Buffer.from('v'));
  });

  it('keeps every header as its own Map entry, even under one name', () => {
    const map = headersInWireOrder([
      ['x', '1'],
      ['x', '2'],
    ]);
    expect([...map].map(([k, v]) => [k.toString(), v?.toString()])).toEqual([
      ['x', '1'],
      ['x', '2'],
    ]);
  });

  it('writes a null value as null (a tombstone), an empty one as empty, a missing key as null', () => {
    expect(roundTrip({ value: null }).value).toBeNull();
    expect(roundTrip({ key: null, value: '' }).value).toEqual(Buffer.alloc(0));
    expect(roundTrip({ key: null, value: 'x' }).key).toBeNull();
    expect(roundTrip({ key: '', value: 'x' }).key).toEqual(Buffer.alloc(0));
  });

  it('passes partition and timestamp through', () => {
    const message = toPlatformaticMessage('t', { value: 'v', partition: 4, timestamp: '1764000000123' });
    expect(message).toMatchObject({ topic: 't', partition: 4, timestamp: 1764000000123n });
    expect(toPlatformaticMessage('t', { value: 'v' })).not.toHaveProperty('partition');
  });

  it('waits 250 ms, then doubles up to 2 s between tries', () => {
    const delays = [1, 2, 3, 4, 5, 6].map((attempt) => retryDelay({}, 'produce', attempt, 4, new Error('x')));
    expect(delays).toEqual([250, 500, 1000, 2000, 2000, 2000]);
  });
});
