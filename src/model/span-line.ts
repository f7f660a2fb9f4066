import { SPAN_KINDS, STATUS_CODES, type Span } from './span.js';

/** Most spans one record may hold: a span's position keeps its index in 24 bits. */
export const MAX_SPANS_PER_RECORD = 1 << 24;

/**
 * The one shape a span has in the span log, whatever encoding it came in (spanledger JSON,
 * OTLP protobuf, OTLP/JSON): the same span gives the same line. Fields in this order:
 *
 *   tenantId, traceId, spanId, parentSpanId ('' for a root), name, kind (0..5),
 *   startTimeUnixNano, endTimeUnixNano (decimal strings), attributes ({} when none),
 *   status {code (0..2), message (only when not empty)}, resource {attributes},
 *   then only when present: scope, traceState, events, links.
 *
 * Ids are lower-case hex (the schema admits nothing else), enums are numbers, 64-bit times are
 * strings so that no reader loses precision.
 */
export type StoredSpan = Span & { tenantId: string; parentSpanId: string; kind: number; startTimeUnixNano: string; endTimeUnixNano: string };

export function storedSpan(span: Span, tenantId: string): StoredSpan {
  const status: { code: number; message?: string } = { code: enumNumber(span.status?.code, STATUS_CODES) };
  if (span.status?.message) status.message = span.status.message;
  const out: StoredSpan = {
    tenantId,
    traceId: span.traceId,
    spanId: span.spanId,
    parentSpanId: span.parentSpanId ?? '',
    name: span.name,
    kind: enumNumber(span.kind, SPAN_KINDS),
    startTimeUnixNano: String(span.startTimeUnixNano),
    endTimeUnixNano: String(span.endTimeUnixNano),
    attributes: span.attributes ?? {},
    status,
    resource: { attributes: span.resource?.attributes ?? {} },
  };
  if (span.scope !== undefined) out.scope = span.scope;
  if (span.traceState) out.traceState = span.traceState;
  if (span.events !== undefined && span.events.length > 0) out.events = span.events;
  if (span.links !== undefined && span.links.length > 0) out.links = span.links;
  return out;
}

/** An OTLP enum given as its number or its name (already schema-checked) → its number. */
function enumNumber(value: number | string | undefined, names: readonly string[]): number {
  if (value === undefined) return 0;
  return typeof value === 'number' ? value : names.indexOf(value);
}
