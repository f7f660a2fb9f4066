import { describe, expect, it } from 'vitest';
import { allowNullHeaderValues } from '../../../src/kafka/null-header-values.js';
import { decodeRecord, recordEncoder, shippedRecordEncoder } from '../../support/kafkajs-record.js';

const withNull = { key: Buffer.from([0xff, 0x00]), value: null, headers: { a: null, b: [Buffer.from([0x80]), null, Buffer.alloc(0)], c: 'text' } };

describe('allowNullHeaderValues', () => {
  it('is needed: the shipped kafkajs encoder throws on a null header value', () => {
    expect(() => shippedRecordEncoder()(withNull)).toThrow(/Received null/);
  });

  it('makes kafkajs encode null header values, which kafkajs reads back as null', () => {
    allowNullHeaderValues();
    const message = decodeRecord(recordEncoder()(withNull).buffer);
    expect(message.key).toEqual(Buffer.from([0xff, 0x00]));
    expect(message.value).toBeNull();
    expect(message.headers).toEqual({ a: null, b: [Buffer.from([0x80]), null, Buffer.alloc(0)], c: Buffer.from('text') });
  });

  it('writes the same bytes as the shipped encoder for every record it could already encode', () => {
    allowNullHeaderValues();
    const records = [
      { key: null, value: null },
      { key: 'k', value: Buffer.alloc(0), headers: {} },
      { key: Buffer.from([1, 2, 3]), value: 'é'.repeat(300), headers: { x: Buffer.from([0xfe]), y: ['1', '2'], 'ü': 'ß' }, offsetDelta: 7, timestampDelta: 123456789 },
    ];
    for (const r of records) expect(recordEncoder()(r).buffer).toEqual(shippedRecordEncoder()(r).buffer);
  });
});
