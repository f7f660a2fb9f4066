import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SpanDecoder, StoredSpanText, type DecodedSpan, type Decoded } from '../../../src/model/decode.js';
import { fromWire, toWire } from '../../../src/model/decode-thread.js';
import { generateSpan, tenantIdFor } from '../../../src/model/generate.js';
import { SPAN_KINDS, STATUS_CODES, type Span } from '../../../src/model/span.js';
import { storedSpan } from '../../../src/model/span-line.js';
import { storedSpanFields } from '../../../src/model/stored-span-text.js';
import { ArchiveSpanDecoder, storedLineOf } from '../../../src/model/archive-row.js';

/** The span worker's decoder (with the stored-line fast path) and the same decoder without it. */
const fast = new SpanDecoder(1_000_000, { encoding: 'json', storedText: true });
const full = new SpanDecoder(1_000_000, { encoding: 'json' });

/** The span log's line of a decoded span (layout.ts: the text when the decoder kept it). */
const lineOf = (value: DecodedSpan) => value.json ?? JSON.stringify(value.span);

let fastTaken = 0;

/** Both decoders give the same answer: the same reasons, or the same tenant, day and line. */
function sameAnswer(text: string, headers?: Record<string, string>): void {
  const message = { value: Buffer.from(text), headers };
  const a = fast.decode(message);
  const b = full.decode(message);
  if (!b.ok) {
    expect(a.ok, text).toBe(false);
    if (!a.ok) expect([a.error.errorClass, a.error.message]).toEqual([b.error.errorClass, b.error.message]);
    return;
  }
  expect(a.ok, text).toBe(true);
  if (!a.ok) return;
  const [x] = a.items;
  const [y] = b.items;
  if (x!.value instanceof StoredSpanText) fastTaken += 1;
  expect(x!.tenantId).toBe(y!.tenantId);
  expect(x!.value.day).toBe(y!.value.day);
  expect(lineOf(x!.value), text).toBe(JSON.stringify(y!.value.span));
  expect(x!.value.span).toEqual(y!.value.span);
}

const hex = (n: number) => fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: n, maxLength: n });
/** Strings of every kind JSON escapes or does not: quotes, backslashes, controls, slashes, emoji, lone surrogates. */
const text = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.constantFrom('', 'a"b', 'a\\b', 'a/b', 'tab\there', 'nl\n', '\u0000\u001f\u007f', '\u2028', '😀', '\ud800', 'x'.repeat(1024), 'x'.repeat(1025), 'x'.repeat(8193)));
const scalar = fc.oneof(text, fc.integer(), fc.constantFrom(0, -0, 1.5, 1e21, 123456789012345, 1234567890123456, -7, null, true, false), fc.double());
const attributes = fc.dictionary(fc.oneof(fc.string(), fc.constantFrom('0', '1', '01', '__proto__', '', 'k'.repeat(256), 'k'.repeat(257), 'http.method')), fc.oneof(scalar, fc.array(scalar, { maxLength: 3 }), fc.object({ maxDepth: 1 })), { maxKeys: 4 });
const digits = fc.oneof(fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: 1, maxLength: 21 }), fc.constantFrom('1700000000000000000', '99999999999999999999', '0', '00017'));

/** A span with fields of every shape, put together in the stored order or not, some fields left out. */
const spanObject = fc
  .record({
    tenantId: fc.oneof(fc.constant(tenantIdFor(3)), fc.constant(tenantIdFor(3).toUpperCase()), fc.uuid(), fc.constant('not-a-uuid')),
    traceId: fc.oneof(hex(32), fc.constant('0'.repeat(32)), hex(31)),
    spanId: fc.oneof(hex(16), fc.constant('0'.repeat(16))),
    parentSpanId: fc.oneof(fc.constant(''), hex(16)),
    name: text,
    kind: fc.oneof(fc.integer({ min: -1, max: 6 }), fc.constantFrom(...SPAN_KINDS)),
    startTimeUnixNano: fc.oneof(digits, fc.nat()),
    endTimeUnixNano: fc.oneof(digits, fc.nat()),
    attributes,
    status: fc.record({ code: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.constantFrom(...STATUS_CODES)), message: text }, { requiredKeys: [] }),
    resource: fc.oneof(fc.record({ attributes }), fc.constant({})),
    scope: fc.record({ name: text, version: text, attributes }, { requiredKeys: [] }),
    traceState: text,
    events: fc.constant([{ name: 'e', timeUnixNano: '1' }]),
  }, { requiredKeys: ['traceId', 'spanId', 'name', 'startTimeUnixNano', 'endTimeUnixNano'] })
  .chain((span) => fc.boolean().map((shuffle) => (shuffle ? Object.fromEntries(Object.entries(span).reverse()) : span)));

/**
 * Spans in their stored form (storedSpan, then JSON.stringify, as `spanledger produce` writes
 * them) with fields near every edge the fast path checks: names with quotes, backslashes,
 * controls, emoji and lone surrogates, up to and past their length limits; attribute names of
 * digits, repeated in text, `__proto__`, at 256 and 257 characters; integers up to and past 15
 * digits, -0, fractions; times of up to 21 digits, ends before starts.
 */
