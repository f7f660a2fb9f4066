import { describe, expect, it } from 'vitest';
import { SpanDecoder, StoredSpanText, type DecodedSpan } from '../../../src/model/decode.js';
import { generateSpan, tenantIdFor } from '../../../src/model/generate.js';
import { storedSpan } from '../../../src/model/span-line.js';
import { SpanLines } from '../../../src/sinks/spanlog/layout.js';
import type { FlushItem } from '../../../src/sinks/types.js';

const tenant = tenantIdFor(4);
const spans = [
  storedSpan(generateSpan(tenant, 1), tenant),
  storedSpan({ ...generateSpan(tenant, 2), name: 'café ☕ \u0001 "quoted"', attributes: { 'ключ': 'значение', n: 15 } }, tenant),
  storedSpan({ ...generateSpan(tenant, 3), events: [{ name: 'e', timeUnixNano: '7' }] }, tenant),
];

function lines(values: DecodedSpan[]): string {
  const built = new SpanLines('spans.v1', 3);
  values.forEach((value, k) => built.add({ offset: 10n + BigInt(k >> 1), index: k & 1, value } as FlushItem<DecodedSpan>));
  return built.toBuffer().toString('utf8');
}

describe('span log lines', () => {
  it('are the same bytes whether a span is held as its record\'s bytes, its text or its object', () => {
    const decoder = new SpanDecoder(1_000_000, { encoding: 'json', storedText: true, recordBytes: true });
    let taken = 0;
    const asBytes = spans.map((span) => {
      const value = Buffer.from(JSON.stringify(span));
      const decoded = decoder.decode({ value });
      if (!decoded.ok) throw decoded.error;
      const held = decoded.items[0]!.value;
      // Events are left to the full decoder (stored-span-text.ts): the third takes that path.
      if (held instanceof StoredSpanText) {
        taken += 1;
        expect(held.bytes).toBe(value);
        expect(held.json).toBe(value.toString('utf8'));
      }
      return held;
    });
    expect(taken).toBe(2);
    const asText = spans.map((span) => new StoredSpanText(JSON.stringify(span), undefined));
    const asObject = spans.map((span) => ({ span }));
    const expected = spans.map((span, k) => `${JSON.stringify(span).slice(0, -1)},"_kafka":{"topic":"spans.v1","partition":3,"offset":"${10 + (k >> 1)}"${k & 1 ? ',"index":1' : ''}}}\n`).join('');
    expect(lines(asBytes)).toBe(expected);
    expect(lines(asText)).toBe(expected);
    expect(lines(asObject)).toBe(expected);
    expect(lines([asBytes[0]!, asObject[1]!, asText[2]!])).toBe(expected);
    // A record that leaves its tenant to its header: the same lines, its tenant field first.
    const headerOnly = spans.map((span) => {
      const { tenantId, ...rest } = span;
      const decoded = decoder.decode({ value: Buffer.from(JSON.stringify(rest)), headers: { 'tenant-id': tenantId } });
      if (!decoded.ok) throw decoded.error;
      return decoded.items[0]!.value;
    });
    expect(headerOnly.filter((v) => v.headerTenant !== undefined && v.bytes !== undefined)).toHaveLength(2);
    expect(lines(headerOnly)).toBe(expected);
    for (const line of expected.trimEnd().split('\n')) expect(JSON.parse(line)).toHaveProperty('_kafka.topic', 'spans.v1');
  });
});
