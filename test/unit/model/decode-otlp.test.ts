import { describe, expect, it } from 'vitest';
import { SpanDecoder } from '../../../src/model/decode.js';
import { encodeOtlpRequest, generateOtlpRequest, GENERATOR_SCOPE } from '../../../src/model/generate-otlp.js';
import { generateSpan, tenantIdFor } from '../../../src/model/generate.js';
import { storedSpan } from '../../../src/model/span-line.js';

const A = tenantIdFor(1);
const B = tenantIdFor(2);
const decoder = new SpanDecoder(4_000_000);

describe('SpanDecoder with OTLP requests (SPANS_ENCODING=auto)', () => {
  it.each(['otlp_proto', 'otlp_json'] as const)('%s: every span of the request, in order, with its tenant from the resource attribute', (encoding) => {
    const request = generateOtlpRequest(A, 100, encoding, 3, Date.UTC(2026, 10, 24, 10));
    const d = decoder.decode({ value: request.value });
    if (!d.ok) throw new Error(d.error.message);
    expect(d.items.map((i) => i.value.span.spanId)).toEqual(request.spans.map((s) => s.spanId));
    expect(new Set(d.items.map((i) => i.tenantId))).toEqual(new Set([A]));
    expect(d.items.every((i) => i.value.day === '2026-11-24')).toBe(true);
  });

  it('one request may hold several tenants; a tenant-id header names the tenant of every span', () => {
    const spans = [generateSpan(A, 1), generateSpan(B, 2)].map(({ tenantId: _t, resource: _r, ...s }) => s);
    const value = encodeOtlpRequest(
      [
        { resource: { 'tenant.id': A, 'service.name': 'a' }, scopeSpans: [{ scope: GENERATOR_SCOPE, spans: [spans[0]!] }] },
        { resource: { 'tenant.id': B.toUpperCase(), 'service.name': 'b' }, scopeSpans: [{ scope: GENERATOR_SCOPE, spans: [spans[1]!] }] },
      ],
      'otlp_proto',
    );
    const both = decoder.decode({ value });
    expect(both.ok && both.items.map((i) => i.tenantId)).toEqual([A, B]);
    const header = decoder.decode({ value, headers: { 'tenant-id': B } });
    expect(header.ok && header.items.map((i) => i.tenantId)).toEqual([B, B]);
    const custom = new SpanDecoder(4_000_000, { tenantAttribute: 'service.name' }).decode({ value });
    expect(!custom.ok && custom.error.errorClass).toBe('InvalidTenantId');
  });

  it('dead-letters the whole request, with the span it is about, when one span has no or a bad tenant or fails the schema', () => {
    const [good, bad] = [generateSpan(A, 1), generateSpan(A, 2)].map(({ tenantId: _t, resource: _r, ...s }) => s);
    const request = (resource: Record<string, string>, second = bad!) =>
      encodeOtlpRequest([{ resource: { 'tenant.id': A }, scopeSpans: [{ scope: GENERATOR_SCOPE, spans: [good!] }] }, { resource, scopeSpans: [{ scope: GENERATOR_SCOPE, spans: [second] }] }], 'otlp_json');
    const missing = decoder.decode({ value: request({ 'service.name': 'x' }) });
    expect(!missing.ok && [missing.error.errorClass, missing.error.message]).toEqual(['MissingTenantId', "span 1: no 'tenant-id' header and no resource attribute 'tenant.id'"]);
    const invalid = decoder.decode({ value: request({ 'tenant.id': '../etc' }) });
    expect(!invalid.ok && invalid.error.errorClass).toBe('InvalidTenantId');
    const backwards = decoder.decode({ value: request({ 'tenant.id': A }, { ...bad!, endTimeUnixNano: '1', startTimeUnixNano: '2' }) });
    expect(!backwards.ok && backwards.error.message).toBe('span 1: endTimeUnixNano: must not be before startTimeUnixNano');
    const truncated = decoder.decode({ value: generateOtlpRequest(A, 10, 'otlp_proto').value.subarray(0, 100) });
    expect(!truncated.ok && truncated.error.errorClass).toBe('InvalidOtlp');
    const tooLarge = new SpanDecoder(1_000).decode({ value: generateOtlpRequest(A, 100, 'otlp_proto').value });
    expect(!tooLarge.ok && tooLarge.error.errorClass).toBe('RecordTooLarge');
  });

  it('an OTLP/JSON request without spans is valid and holds nothing to store (an empty protobuf one is an empty record)', () => {
    const d = decoder.decode({ value: encodeOtlpRequest([], 'otlp_json') });
    expect(d.ok && d.items).toEqual([]);
    const empty = decoder.decode({ value: encodeOtlpRequest([], 'otlp_proto') });
    expect(!empty.ok && empty.error.errorClass).toBe('EmptyRecord');
  });

  it('the same span as spanledger JSON and inside an OTLP request is stored the same', () => {
    const request = generateOtlpRequest(A, 5, 'otlp_proto', 7);
    const d = decoder.decode({ value: request.value });
    if (!d.ok) throw new Error(d.error.message);
    for (const [i, span] of request.spans.entries()) {
      const asJson = decoder.decode({ value: Buffer.from(JSON.stringify({ ...span, tenantId: A })) });
      if (!asJson.ok) throw new Error(asJson.error.message);
      expect(JSON.stringify(asJson.items[0]!.value.span)).toBe(JSON.stringify(d.items[i]!.value.span));
      expect(JSON.stringify(d.items[i]!.value.span)).toBe(JSON.stringify(storedSpan(span, A)));
    }
  });

  it('SPANS_ENCODING=json refuses an OTLP request; otlp_proto refuses JSON', () => {
    const proto = generateOtlpRequest(A, 3, 'otlp_proto').value;
    const json = new SpanDecoder(4_000_000, { encoding: 'json' }).decode({ value: proto });
    expect(!json.ok && json.error.errorClass).toBe('InvalidUtf8');
    const otlp = new SpanDecoder(4_000_000, { encoding: 'otlp_proto' }).decode({ value: Buffer.from(JSON.stringify(generateSpan(A, 1))) });
    expect(!otlp.ok && otlp.error.errorClass).toBe('InvalidOtlp');
  });
});
