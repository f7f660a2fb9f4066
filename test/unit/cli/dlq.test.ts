import { describe, expect, it } from 'vitest';
import { deadLetterFromMessage, deadLetterJson, jsonBytes, renderDeadLetterTable, replayMessage } from '../../../src/cli/dlq.js';
import { DLQ_HEADERS } from '../../../src/kafka/dead-letter.js';
import { headersInOrder, orderedHeaders, type HeaderList } from '../../../src/kafka/ordered-headers.js';
import type { OutgoingRecord } from '../../../src/kafka/facade.js';
import type { RecordHeaders } from '../../../src/model/headers.js';
import { decodeRecord, recordEncoder } from '../../support/kafkajs-record.js';


const binaryKey = Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x0a]);
const binaryValue = Buffer.from([0xc3, 0x28, 0x00, 0x01]);
// The source record's own headers: binary, null, empty, repeated (in order), text.
const sourceHeaders = {
  'tenant-id': '00000000-0000-4000-8000-000000000001',
  'x-bin': Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00]),
  'x-null': null,
  'x-empty': Buffer.alloc(0),
  'x-rep': [Buffer.from('one'), Buffer.from([0xff]), null, Buffer.from('three')],
};
const dlqHeaders = {
  [DLQ_HEADERS.topic]: 'spans',
  [DLQ_HEADERS.partition]: '2',
  [DLQ_HEADERS.offset]: '41',
  [DLQ_HEADERS.errorClass]: 'InvalidJson',
  [DLQ_HEADERS.message]: 'not JSON',
  [DLQ_HEADERS.stage]: 'DECODE',
  [DLQ_HEADERS.connector]: 'spanledger-spans',
  [DLQ_HEADERS.task]: 'w1',
  [DLQ_HEADERS.failedAt]: '2026-01-01T00:00:00.000Z',
  [DLQ_HEADERS.worker]: 'w1',
  [DLQ_HEADERS.originalTimestamp]: '1767225600000',
  'spanledger.replayed.from': 'spans.dlq/0/3',
};

/** A dead letter as the consumer of the dead-letter topic gets it (kafkajs' own encoder and decoder). */
function consumed(key: Buffer | null, value: Buffer | null) {
  const message = decodeRecord(recordEncoder()({ key, value, headers: { ...sourceHeaders, ...dlqHeaders } }).buffer);
  return deadLetterFromMessage(0, { ...message, offset: 17n });
}

/** A record to send as kafkajs' producer writes it (headers through the wire-order patch, as the kafkajs adapter sends them). */
function wire(r: OutgoingRecord) {
  return { key: r.key, value: r.value, headers: headersInOrder(r.headers ?? []) };
}

describe('dead letters', () => {
  it('reads the dead-letter fields and keeps the exact bytes, also binary and null ones', () => {
    const r = consumed(binaryKey, binaryValue);
    expect(r.source).toEqual({ topic: 'spans', partition: 2, offset: '41' });
    expect([r.errorClass, r.message, r.stage, r.worker, r.failedAt]).toEqual(['InvalidJson', 'not JSON', 'DECODE', 'w1', '2026-01-01T00:00:00.000Z']);
    expect(r.original.key).toEqual(binaryKey);
    expect(r.original.value).toEqual(binaryValue);
    expect(r.original.headers.filter((h) => h.name.startsWith('x-'))).toEqual([
      { name: 'x-bin', value: Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00]) },
      { name: 'x-null', value: null },
      { name: 'x-empty', value: Buffer.alloc(0) },
      { name: 'x-rep', value: Buffer.from('one') },
      { name: 'x-rep', value: Buffer.from([0xff]) },
      { name: 'x-rep', value: null },
      { name: 'x-rep', value: Buffer.from('three') },
    ]);
    expect(r.headers['x-null']).toBe('');
    expect(r.headers['x-rep']).toBe('one');
    expect(renderDeadLetterTable([r])).toContain('InvalidJson');
  });

  it('replays key, value and headers byte for byte: dead-letter headers out, replayed.from replaced', () => {
    for (const [key, value] of [
      [binaryKey, binaryValue],
      [null, null], // null key, tombstone
      [Buffer.from('k'), Buffer.alloc(0)], // empty value
    ] as const) {
      const sent = decodeRecord(recordEncoder()(wire(replayMessage('spans.dlq', consumed(key, value)))).buffer);
      expect(sent.key).toEqual(key);
      expect(sent.value).toEqual(value);
      expect(sent.headers).toEqual({
        'tenant-id': Buffer.from('00000000-0000-4000-8000-000000000001'),
        'x-bin': Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00]),
        'x-null': null,
        'x-empty': Buffer.alloc(0),
        'x-rep': [Buffer.from('one'), Buffer.from([0xff]), null, Buffer.from('three')],
        'spanledger.replayed.from': Buffer.from('spans.dlq/0/17'),
      });
      expect(Object.keys(sent.headers!)).toEqual(['tenant-id', 'x-bin', 'x-null', 'x-empty', 'x-rep', 'spanledger.replayed.from']);
    }
  });

  it('keeps interleaved repeated headers in wire order through dead letter and replay', () => {
    const list: HeaderList = [['a', Buffer.from('1')], ['b', null], ['a', Buffer.from([0xff])], [DLQ_HEADERS.offset, '5'], ['7', Buffer.from('n')]];
    const message = decodeRecord(recordEncoder()({ key: null, value: Buffer.from('x'), headers: headersInOrder(list) }).buffer);
    const sent = decodeRecord(recordEncoder()(wire(replayMessage('spans.dlq', deadLetterFromMessage(0, { ...message, offset: 5n })))).buffer);
    expect(orderedHeaders(sent.headers as RecordHeaders)).toEqual([
      ['a', Buffer.from('1')],
      ['b', null],
      ['a', Buffer.from([0xff])],
      ['7', Buffer.from('n')],
      ['spanledger.replayed.from', Buffer.from('spans.dlq/0/5')],
    ]);
  });

  it('prints UTF-8 bytes as strings and other bytes as base64 in JSON', () => {
    expect(jsonBytes(null)).toBeNull();
    expect(jsonBytes(Buffer.alloc(0))).toBe('');
    expect(jsonBytes(Buffer.from('\uFEFFhé'))).toBe('\uFEFFhé'); // a BOM is kept: the string is exactly the bytes
    expect(jsonBytes(Buffer.from([0xc3, 0x28]))).toEqual({ base64: 'wyg=' });
    const json = JSON.parse(JSON.stringify(deadLetterJson(consumed(binaryKey, null)))) as Record<string, unknown>;
    expect(json.key).toEqual({ base64: binaryKey.toString('base64') });
    expect(json.value).toBeNull();
    expect(json.source).toEqual({ topic: 'spans', partition: 2, offset: '41' });
    expect((json.headers as unknown[]).filter((h) => (h as string[])[0]!.startsWith('x-'))).toEqual([
      ['x-bin', { base64: '3q2+7wA=' }],
      ['x-null', null],
      ['x-empty', ''],
      ['x-rep', 'one'],
      ['x-rep', { base64: '/w==' }],
      ['x-rep', null],
      ['x-rep', 'three'],
    ]);
  });
});
