import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { generateSpan, tenantIdFor } from '../../../src/model/generate.js';
import { SPAN_KINDS, STATUS_CODES, validateSpan } from '../../../src/model/span.js';
import { surelyValidSpan } from '../../../src/model/span-quick-check.js';

const FIELDS = ['tenantId', 'traceId', 'spanId', 'parentSpanId', 'name', 'kind', 'startTimeUnixNano', 'endTimeUnixNano', 'attributes', 'status', 'resource', 'scope', 'traceState', 'events', 'links', 'extra', '__proto__'];

/** Values near the schema's edges, of every JSON type and some only JavaScript has. */
const edgy = fc.oneof(
  fc.anything(),
  fc.constantFrom('', '0'.repeat(16), '0'.repeat(32), 'A'.repeat(16), 'g'.repeat(32), '1'.repeat(20), '1'.repeat(21), '-1', '1.5', '00000000-0000-4000-8000-00000000000A', '00000000-0000-4000-8000-00000000000', ...SPAN_KINDS, ...STATUS_CODES, 'SPAN_KIND_NOPE'),
  fc.constantFrom(NaN, Infinity, -Infinity, -1, 0, 1, 2, 3, 5, 6, 1.5, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER + 2, -0),
  fc.constantFrom('x'.repeat(1024), 'x'.repeat(1025), '😀'.repeat(512), '😀'.repeat(513), 'x'.repeat(8192), 'x'.repeat(8193)),
  fc.string({ unit: fc.constantFrom(...'0123456789abcdefA'), minLength: 15, maxLength: 33 }),
  fc.uuid(),
  fc.dictionary(fc.oneof(fc.string(), fc.constantFrom('', 'k'.repeat(256), 'k'.repeat(257), '😀'.repeat(128), '😀'.repeat(129), 'code', 'message', 'name', 'version', 'attributes')), fc.oneof(fc.anything(), fc.array(fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.constant(NaN), fc.object())))),
  fc.record({ code: fc.oneof(fc.integer({ min: -1, max: 3 }), fc.constantFrom(...STATUS_CODES, 'STATUS_CODE_NOPE')), message: fc.oneof(fc.string(), fc.integer()) }, { requiredKeys: [] }),
  fc.record({ attributes: fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.double(), fc.boolean(), fc.constant(null))) }),
  fc.record({ name: fc.oneof(fc.string(), fc.integer()), version: fc.string(), attributes: fc.dictionary(fc.string(), fc.string()) }, { requiredKeys: [] }),
);

/** A valid span (sometimes with the optional fields), then a few fields set to edgy values or removed. */
const mutatedSpan = fc
  .tuple(
    fc.nat({ max: 999 }),
    fc.boolean(),
    fc.array(fc.tuple(fc.constantFrom(...FIELDS), fc.oneof(edgy, fc.constant(undefined))), { maxLength: 4 }),
  )
  .map(([seq, optional, changes]) => {
    const span: Record<string, unknown> = { ...generateSpan(tenantIdFor(seq % 7), seq) };
    if (optional) Object.assign(span, { scope: { name: 'lib', version: '1.0', attributes: { a: 1 } }, traceState: 'k=v', kind: 'SPAN_KIND_SERVER', status: { code: 'STATUS_CODE_OK', message: 'fine' } });
    for (const [field, value] of changes) {
      if (value === undefined) delete span[field];
      else Object.defineProperty(span, field, { value, enumerable: true, writable: true, configurable: true });
    }
    // As the decoder sees it: JSON text parsed (undefined, functions and the like gone), except for
    // values JSON cannot carry (NaN, Infinity), which an OTLP-decoded span could.
    return span;
  });

describe('the span quick check', () => {
  it('says yes only where Ajv says yes (so the decoder accepts and rejects what the schema says)', () => {
    fc.assert(
      fc.property(mutatedSpan, (span) => {
        if (surelyValidSpan(span)) expect(validateSpan(span), JSON.stringify(span)).toBe(true);
      }),
      { numRuns: 20_000 },
    );
  });

  it('says yes only where Ajv says yes, for values parsed from JSON text', () => {
    fc.assert(
      fc.property(mutatedSpan, (span) => {
        let parsed: Record<string, unknown>;
        try {
          parsed = JSON.parse(JSON.stringify(span)) as Record<string, unknown>;
        } catch {
          return;
        }
        if (surelyValidSpan(parsed)) expect(validateSpan(parsed), JSON.stringify(parsed)).toBe(true);
      }),
      { numRuns: 20_000 },
    );
  });

  it('meets both verdicts often among the generated values (the property above is not vacuous)', () => {
    const spans = fc.sample(mutatedSpan, { numRuns: 5_000, seed: 42 });
    const quickYes = spans.filter((s) => surelyValidSpan(s)).length;
    const ajvNo = spans.filter((s) => !validateSpan(s)).length;
    expect(quickYes).toBeGreaterThan(spans.length / 10);
    expect(ajvNo).toBeGreaterThan(spans.length / 10);
  });

  it('says yes to the usual spans, so they skip Ajv', () => {
    for (let seq = 0; seq < 200; seq += 1) {
      const span = JSON.parse(JSON.stringify(generateSpan(tenantIdFor(seq), seq))) as Record<string, unknown>;
      expect(surelyValidSpan(span)).toBe(true);
      const full = { ...span, kind: SPAN_KINDS[seq % 6], status: { code: STATUS_CODES[seq % 3], message: 'm' }, scope: { name: 'io.opentelemetry', version: '2.0' }, traceState: 'a=b', parentSpanId: '' };
      expect(surelyValidSpan(full), JSON.stringify(full)).toBe(true);
    }
  });

  it('leaves to Ajv what it does not check itself', () => {
    const span = JSON.parse(JSON.stringify(generateSpan(tenantIdFor(1), 1))) as Record<string, unknown>;
    expect(surelyValidSpan({ ...span, events: [{ timeUnixNano: '1', name: 'e' }] })).toBe(false);
    expect(surelyValidSpan({ ...span, unknown: 1 })).toBe(false);
    expect(surelyValidSpan({ ...span, name: '😀'.repeat(513) })).toBe(false); // 1026 code units: Ajv counts 513 code points, accepts
    expect(validateSpan({ ...span, name: '😀'.repeat(513) })).toBe(true);
  });
});
