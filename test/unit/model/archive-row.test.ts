import { describe, expect, it } from 'vitest';
import { SpanDecoder, type Decoded, type RawMessage } from '../../../src/model/decode.js';
import { decodeChunk, fromWire, toWireRecord, type DecoderSpec } from '../../../src/model/decode-thread.js';
import { generateSpan, malformedRecords, tenantIdFor } from '../../../src/model/generate.js';
import { ArchiveSpanDecoder, jsonLine, type ArchiveRow } from '../../../src/model/archive-row.js';

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
        const body = JSON.parse(value.body) as Record<string, unknown>;
        expect(body).toMatchObject({ t: span.traceId, s: span.spanId, n: span.name.replace('\ud800', '\ufffd'), b: String(span.startTimeUnixNano), a: span.attributes ?? {} });
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
      if (expected.ok) expect(got).toEqual(expected);
      else expect(!got.ok && [got.error.errorClass, got.error.message]).toEqual([expected.error.errorClass, expected.error.message]);
    });
  });

  it('a line is the body with its run and exact position in front', () => {
    const decoded = new ArchiveSpanDecoder(MAX).decode(messages[0]!);
    if (!decoded.ok) throw decoded.error;
    const body = decoded.items[0]!.value.body;
    const line = JSON.parse(jsonLine(7, 2n ** 60n + 1n, 3, body)) as Record<string, unknown>;
    expect(line).toEqual({ r: 7, o: (2n ** 60n + 1n).toString(), i: 3, ...(JSON.parse(body) as object) });
  });
});
