import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SignalDecoder, SpanDecoder, type Decoded } from '../../../src/model/decode.js';
import { generateOtlpRequest } from '../../../src/model/generate-otlp.js';
import { generateSpan, tenantIdFor } from '../../../src/model/generate.js';

// No input a broker can deliver may stop a worker: every decoder answers every byte sequence with
// items or a rejection (a dead letter), never an exception. Short and truncated records matter
// most: a JSON span shorter than the OTLP key once made detectEncoding throw a RangeError.
const spanDecoders = (['auto', 'json', 'otlp_proto', 'otlp_json'] as const).map((encoding) => new SpanDecoder(1_000_000, { encoding }));
const signalDecoder = new SignalDecoder(1_000_000);
const tenant = tenantIdFor(1);
const validJson = Buffer.from(JSON.stringify(generateSpan(tenant, 1)));
const validProto = generateOtlpRequest(tenant, 3, 'otlp_proto').value;
const validOtlpJson = generateOtlpRequest(tenant, 3, 'otlp_json').value;

function answers(decoded: Decoded<unknown>): boolean {
  return decoded.ok ? Array.isArray(decoded.items) : typeof decoded.error.message === 'string' && decoded.error.message.length > 0;
}

/** Arbitrary bytes, JSON-looking bytes, and every prefix of valid records (truncations). */
const records = fc.oneof(
  fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
  fc.string({ maxLength: 40 }).map((s) => Buffer.from(`{${s}`)),
  fc.string({ maxLength: 40 }).map((s) => Buffer.from(` \n{"${s}":1}`)),
  fc.json({ maxDepth: 2 }).map((s) => Buffer.from(s)),
  fc.constantFrom(validJson, validProto, validOtlpJson).chain((v) => fc.nat(v.length).map((n) => v.subarray(0, n))),
);

describe('decoders never throw', () => {
  it('span decoders (every SPANS_ENCODING) and the signal decoder answer any record', () => {
    fc.assert(
      fc.property(records, fc.boolean(), (value, withTenantHeader) => {
        const headers = withTenantHeader ? { 'tenant-id': Buffer.from(tenant) } : undefined;
        for (const decoder of spanDecoders) expect(answers(decoder.decode({ value, headers }))).toBe(true);
        expect(answers(signalDecoder.decode({ value, headers }))).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('a null value (a tombstone) is a rejection, not an exception', () => {
    for (const decoder of [...spanDecoders, signalDecoder]) expect(decoder.decode({ value: null }).ok).toBe(false);
  });
});
