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
 * - a value that does not start with '{' (after optional JSON whitespace) is protobuf;
 *   except that a protobuf request starts with 0x0A (the tag of field 1, resource_spans), which is
 *   also a newline: "\n{" is taken as JSON only when the value is valid UTF-8 (the random bytes of
 *   protobuf trace and span ids practically never are);
 * - a JSON object whose first key is "resourceSpans" (the only field of an
 *   ExportTraceServiceRequest) is OTLP/JSON;
 * - anything else, including an empty value, is spanledger JSON (whose decoder says what is wrong).
 */
export function detectEncoding(value: Buffer): SpanEncoding {
  if (value.length === 0) return 'json';
  const start = skipWhitespace(value, 0);
  if (start === value.length) return 'json';
  if (value[start] !== OPEN_BRACE) return 'otlp_proto';
  if (value[0] === NEWLINE && !isUtf8(value)) return 'otlp_proto';
  const key = skipWhitespace(value, start + 1);
  return value.compare(RESOURCE_SPANS_KEY, 0, RESOURCE_SPANS_KEY.length, key, key + RESOURCE_SPANS_KEY.length) === 0 ? 'otlp_json' : 'json';
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
