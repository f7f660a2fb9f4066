import { describe, expect, it } from 'vitest';
import { SignalDecoder, type Decoded, type RawMessage } from '../../../src/model/decode.js';
import type { Signal } from '../../../src/model/signal.js';
import { decodeChunk, fromWire, toWireRecord, type DecoderSpec } from '../../../src/model/decode-thread.js';
import { generateSignal, tenantIdFor } from '../../../src/model/generate.js';

const MAX = 4000;
const tenant = tenantIdFor(9);
const signal = (seq: number, patch: Record<string, unknown> = {}) => Buffer.from(JSON.stringify({ ...generateSignal(tenant, seq), ...patch }));

/** Signals the decoder takes (in every shape it takes them) and every kind it refuses. */
const messages: RawMessage[] = [
  { value: signal(1) },
  { value: signal(2, { tenantId: tenant.toUpperCase() }), headers: { 'tenant-id': Buffer.from(tenant) } },
  { value: signal(3, { metadata: { nested: { list: [1, 2.5, null, 'x'], big: 2 ** 60 }, emoji: '🚀', ['__proto__']: { polluted: true } } }) },
  { value: Buffer.from(JSON.stringify(generateSignal(tenant, 4)).replace('"metadata":{', '"metadata":{"__proto__":{"polluted":true},')) },
  { value: signal(5, { message: 'escaped \u00e9 text' }) },
  { value: Buffer.from('{"id": "abc", oops') },
  { value: signal(6, { severity: 'apocalyptic' }) },
  { value: signal(7, { tenantId: '../../etc' }) },
  { value: signal(8, { timestamp: '2026-13-45T99:00:00Z' }) },
  { value: Buffer.from(JSON.stringify(generateSignal(tenant, 9)).replace('matched', 'matched \\ud800')) },
  { value: signal(10, { metadata: { pad: 'x'.repeat(MAX) } }) },
  { value: null },
  { value: Buffer.alloc(0) },
  { value: signal(11), headers: { 'tenant-id': Buffer.from(tenantIdFor(10)) } },
];

describe('decode threads for signal workers (DECODE_THREADS)', () => {
  it('a signal decoder spec decodes in a thread exactly as the signal decoder on the main thread', () => {
    const spec: DecoderSpec = { kind: 'signals', maxMessageBytes: MAX };
    const local = new SignalDecoder(MAX);
    // structuredClone does what postMessage does both ways: Buffers arrive as Uint8Arrays, objects as copies.
    const answers: Array<Decoded<Signal>> = structuredClone(decodeChunk<Signal>(structuredClone({ spec, records: messages.map(toWireRecord) }))).map((a) => fromWire(a));
    expect(answers).toHaveLength(messages.length);
    messages.forEach((m, i) => {
      const expected = local.decode(m);
      const got = answers[i]!;
      if (expected.ok) {
        expect(got).toEqual(expected);
        expect(got.ok && Object.keys(got.items[0]!.value.metadata)).toEqual(Object.keys(expected.items[0]!.value.metadata));
      } else {
        expect(!got.ok && [got.error.constructor.name, got.error.errorClass, got.error.message]).toEqual(['RecordRejectedError', expected.error.errorClass, expected.error.message]);
      }
    });
    expect(answers.filter((a) => a.ok)).toHaveLength(5);
    expect(answers.filter((a) => !a.ok).map((a) => !a.ok && a.error.errorClass)).toEqual(expect.arrayContaining(['InvalidJson', 'SchemaViolation', 'RecordTooLarge', 'EmptyRecord']));
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
