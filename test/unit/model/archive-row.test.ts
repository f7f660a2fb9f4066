import { describe, expect, it } from 'vitest';
import { SpanDecoder, type Decoded, type RawMessage } from '../../../src/model/decode.js';
import { decodeChunk, fromWire, toWireRecord, type DecoderSpec } from '../../../src/model/decode-thread.js';
import { generateSpan, malformedRecords, tenantIdFor } from '../../../src/model/generate.js';
import { storedSpan } from '../../../src/model/span-line.js';
import { ArchiveSpanDecoder, scratchLinePrefix, type ArchiveRow } from '../../../src/model/archive-row.js';

const MAX = 100_000;
const tenant = tenantIdFor(3);
const day = Date.UTC(2026, 10, 23, 10);
const messages: RawMessage[] = [
  { value: Buffer.from(JSON.stringify(generateSpan(tenant, 1, day))) },
  { value: Buffer.from(JSON.stringify({ ...generateSpan(tenant, 2, day), attributes: { n: 200, ok: true, list: [1, 'a', null] } })) },
  { value: Buffer.from(JSON.stringify({ ...generateSpan(tenant, 3, day), name: 'lone \ud800 surrogate' })) },
  ...malformedRecords(tenant, MAX).map((m) => ({ value: m.value, headers: m.headers })),
];

describe('archive rows (the archive worker\'s decoder)', () => {
  it('accepts and refuses exactly what the span decoder does, with the same reasons; each span a body and its day', () => {
    const spans = new SpanDecoder(MAX, { encoding: 'auto' });
    const rows = new ArchiveSpanDecoder(MAX, { encoding: 'auto', withDay: false });
    let accepted = 0;
    for (const m of messages) {
      const expected = spans.decode(m);
      const got = rows.decode(m);
      if (!expected.ok) {
        expect(!got.ok && [got.error.errorClass, got.error.message]).toEqual([expected.error.errorClass, expected.error.message]);
        continue;
      }
      accepted += 1;
      expect(got.ok).toBe(true);
      if (!got.ok) continue;
      expect(got.items.map((i) => i.tenantId)).toEqual(expected.items.map((i) => i.tenantId));
      got.items.forEach(({ value }, k) => {
        const span = expected.items[k]!.value.span;
        expect(value.day).toBe(expected.items[k]!.value.day);
        const line = typeof value.line === 'string' ? value.line : Buffer.from(value.line).toString('utf8');
        // The span log's line, but well-formed (a lone surrogate replaced).
        expect(line).toBe(JSON.stringify(span).replace('\\ud800', '\\ufffd'));
      });
    }
    expect(accepted).toBe(3);
    expect(messages.length - accepted, "every malformed record refused").toBe(malformedRecords(tenant, MAX).length);
  });

  it('decodes in a decode thread (DECODE_THREADS) exactly as on the main thread', () => {
    const spec: DecoderSpec = { kind: 'archive-spans', maxMessageBytes: MAX, options: { encoding: 'auto' } };
    const local = new ArchiveSpanDecoder(MAX, { encoding: 'auto' });
    const answers: Array<Decoded<ArchiveRow>> = structuredClone(decodeChunk<ArchiveRow>(structuredClone({ spec, records: messages.map(toWireRecord) }))).map((a) => fromWire(a));
    messages.forEach((m, i) => {
      const expected = local.decode(m);
      const got = answers[i]!;
      // The same lines, held as text there (a record's bytes would cross back with all they view).
      const asText = (d: Decoded<ArchiveRow>) => (d.ok ? d.items.map(({ tenantId, value }) => ({ tenantId, day: value.day, line: typeof value.line === 'string' ? value.line : Buffer.from(value.line).toString('utf8') })) : d);
      if (expected.ok) {
        expect(asText(got)).toEqual(asText(expected));
        if (got.ok) for (const { value } of got.items) expect(typeof value.line).toBe('string');
      } else expect(!got.ok && [got.error.errorClass, got.error.message]).toEqual([expected.error.errorClass, expected.error.message]);
    });
  });

  it('holds a record that is its stored line as the record\'s own bytes, any other as text', () => {
    const decoder = new ArchiveSpanDecoder(MAX);
    const stored = { value: Buffer.from(JSON.stringify(storedSpan(generateSpan(tenant, 4, day), tenant))) };
    const decoded = decoder.decode(stored);
    if (!decoded.ok) throw decoded.error;
    expect(decoded.items[0]!.value.line).toBe(stored.value);
    const spaced = decoder.decode({ value: Buffer.from(JSON.stringify(JSON.parse(stored.value.toString()), null, 1)) });
    if (!spaced.ok) throw spaced.error;
    expect(spaced.items[0]!.value.line).toBe(stored.value.toString());
  });

  it('a scratch line is the run and exact position, then the stored line\'s fields', () => {
    const decoded = new ArchiveSpanDecoder(MAX).decode(messages[0]!);
    if (!decoded.ok) throw decoded.error;
    const text = String(decoded.items[0]!.value.line);
    const line = JSON.parse(`${scratchLinePrefix(7, 2n ** 60n + 1n, 3)},${text.slice(1)}`) as Record<string, unknown>;
    expect(line).toEqual({ r: 7, o: (2n ** 60n + 1n).toString(), i: 3, ...(JSON.parse(text) as object) });
  });
});
