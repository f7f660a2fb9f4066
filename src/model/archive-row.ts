/**
 * A span as the archive holds it from decoding until its cycle is written: the JSON text of its
 * line (which sinks/archive/columns.ts reads) and its day, made as soon as the record is decoded.
 * A cycle holds its spans for up to ARCHIVE_CYCLE_MAX_AGE_MS (~14,000 of them a partition at the
 * default 8 MiB): held as the decoded span objects (each an object graph: attribute maps, status,
 * resource, scope) they outlive V8's young generation and are promoted and traced object by
 * object; held as one string each they cost the collector one flat copy (bench/README, seventh
 * session).
 */
import type { Decoded, RawMessage, RecordDecoder, SpanDecoderOptions } from './decode.js';
import { SpanDecoder, StoredSpanText } from './decode.js';
import type { StoredSpan } from './span-line.js';
import { Slot } from './stored-span-text.js';

export interface ArchiveRow {
  /** The span's UTC day (its start): the tenant-day its object is. */
  day: string;
  /** The span's line without its position (jsonLine adds run, offset and index): `{"t":…}`. */
  body: string;
}

/** The span worker's decoder (the same records accepted, the same reasons), answering ArchiveRows. */
export class ArchiveSpanDecoder implements RecordDecoder<ArchiveRow> {
  private readonly spans: SpanDecoder;

  constructor(maxMessageBytes: number, options: Partial<SpanDecoderOptions> = {}) {
    // The day names the object: always computed here. storedText: a record that is its stored
    // line becomes its body by slicing, never parsed (bodyOfStoredLine).
    this.spans = new SpanDecoder(maxMessageBytes, { ...options, withDay: true, storedText: true });
  }

  decode(message: RawMessage): Decoded<ArchiveRow> {
    const decoded = this.spans.decode(message);
    if (!decoded.ok) return decoded;
    // A stored line's fields were found by the decode just made (storedFieldsAt).
    return { ok: true, items: decoded.items.map(({ tenantId, value }) => ({ tenantId, value: { day: value.day!, body: value instanceof StoredSpanText ? bodyOfStoredLine(value.json, this.spans.storedFieldsAt) : spanLineBody(value.span) } })) };
  }
}

/**
 * spanLineBody of a span whose record is its stored line (stored-span-text.ts), from the line's
 * own text and where storedSpanFields found its fields (`at`): each value is already written as
 * JSON.stringify writes it (and holds no lone surrogate: the fast path takes no \u escape but a
 * control character's), so the body is the values' slices under the body's keys, in its order.
 */
export function bodyOfStoredLine(text: string, at: Int32Array): string {
  // Joined, not concatenated: a cycle holds the body for up to a minute, and a concatenation of
  // slices is a tree of string pieces that keeps the whole record text alive (measured: V8's
  // helpers +2 µs per span, peak RSS +150 MiB); join copies into one flat string.
  const parts: string[] = [];
  const add = (key: string, slot: number) => {
    if (at[2 * slot]! >= 0) parts.push(key, text.slice(at[2 * slot]!, at[2 * slot + 1]!));
  };
  add('{"t":', Slot.TraceId);
  add(',"s":', Slot.SpanId);
  add(',"p":', Slot.ParentSpanId);
  add(',"n":', Slot.Name);
  add(',"k":', Slot.Kind);
  add(',"b":', Slot.Start);
  add(',"e":', Slot.End);
  add(',"a":', Slot.Attributes);
  add(',"c":', Slot.StatusCode);
  add(',"m":', Slot.StatusMessage);
  add(',"ra":', Slot.ResourceAttributes);
  add(',"sn":', Slot.ScopeName);
  add(',"sv":', Slot.ScopeVersion);
  add(',"sa":', Slot.ScopeAttributes);
  add(',"ts":', Slot.TraceState);
  parts.push('}');
  return parts.join('');
}

const EMPTY = Object.freeze({});

/** An exact decimal integer's text: a schema-valid time may be a JSON number or a string. */
function decimalText(value: string | number): string {
  return typeof value === 'string' ? value : BigInt(value).toString();
}

/**
 * One span's line without its position (keys: LINE_KEYS of sinks/archive/columns.ts), made when
 * the record is decoded (ArchiveRow): attribute maps, events and links written as they are and
 * read as JSON text (DuckDB keeps their text), the times as decimal text. Lone surrogates are
 * replaced by U+FFFD (see wellFormed).
 */
export function spanLineBody(span: StoredSpan): string {
  return wellFormed(
    JSON.stringify({
      t: span.traceId,
      s: span.spanId,
      p: span.parentSpanId,
      n: span.name,
      k: span.kind,
      b: decimalText(span.startTimeUnixNano),
      e: decimalText(span.endTimeUnixNano),
      a: span.attributes ?? EMPTY,
      c: span.status?.code ?? 0,
      m: span.status?.message,
      ra: span.resource?.attributes ?? EMPTY,
      sn: span.scope?.name,
      sv: span.scope?.version,
      sa: span.scope?.attributes,
      ts: span.traceState,
      ev: span.events,
      li: span.links,
    }),
  );
}

/**
 * One span as a JSON line of the cycle's scratch file, which DuckDB's read_json turns into a row
 * of the COPY's input: its run, its offset (as text: exact past 2^53) and index, then its body.
 */
export function jsonLine(run: number, offset: bigint, index: number, body: string): string {
  return `{"r":${run},"o":"${offset}","i":${index},${body.slice(1)}`;
}

/** JSON.stringify escapes a lone surrogate as `\\udXXX` (and writes paired ones as they are). */
const LONE_SURROGATE = /(?<!\\)((?:\\\\)*)\\ud[89a-f][0-9a-f]{2}/g;

/**
 * The JSON text with every lone UTF-16 surrogate (a JSON string may hold one, `"\\ud800"`)
 * replaced by U+FFFD: Parquet strings are UTF-8, which cannot hold one, and DuckDB refuses such
 * JSON. The span log keeps the original; the archive holds the replacement character (in every
 * column: the whole line goes through here).
 */
export function wellFormed(json: string): string {
  return json.includes('\\ud') ? json.replace(LONE_SURROGATE, '$1\\ufffd') : json;
}

