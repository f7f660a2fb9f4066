/**
 * A span as the archive holds it from decoding until its cycle is written: its stored line (the
 * span log's line, which sinks/archive/columns.ts reads) and its day, made as soon as the record
 * is decoded. A cycle holds its spans for up to ARCHIVE_CYCLE_MAX_AGE_MS (~14,000 of them a
 * partition at the default 8 MiB): held as the decoded span objects (each an object graph:
 * attribute maps, status, resource, scope) they outlive V8's young generation and are promoted
 * and traced object by object (bench/README, seventh session). A record that already is its
 * stored line (stored-span-text.ts: what `spanledger produce` writes) is held as the record's own
 * bytes, which the pipeline keeps anyway until the record is committed (for its dead letter): no
 * copy of it is made at all, in the collected heap or outside it (bench/README, ninth session).
 */
import type { Decoded, RawMessage, RecordDecoder, SpanDecoderOptions } from './decode.js';
import { SpanDecoder, StoredSpanText } from './decode.js';
import type { StoredSpan } from './span-line.js';

export interface ArchiveRow {
  /** The span's UTC day (its start): the tenant-day its object is. */
  day: string;
  /**
   * The span's stored line, `{"tenantId":…}`, without a lone surrogate (wellFormed): the record's
   * own UTF-8 bytes when the record is that line, else its text. When the record leaves its tenant
   * to its header, the bytes are the line without its tenantId field: the archive reads no tenant
   * from a line (columns.ts). writeLines (parquet-writer.ts) puts its run and position in front.
   */
  line: Uint8Array | string;
}

/** The span worker's decoder (the same records accepted, the same reasons), answering ArchiveRows. */
export class ArchiveSpanDecoder implements RecordDecoder<ArchiveRow> {
  private readonly spans: SpanDecoder;

  constructor(maxMessageBytes: number, options: Partial<SpanDecoderOptions> = {}) {
    // The day names the object: always computed here. storedText: a record that is its stored
    // line is held as it is, never parsed (as its bytes unless options.recordBytes is false).
    this.spans = new SpanDecoder(maxMessageBytes, { recordBytes: true, ...options, withDay: true, storedText: true });
  }

  decode(message: RawMessage): Decoded<ArchiveRow> {
    const decoded = this.spans.decode(message);
    if (!decoded.ok) return decoded;
    // A StoredSpanText holds no lone surrogate: storedSpanFields takes no \u escape but a control
    // character's.
    return { ok: true, items: decoded.items.map(({ tenantId, value }) => ({ tenantId, value: { day: value.day!, line: value instanceof StoredSpanText ? (value.bytes ?? value.json) : storedLineOf(value.span) } })) };
  }
}

/** A decoded span's stored line as the archive reads it: the span log's line, well-formed. */
export function storedLineOf(span: StoredSpan): string {
  return wellFormed(JSON.stringify(span));
}

/**
 * The first part of a span's scratch line, `{"r":<run>,"o":"<offset>","i":<index>` (the offset as
 * text: exact past 2^53); writeLines (parquet-writer.ts) follows it with the span's stored line,
 * its `{` turned into a `,`.
 */
export function scratchLinePrefix(run: number, offset: bigint, index: number): string {
  return `{"r":${run},"o":"${offset}","i":${index}`;
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

