import type { RecordsBatch } from '@platformatic/kafka';
import { describe, expect, it } from 'vitest';
import { headerValues } from '../../../../src/model/headers.js';
import { ORDERED_HEADERS, orderedHeaders } from '../../../../src/kafka/ordered-headers.js';
import { partitionRecords, recordHeaders } from '../../../../src/kafka/platformatic/record-batches.js';

function batch(firstOffset: bigint, deltas: number[], options: { attributes?: number; lastOffsetDelta?: number; firstTimestamp?: bigint; maxTimestamp?: bigint } = {}): RecordsBatch {
  return {
    firstOffset,
    length: 0,
    partitionLeaderEpoch: 0,
    magic: 2,
    crc: 0,
    attributes: options.attributes ?? 0,
    lastOffsetDelta: options.lastOffsetDelta ?? Math.max(0, ...deltas),
    firstTimestamp: options.firstTimestamp ?? 1000n,
    maxTimestamp: options.maxTimestamp ?? 2000n,
    producerId: -1n,
    producerEpoch: 0,
    firstSequence: 0,
    records: deltas.map((d) => ({ length: 0, attributes: 0, timestampDelta: BigInt(d), offsetDelta: d, key: Buffer.from([d]), value: Buffer.from(`v${d}`), headers: [] })),
  };
}

describe('recordHeaders', () => {
  it('keeps every header in wire order, repeated keys as arrays, null values, and odd names as plain keys', () => {
    const wire: Array<[Buffer | null, Buffer | null]> = [
      [Buffer.from('a'), Buffer.from('1')],
      [Buffer.from('9'), null],
      [Buffer.from('a'), null],
      [Buffer.from('__proto__'), Buffer.from('x')],
      [Buffer.from('a'), Buffer.from('3')],
    ];
    const headers = recordHeaders(wire);
    expect(orderedHeaders(headers)).toEqual([
      ['a', Buffer.from('1')],
      ['9', null],
      ['a', null],
      ['__proto__', Buffer.from('x')],
      ['a', Buffer.from('3')],
    ]);
    expect(headers['a']).toEqual([Buffer.from('1'), null, Buffer.from('3')]);
    expect(headers['9']).toBeNull();
    expect(Object.getPrototypeOf(headers)).toBe(Object.prototype);
    expect(headerValues(headers, '__proto__')).toEqual([Buffer.from('x')]);
    // The list is not enumerable: the object reads like kafkajs' own.
    expect(Object.keys(headers)).toEqual(['9', 'a', '__proto__']);
  });

  it('needs no list for one header or none (as the kafkajs patch)', () => {
    expect((recordHeaders([]) as Record<symbol, unknown>)[ORDERED_HEADERS]).toBeUndefined();
    const one = recordHeaders([[Buffer.from('k'), Buffer.from('v')]]);
    expect((one as Record<symbol, unknown>)[ORDERED_HEADERS]).toBeUndefined();
    expect(orderedHeaders(one)).toEqual([['k', Buffer.from('v')]]);
  });
});

describe('partitionRecords', () => {
  it('leaves out records before the fetch offset and control batches, and ends after the last batch', () => {
    const batches = [batch(10n, [0, 1, 2]), batch(13n, [0], { attributes: 1 << 5 }), batch(14n, [0, 1])];
    const { messages, nextOffset } = partitionRecords(batches, 12n);
    expect(messages.map((m) => m.offset)).toEqual([12n, 14n, 15n]);
    expect(messages[0]!.value).toEqual(Buffer.from('v2'));
    expect(messages[0]!.timestamp).toBe('1002');
    expect(nextOffset).toBe(16n);
  });

  it('a response of control records only moves past them without records', () => {
    expect(partitionRecords([batch(7n, [0], { attributes: 1 << 5 })], 7n)).toEqual({ messages: [], nextOffset: 8n });
    expect(partitionRecords([], 7n)).toEqual({ messages: [], nextOffset: undefined });
  });

  it('uses the broker time of a LogAppendTime topic for every record', () => {
    const { messages } = partitionRecords([batch(0n, [0, 1], { attributes: 1 << 3, maxTimestamp: 5555n })], 0n);
    expect(messages.map((m) => m.timestamp)).toEqual(['5555', '5555']);
  });

  it('ends after a compacted batch whose last records were removed', () => {
    expect(partitionRecords([batch(0n, [0, 1], { lastOffsetDelta: 9 })], 0n).nextOffset).toBe(10n);
  });
});
