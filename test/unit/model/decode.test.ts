import { describe, expect, it } from 'vitest';
import { SignalDecoder, SpanDecoder } from '../../../src/model/decode.js';
import { generateSignal, generateSpan, malformedRecords, tenantIdFor } from '../../../src/model/generate.js';
import { spanDay } from '../../../src/model/span.js';

const tenant = tenantIdFor(7);
const decoder = new SpanDecoder(1_048_576);
const encode = (v: unknown) => Buffer.from(JSON.stringify(v));

describe('SpanDecoder', () => {
  it('accepts a valid span and computes its UTC day from its start time', () => {
    const span = { ...generateSpan(tenant, 1), startTimeUnixNano: '1700000000000000000', endTimeUnixNano: '1700000000100000000' };
    const d = decoder.decode({ value: encode(span) });
    expect(d.ok).toBe(true);
    if (!d.ok) return;
    expect(d.items[0]!.tenantId).toBe(tenant);
    expect(d.items[0]!.value.day).toBe('2023-11-14');
  });

  it('takes the tenant from the tenant-id header when the body has none', () => {
    const { tenantId: _t, ...span } = generateSpan(tenant, 2);
    const d = decoder.decode({ value: encode(span), headers: { 'tenant-id': Buffer.from(tenant) } });
    expect(d.ok && d.items[0]!.tenantId).toBe(tenant);
    expect(d.ok && d.items[0]!.value.span.tenantId).toBe(tenant);
  });

  it.each(malformedRecords(tenant, 1000).map((r) => [r.kind, r] as const))('rejects %s with that reason', (kind, record) => {
    const d = new SpanDecoder(1000).decode({ value: record.value, headers: record.headers });
    expect(d.ok).toBe(false);
    if (d.ok) return;
    expect(d.error.errorClass).toBe(kind);
    expect(d.error.message.length).toBeGreaterThan(5);
  });

  it('rejects a tenant header that is not a canonical UUID, and a body/header mismatch', () => {
    const { tenantId: _t, ...span } = generateSpan(tenant, 3);
    const bad = decoder.decode({ value: encode(span), headers: { 'tenant-id': '../../../tmp' } });
    expect(!bad.ok && bad.error.errorClass).toBe('InvalidTenantId');
    const mismatch = decoder.decode({ value: encode(generateSpan(tenant, 3)), headers: { 'tenant-id': tenantIdFor(8) } });
    expect(!mismatch.ok && mismatch.error.errorClass).toBe('TenantMismatch');
  });

  it('names the offending field in schema violations', () => {
    const d = decoder.decode({ value: encode({ ...generateSpan(tenant, 4), spanId: 'XYZ' }) });
    expect(!d.ok && d.error.message).toBe('spanId: must be 16 lower-case hex characters, not all zeros');
    const extra = decoder.decode({ value: encode({ ...generateSpan(tenant, 4), extra: 1 }) });
    expect(!extra.ok && extra.error.message).toBe('(record): unknown field "extra"');
    const missing = decoder.decode({ value: encode({ ...generateSpan(tenant, 4), name: undefined }) });
    expect(!missing.ok && missing.error.message).toBe('name: is required');
    const order = decoder.decode({ value: encode({ ...generateSpan(tenant, 4), startTimeUnixNano: '20', endTimeUnixNano: '10' }) });
    expect(!order.ok && order.error.message).toMatch(/endTimeUnixNano/);
    const empty = decoder.decode({ value: null });
    expect(!empty.ok && empty.error.errorClass).toBe('EmptyRecord');
    const array = decoder.decode({ value: Buffer.from('[1,2]') });
    expect(!array.ok && array.error.errorClass).toBe('SchemaViolation');
  });

  it('accepts a UUID in any case and stores the lower-case tenant (field and header alike)', () => {
    const tenant = 'abcdef01-2345-4678-9abc-def012345678';
    const upper = tenant.toUpperCase();
    const field = decoder.decode({ value: encode({ ...generateSpan(tenant, 5), tenantId: upper }) });
    expect(field.ok && field.items[0]!.tenantId).toBe(tenant);
    expect(field.ok && field.items[0]!.value.span.tenantId).toBe(tenant);
    const { tenantId: _t, ...span } = generateSpan(tenant, 6);
    const header = decoder.decode({ value: encode(span), headers: { 'tenant-id': Buffer.from(upper) } });
    expect(header.ok && header.items[0]!.tenantId).toBe(tenant);
    const both = decoder.decode({ value: encode(generateSpan(tenant, 7)), headers: { 'tenant-id': upper } });
    expect(both.ok && both.items[0]!.tenantId).toBe(tenant);
  });

  it('tenant-id headers: null counts as absent, binary and disagreeing repeats are refused', () => {
    const { tenantId: _t, ...span } = generateSpan(tenant, 8);
    const nullOnly = decoder.decode({ value: encode(span), headers: { 'tenant-id': null } });
    expect(!nullOnly.ok && nullOnly.error.errorClass).toBe('MissingTenantId');
    const nullWithField = decoder.decode({ value: encode(generateSpan(tenant, 8)), headers: { 'tenant-id': null } });
    expect(nullWithField.ok && nullWithField.items[0]!.tenantId).toBe(tenant);
    const repeatedSame = decoder.decode({ value: encode(span), headers: { 'tenant-id': [null, tenant, tenant.toUpperCase()] } });
    expect(repeatedSame.ok && repeatedSame.items[0]!.tenantId).toBe(tenant);
    const repeatedOther = decoder.decode({ value: encode(span), headers: { 'tenant-id': [tenant, tenantIdFor(9)] } });
    expect(!repeatedOther.ok && repeatedOther.error.errorClass).toBe('InvalidTenantId');
    const binary = decoder.decode({ value: encode(span), headers: { 'tenant-id': Buffer.from([0xff, 0xfe, 0x00]) } });
    expect(!binary.ok && binary.error.errorClass).toBe('InvalidTenantId');
  });

  it('refuses invalid UTF-8 and caps a reason that would quote a huge field name', () => {
    const good = Buffer.from(JSON.stringify(generateSpan(tenant, 9)));
    const bad = Buffer.concat([good.subarray(0, 20), Buffer.from([0xc3, 0x28]), good.subarray(20)]);
    const utf8 = decoder.decode({ value: bad });
    expect(!utf8.ok && utf8.error.errorClass).toBe('InvalidUtf8');
    const huge = decoder.decode({ value: encode({ ...generateSpan(tenant, 10), ['f'.repeat(200_000)]: 1 }) });
    expect(!huge.ok && huge.error.errorClass).toBe('SchemaViolation');
    expect(!huge.ok && huge.error.message.length).toBeLessThanOrEqual(1024);
    const deep = decoder.decode({ value: Buffer.from('{"a":'.repeat(100_000) + '1' + '}'.repeat(100_000)) });
    expect(!deep.ok && deep.error.errorClass).toBe('SchemaViolation');
  });

  it('spanDay uses UTC', () => {
    expect(spanDay({ startTimeUnixNano: '0' })).toBe('1970-01-01');
    expect(spanDay({ startTimeUnixNano: 86_399_999_999_999 })).toBe('1970-01-01');
    expect(spanDay({ startTimeUnixNano: '86400000000000' })).toBe('1970-01-02');
  });
});

