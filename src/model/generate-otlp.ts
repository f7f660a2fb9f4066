import { randomBytes } from 'node:crypto';
import type { AttributeValue, InstrumentationScope, Span } from './span.js';
import type { OtlpEncoding } from './otlp.js';
import { ExportTraceServiceRequestType } from './otlp-proto.js';

/** One resource of a request, with its spans by instrumentation scope, in spanledger's flat span shape. */
export interface OtlpResourceSpans {
  resource: Record<string, AttributeValue>;
  scopeSpans: Array<{ scope: InstrumentationScope; spans: Span[] }>;
}

type OtlpJsonValue = Record<string, unknown>;

function anyValue(v: AttributeValue): OtlpJsonValue {
  if (v === null) return {};
  if (Array.isArray(v)) return { arrayValue: { values: v.map(anyValue) } };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  // As the Collector writes them: int64 as a decimal string.
  return Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v };
}

function keyValues(attributes: Record<string, AttributeValue> | undefined): OtlpJsonValue[] {
  return Object.entries(attributes ?? {}).map(([key, value]) => ({ key, value: anyValue(value) }));
}

/** The OTLP/JSON form of a request (ids as hex): the reverse of decodeOtlpTraces, for generators and tests. */
function otlpJsonRequest(resourceSpans: OtlpResourceSpans[]): OtlpJsonValue {
  return {
    resourceSpans: resourceSpans.map((r) => ({
      resource: { attributes: keyValues(r.resource) },
      scopeSpans: r.scopeSpans.map((s) => ({
        scope: { name: s.scope.name, version: s.scope.version, attributes: keyValues(s.scope.attributes) },
        spans: s.spans.map((span) => ({
          traceId: span.traceId,
          spanId: span.spanId,
          parentSpanId: span.parentSpanId ?? '',
          traceState: span.traceState,
          name: span.name,
          kind: span.kind,
          startTimeUnixNano: String(span.startTimeUnixNano),
          endTimeUnixNano: String(span.endTimeUnixNano),
          attributes: keyValues(span.attributes),
          events: (span.events ?? []).map((e) => ({ timeUnixNano: String(e.timeUnixNano), name: e.name, attributes: keyValues(e.attributes) })),
          links: (span.links ?? []).map((l) => ({ traceId: l.traceId, spanId: l.spanId, traceState: l.traceState, attributes: keyValues(l.attributes) })),
          status: span.status,
        })),
      })),
    })),
  };
}

const hexToBytes = (hex: string) => Buffer.from(hex, 'hex');

/** Encodes spans as one ExportTraceServiceRequest (protobuf through the OTLP schema, or OTLP/JSON). */
export function encodeOtlpRequest(resourceSpans: OtlpResourceSpans[], encoding: OtlpEncoding): Buffer {
  const request = otlpJsonRequest(resourceSpans);
  if (encoding === 'otlp_json') return Buffer.from(JSON.stringify(request));
  // Protobuf carries ids as bytes; everything else converts as protobufjs reads JSON.
  for (const r of request.resourceSpans as Array<{ scopeSpans: Array<{ spans: OtlpJsonValue[] }> }>) {
    for (const s of r.scopeSpans) {
      for (const span of s.spans) {
        span.traceId = hexToBytes(span.traceId as string);
        span.spanId = hexToBytes(span.spanId as string);
        span.parentSpanId = hexToBytes(span.parentSpanId as string);
        for (const link of span.links as OtlpJsonValue[]) {
          link.traceId = hexToBytes(link.traceId as string);
          link.spanId = hexToBytes(link.spanId as string);
        }
      }
    }
  }
  return Buffer.from(ExportTraceServiceRequestType.encode(ExportTraceServiceRequestType.fromObject(request)).finish());
}

export interface GeneratedOtlpRequest {
  /** The encoded ExportTraceServiceRequest. */
  value: Buffer;
  /** Message key: the tenant id (a request holds several traces, all of one tenant). */
  key: string;
  tenantId: string;
  /** Exactly what decodeOtlpTraces returns for `value`, in the same order. */
  spans: Span[];
}

const SERVICES = ['frontend', 'checkout', 'payments', 'inventory'];
const OPERATIONS = ['GET /cart', 'POST /orders', 'SELECT orders', 'cache.get', 'charge'];
export const GENERATOR_SCOPE: InstrumentationScope = { name: 'spanledger.generate-otlp', version: '1.0.0' };

/**
 * A realistic request of one tenant: `spanCount` spans in traces of up to `spansPerTrace` spans
 * (a SERVER root, children pointing at the root or the previous span), spread over two services,
 * each a resource with service.name and tenant.id, with one instrumentation scope.
 * Ids are random; `seq` numbers the spans (attribute spanledger.seq = seq, seq+1, …).
 */
export function generateOtlpRequest(tenantId: string, spanCount: number, encoding: OtlpEncoding, seq = 0, nowMs = Date.now(), spansPerTrace = 8): GeneratedOtlpRequest {
  const ids = randomBytes(spanCount * 24);
  const services = [SERVICES[seq % SERVICES.length]!, SERVICES[(seq + 1) % SERVICES.length]!];
  const byService: Span[][] = [[], []];
  const start = BigInt(nowMs) * 1_000_000n;
  let traceId = '';
  let rootSpanId = '';
  let previousSpanId = '';
  for (let i = 0; i < spanCount; i += 1) {
    const position = i % spansPerTrace;
    if (position === 0) traceId = ids.toString('hex', i * 24, i * 24 + 16);
    const spanId = ids.toString('hex', i * 24 + 16, i * 24 + 24);
    const parentSpanId = position === 0 ? '' : position % 2 === 1 ? rootSpanId : previousSpanId;
    const failed = (seq + i) % 17 === 0;
    const spanStart = start + BigInt(position) * 1_000_000n + BigInt(i % 1000);
    const span: Span = {
      traceId,
      spanId,
      parentSpanId,
      name: OPERATIONS[(seq + i) % OPERATIONS.length]!,
      kind: position === 0 ? 2 : 3 - (position % 2) * 2,
      startTimeUnixNano: spanStart.toString(),
      endTimeUnixNano: (spanStart + BigInt(1 + ((seq + i) % 5000)) * 1000n).toString(),
      attributes: { 'http.response.status_code': failed ? 500 : 200, 'spanledger.seq': seq + i },
      status: failed ? { code: 2, message: 'internal error' } : { code: 1 },
    };
    byService[position === 0 ? 0 : 1]!.push(span);
    if (position === 0) rootSpanId = spanId;
    previousSpanId = spanId;
  }
  const resourceSpans: OtlpResourceSpans[] = [];
  const spans: Span[] = [];
  services.forEach((service, k) => {
    if (byService[k]!.length === 0) return;
    const resource = { 'service.name': service, 'tenant.id': tenantId };
    resourceSpans.push({ resource, scopeSpans: [{ scope: GENERATOR_SCOPE, spans: byService[k]! }] });
    for (const span of byService[k]!) spans.push({ ...span, resource: { attributes: resource }, scope: GENERATOR_SCOPE });
  });
  return { value: encodeOtlpRequest(resourceSpans, encoding), key: tenantId, tenantId, spans };
}