const mostlyPlain = <T>(plain: fc.Arbitrary<T>, edgy: fc.Arbitrary<T>) => fc.oneof({ weight: 6, arbitrary: plain }, { weight: 1, arbitrary: edgy });
const storedText = mostlyPlain(fc.string({ maxLength: 40 }), text);
const storedAttributes = mostlyPlain(fc.dictionary(fc.string({ minLength: 1, maxLength: 20 }), mostlyPlain(fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.oneof(fc.string(), fc.integer()), { maxLength: 3 })), scalar), { maxKeys: 4 }), attributes);
const times = mostlyPlain(
  fc.tuple(fc.bigInt({ min: 0n, max: 10n ** 19n }), fc.bigInt({ min: 0n, max: 10n ** 12n })).map(([start, duration]) => [String(start), String(start + duration)] as const),
  fc.tuple(digits, digits),
);
const storedLine = fc
  .record({
    seq: fc.nat({ max: 999 }),
    name: storedText,
    kind: fc.integer({ min: 0, max: 5 }),
    times,
    attributes: storedAttributes,
    resourceAttributes: storedAttributes,
    status: fc.record({ code: fc.integer({ min: 0, max: 2 }), message: storedText }, { requiredKeys: ['code'] }),
    scope: fc.option(fc.record({ name: storedText, version: storedText, attributes: storedAttributes }, { requiredKeys: ['name'] }), { nil: undefined }),
    traceState: fc.option(storedText, { nil: undefined }),
  })
  .map(({ seq, name, kind, times: [start, end], attributes: a, resourceAttributes, status, scope, traceState }) => {
    const base = generateSpan(tenantIdFor(seq % 7), seq);
    const span = { ...base, name, kind, startTimeUnixNano: start, endTimeUnixNano: end, attributes: a, status, resource: { attributes: resourceAttributes }, scope, traceState };
    return JSON.stringify(storedSpan(span as Span, base.tenantId));
  });

