import { isUtf8 } from 'node:buffer';
import type { Span } from './span.js';
import { decodeJsonTraces } from './otlp-decode-json.js';
import { decodeProtoTraces } from './otlp-decode-proto.js';

/** How a span record is encoded: spanledger's one-span JSON, or a whole OTLP ExportTraceServiceRequest. */
export type SpanEncoding = 'json' | 'otlp_proto' | 'otlp_json';
export type OtlpEncoding = Exclude<SpanEncoding, 'json'>;

const OPEN_BRACE = 0x7b;
const NEWLINE = 0x0a;
const RESOURCE_SPANS_KEY = Buffer.from('"resourceSpans"');

function isJsonWhitespace(byte: number | undefined): boolean {
  return byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d;
}

function skipWhitespace(value: Buffer, from: number): number {
  let i = from;
  while (isJsonWhitespace(value[i])) i += 1;
  return i;
}

/**
 * A cheap per-record guess, for SPANS_ENCODING=auto, from the first bytes only:
 * - an ExportTraceServiceRequest in protobuf starts with 0x0A (the tag of field 1,
 *   resource_spans), which is also a newline: a value starting with 0x0A is protobuf unless it is
 *   valid UTF-8 text whose first non-blank character is '{' (the random bytes of protobuf trace
 *   and span ids practically never are valid UTF-8);
 * - anything else is JSON: OTLP/JSON when the object's first key is "resourceSpans" (the only
 *   field of an ExportTraceServiceRequest), else spanledger JSON, whose decoder says what is
 *   wrong with a value that is neither (empty, binary, not JSON).
 */
export function detectEncoding(value: Buffer): SpanEncoding {
  const start = skipWhitespace(value, 0);
  if (value[0] === NEWLINE && (value[start] !== OPEN_BRACE || !isUtf8(value))) return 'otlp_proto';
  if (value[start] !== OPEN_BRACE) return 'json';
  const key = skipWhitespace(value, start + 1);
  // Buffer.compare throws (RangeError) on a source end past the value: a short record such as
  // `{"a":1}` would crash the worker instead of reaching the JSON decoder.
  if (key + RESOURCE_SPANS_KEY.length > value.length) return 'json';
  // Byte by byte, not Buffer#compare: a spanledger span differs at the key's second byte, and
  // compare's argument checks cost ~0.14 µs per record (bench/README, ninth session).
  for (let k = 0; k < RESOURCE_SPANS_KEY.length; k += 1) if (value[key + k] !== RESOURCE_SPANS_KEY[k]) return 'json';
  return 'otlp_json';
}

/**
 * All spans of one ExportTraceServiceRequest, in request order (resource by resource, scope by
 * scope), in spanledger's flat shape (mapping in otlp-values.ts), without tenantId: the resource
 * attributes are in `span.resource.attributes` (one object shared by the spans of a resource).
 * A request without spans gives []. The spans are not checked against SPAN_JSON_SCHEMA here (name
 * length, kind range, end ≥ start, …): run validateSpan on each.
 * Throws RecordRejectedError('InvalidOtlp', reason) for the whole request if it is not a valid
 * request, or if any span or link lacks a valid trace or span id.
 */
export function decodeOtlpTraces(value: Buffer, encoding: OtlpEncoding): Span[] {
  return encoding === 'otlp_proto' ? decodeProtoTraces(value) : decodeJsonTraces(value);
}