describe('SignalDecoder', () => {
  const signals = new SignalDecoder(1_048_576);
  it('accepts a valid signal', () => {
    const s = generateSignal(tenant, 1);
    const d = signals.decode({ value: encode(s) });
    expect(d.ok && d.items[0]!.value).toEqual(s);
  });
  it('rejects bad severity, bad ids and a missing tenant with clear reasons', () => {
    const s = generateSignal(tenant, 1);
    const sev = signals.decode({ value: encode({ ...s, severity: 'SEVERE' }) });
    expect(!sev.ok && sev.error.errorClass).toBe('SchemaViolation');
    expect(!sev.ok && sev.error.message).toMatch(/severity/);
    const { tenantId: _t, ...noTenant } = s;
    const missing = signals.decode({ value: encode(noTenant) });
    expect(!missing.ok && missing.error.errorClass).toBe('MissingTenantId');
    const badTenant = signals.decode({ value: encode({ ...s, tenantId: 'a/b' }) });
    expect(!badTenant.ok && badTenant.error.errorClass).toBe('InvalidTenantId');
    const deep = signals.decode({ value: Buffer.from(JSON.stringify({ ...s, metadata: {} }).replace('"metadata":{}', `"metadata":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}`)) });
    expect(!deep.ok && deep.error.message).toMatch(/^metadata(\.a)+: nested deeper than 64 levels$/);
  });
});