/** What a producer's serializer might do to the same span: spaces, escapes, other number forms, a repeated key. */
function mutate(json: string, how: number, at: number): string {
  const i = at % Math.max(1, json.length);
  switch (how) {
    case 0:
      return json.slice(0, i) + ' ' + json.slice(i);
    case 1:
      return json.replace('/', '\\/');
    case 2:
      return json.replace(/"([a-z])/, (_m, c: string) => `"\\u00${c.charCodeAt(0).toString(16)}`);
    case 3:
      return json.replace(/:(\d+)([,}])/, ':$1.0$2');
    case 4:
      return json.replace('"attributes":{', '"attributes":{"dup":1,"dup":2,');
    case 5:
      return json.slice(0, i);
    case 6:
      return json + '\n';
    default:
      return json.replace(/\\n/, '\\u000a');
  }
}

describe('stored span lines taken from the record (the span worker\'s fast path)', () => {
  it('takes the record as its line for the spans `spanledger produce` writes', () => {
    for (let seq = 0; seq < 2000; seq += 1) {
      const span = generateSpan(tenantIdFor(seq % 7), seq);
      const json = JSON.stringify(span);
      expect(storedSpanFields(json), json).toEqual({ tenantId: span.tenantId, startTimeUnixNano: span.startTimeUnixNano, endTimeUnixNano: span.endTimeUnixNano });
      const decoded = fast.decode({ value: Buffer.from(json) });
      expect(decoded.ok && decoded.items[0]!.value).toBeInstanceOf(StoredSpanText);
      sameAnswer(json);
    }
  });

  it('accepts, rejects and stores exactly as the full decoder does, for spans of every shape as JSON.stringify writes them', () => {
    fc.assert(
      fc.property(spanObject, (span) => sameAnswer(JSON.stringify(span))),
      { numRuns: 5_000 },
    );
  });

  it('takes most stored lines whole, and answers for them as the full decoder does', () => {
    fastTaken = 0;
    fc.assert(
      fc.property(storedLine, (json) => sameAnswer(json)),
      { numRuns: 5_000 },
    );
    // Most of them (the rest hold what the fast path leaves to the full decoder: fractions, digit names…).
    expect(fastTaken).toBeGreaterThan(1_500);
  });

  it('gives the archive the same line as parsing would: the record\'s own bytes when it is its stored line', () => {
    const archive = new ArchiveSpanDecoder(1_000_000, { encoding: 'json' });
    let whole = 0;
    fc.assert(
      fc.property(fc.oneof(storedLine, spanObject.map((span) => JSON.stringify(span))), (json) => {
        const reference = full.decode({ value: Buffer.from(json) });
        const decoded = archive.decode({ value: Buffer.from(json) });
        expect(decoded.ok).toBe(reference.ok);
        if (!decoded.ok || !reference.ok) return;
        const line = decoded.items[0]!.value.line;
        if (storedSpanFields(json) !== undefined) {
          whole += 1;
          expect(typeof line).not.toBe('string');
        }
        expect(typeof line === 'string' ? line : Buffer.from(line).toString('utf8'), json).toBe(storedLineOf(reference.items[0]!.value.span));
        expect(decoded.items[0]!.value.day).toBe(reference.items[0]!.value.day);
      }),
      { numRuns: 5_000 },
    );
    expect(whole).toBeGreaterThan(750);
  });

  it('and for the same spans written otherwise (spaces, escapes, number forms, repeated keys, cut short)', () => {
    fc.assert(
      fc.property(fc.oneof(spanObject.map((span) => JSON.stringify(span)), storedLine), fc.nat({ max: 7 }), fc.nat(), (json, how, at) => sameAnswer(mutate(json, how, at))),
      { numRuns: 5_000 },
    );
  });

  it('takes a stored line without its tenant, the tenant in its header, and answers as the full decoder does', () => {
    const withoutTenant = (json: string) => json.replace(/^\{"tenantId":"[^"]*",/, '{');
    const header = fc.oneof(fc.constant(tenantIdFor(5)), fc.constant(tenantIdFor(5).toUpperCase()), fc.uuid(), fc.constant('nope'), fc.constant(undefined));
    let taken = 0;
    fc.assert(
      fc.property(storedLine, header, (json, tenant) => {
        const text = withoutTenant(json);
        const before = fastTaken;
        sameAnswer(text, tenant === undefined ? undefined : { 'tenant-id': tenant });
        if (fastTaken > before) taken += 1;
      }),
      { numRuns: 3_000 },
    );
    expect(taken).toBeGreaterThan(600);
    // As `spanledger produce` writes every fifth span: each taken whole, the line with its tenant first.
    for (let seq = 0; seq < 200; seq += 1) {
      const { tenantId, ...rest } = generateSpan(tenantIdFor(seq % 7), seq);
      const decoded = fast.decode({ value: Buffer.from(JSON.stringify(rest)), headers: { 'tenant-id': tenantId } });
      expect(decoded.ok && decoded.items[0]!.value).toBeInstanceOf(StoredSpanText);
      if (decoded.ok) expect(decoded.items[0]!.value.json).toBe(JSON.stringify({ tenantId, ...rest }));
    }
  });

  it('finds the same fields whether the head is checked on the record\'s bytes or on its text', () => {
    const withoutTenant = (json: string) => json.replace(/^\{"tenantId":"[^"]*",/, '{');
    fc.assert(
      fc.property(fc.oneof(storedLine, storedLine.map(withoutTenant), spanObject.map((span) => JSON.stringify(span))), fc.nat({ max: 8 }), fc.nat(), (json, how, at) => {
        const text = how === 8 ? json : mutate(json, how, at);
        expect(storedSpanFields(text, Buffer.from(text)), text).toEqual(storedSpanFields(text));
      }),
      { numRuns: 5_000 },
    );
    // Ids at every place of the head with a non-hex, an upper-case or a non-ASCII character.
    const line = JSON.stringify(generateSpan(tenantIdFor(2), 9));
    for (let k = 0; k < 140; k += 1) {
      for (const c of ['g', 'A', 'é', '-', '"']) {
        const text = line.slice(0, k) + c + line.slice(k + 1);
        expect(storedSpanFields(text, Buffer.from(text)), text).toEqual(storedSpanFields(text));
      }
    }
  });

  it('gives the same answers with a tenant-id header that agrees, differs or is not a tenant', () => {
    const json = JSON.stringify(generateSpan(tenantIdFor(1), 5));
    for (const header of [tenantIdFor(1), tenantIdFor(1).toUpperCase(), tenantIdFor(2), 'nope']) sameAnswer(json, { 'tenant-id': header });
  });

  it('gives the same answers for times past year 9999 and ends before starts', () => {
    const span = generateSpan(tenantIdFor(1), 5);
    sameAnswer(JSON.stringify({ ...span, startTimeUnixNano: '99999999999999999999', endTimeUnixNano: '99999999999999999999' }));
    sameAnswer(JSON.stringify({ ...span, endTimeUnixNano: '1' }));
    sameAnswer(JSON.stringify({ ...span, startTimeUnixNano: '0', endTimeUnixNano: '0' }));
  });

  it('keeps the line when the span crosses from a decode thread', () => {
    const json = JSON.stringify(generateSpan(tenantIdFor(1), 5));
    const decoded = fast.decode({ value: Buffer.from(json) });
    const crossed = fromWire(structuredClone(toWire(decoded))) as Decoded<DecodedSpan>;
    expect(crossed.ok).toBe(true);
    if (!crossed.ok || !decoded.ok) return;
    expect(crossed.items[0]!.value).toBeInstanceOf(StoredSpanText);
    expect(lineOf(crossed.items[0]!.value)).toBe(json);
    expect(crossed.items[0]!.value.span).toEqual(decoded.items[0]!.value.span);
    expect(crossed.items[0]!.value.day).toBe(decoded.items[0]!.value.day);
  });
});
