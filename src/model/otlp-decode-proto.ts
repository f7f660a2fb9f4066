import type protobuf from 'protobufjs';
import { RecordRejectedError } from '../errors.js';
import type { AttributeValue, InstrumentationScope, Span, SpanEvent, SpanLink } from './span.js';
import {
  ExportTraceServiceRequestType,
  type ProtoAnyValue,
  type ProtoExportTraceServiceRequest,
  type ProtoKeyValue,
  type ProtoScopeSpans,
  type ProtoSpan,
} from './otlp-proto.js';
import { attributeValue, doubleValue, idHex, location, OtlpProblem, setEntry, type PlainValue } from './otlp-values.js';

/** Spans of an otlp_proto ExportTraceServiceRequest, flattened in request order (mapping: otlp-values.ts). */
export function decodeProtoTraces(value: Uint8Array): Span[] {
  let request: ProtoExportTraceServiceRequest;
  try {
    request = ExportTraceServiceRequestType.decode(value) as unknown as ProtoExportTraceServiceRequest;
  } catch (e) {
    throw new RecordRejectedError('InvalidOtlp', `value is not a protobuf ExportTraceServiceRequest: ${(e as Error).message}`);
  }
  const spans: Span[] = [];
  let r = 0;
  let s = -1;
  let i = -1;
  try {
    for (; r < request.resourceSpans.length; r += 1) {
      s = -1;
      i = -1;
      const resourceSpans = request.resourceSpans[r]!;
      const resource = { attributes: keyValues(resourceSpans.resource?.attributes ?? []) };
      for (s = 0; s < resourceSpans.scopeSpans.length; s += 1) {
        i = -1;
        const scopeSpans = resourceSpans.scopeSpans[s]!;
        const scope = instrumentationScope(scopeSpans);
        for (i = 0; i < scopeSpans.spans.length; i += 1) spans.push(span(scopeSpans.spans[i]!, resource, scope));
      }
    }
  } catch (e) {
    if (e instanceof OtlpProblem) throw new RecordRejectedError('InvalidOtlp', location(r, s, i, e));
    throw e;
  }
  return spans;
}

function instrumentationScope(scopeSpans: ProtoScopeSpans): InstrumentationScope | undefined {
  const scope = scopeSpans.scope;
  if (!scope || (scope.name === '' && scope.version === '' && scope.attributes.length === 0)) return undefined;
  const result: InstrumentationScope = { name: scope.name };
  if (scope.version !== '') result.version = scope.version;
  if (scope.attributes.length > 0) result.attributes = keyValues(scope.attributes);
  return result;
}

function span(p: ProtoSpan, resource: Span['resource'], scope: InstrumentationScope | undefined): Span {
  const result: Span = {
    traceId: idHex(p.traceId, 16, 'traceId'),
    spanId: idHex(p.spanId, 8, 'spanId'),
    parentSpanId: parentId(p.parentSpanId),
    name: p.name,
    kind: p.kind,
    startTimeUnixNano: unsigned(p.startTimeUnixNano),
    endTimeUnixNano: unsigned(p.endTimeUnixNano),
    attributes: keyValues(p.attributes),
    status: p.status ? statusOf(p.status) : { code: 0 },
    resource,
  };
  if (scope) result.scope = scope;
  if (p.traceState !== '') result.traceState = p.traceState;
  if (p.events.length > 0) {
    result.events = p.events.map((e, k): SpanEvent => {
      const event: SpanEvent = { timeUnixNano: unsigned(e.timeUnixNano), name: e.name };
      if (e.attributes.length > 0) event.attributes = keyValues(e.attributes);
      return event;
    });
  }
  if (p.links.length > 0) {
    result.links = p.links.map((l, k): SpanLink => {
      const link: SpanLink = { traceId: idHex(l.traceId, 16, `links[${k}].traceId`), spanId: idHex(l.spanId, 8, `links[${k}].spanId`) };
      if (l.traceState !== '') link.traceState = l.traceState;
      if (l.attributes.length > 0) link.attributes = keyValues(l.attributes);
      return link;
    });
  }
  return result;
}

function statusOf(status: { message: string; code: number }): NonNullable<Span['status']> {
  return status.message === '' ? { code: status.code } : { code: status.code, message: status.message };
}

/** A root span has no parent id; some producers send 8 zero bytes for it. */
function parentId(bytes: Uint8Array): string {
  if (bytes.length === 0) return '';
  if (bytes.length === 8 && isAllZeros(bytes)) return '';
  return idHex(bytes, 8, 'parentSpanId');
}

function isAllZeros(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b !== 0) return false;
  return true;
}

const TWO_TO_32 = 4294967296;
/** Highest 32-bit half of a 64-bit integer below 2^53. */
const SAFE_HIGH = 0x1fffff;

/** fixed64 as a decimal string: nanosecond times are above 2^53, beyond what a number holds exactly. */
function unsigned(n: protobuf.Long): string {
  const high = n.high >>> 0;
  const low = n.low >>> 0;
  if (high <= SAFE_HIGH) return String(high * TWO_TO_32 + low);
  return ((BigInt(high) << 32n) | BigInt(low)).toString();
}

/** int64 as a number when it is a safe integer, else as its decimal string. */
function signed(n: protobuf.Long): number | string {
  const value = n.high * TWO_TO_32 + (n.low >>> 0);
  if (Number.isSafeInteger(value)) return value;
  return ((BigInt(n.high) << 32n) | BigInt(n.low >>> 0)).toString();
}

function keyValues(list: ProtoKeyValue[]): Record<string, AttributeValue> {
  const map: Record<string, AttributeValue> = {};
  for (const kv of list) {
    const v = kv.value ? anyValue(kv.value) : null;
    setEntry(map, kv.key, attributeValue(v));
  }
  return map;
}

const has = (v: ProtoAnyValue, field: keyof ProtoAnyValue) => Object.prototype.hasOwnProperty.call(v, field);

/** The set field of an AnyValue, checked in field order (see ANY_VALUE_PROTO in otlp-proto.ts). */
function anyValue(v: ProtoAnyValue): PlainValue {
  if (has(v, 'stringValue')) return v.stringValue;
  if (has(v, 'boolValue')) return v.boolValue;
  if (has(v, 'intValue')) return signed(v.intValue);
  if (has(v, 'doubleValue')) return doubleValue(v.doubleValue);
  if (has(v, 'arrayValue')) return v.arrayValue.values.map(anyValue);
  if (has(v, 'kvlistValue')) {
    const object: { [key: string]: PlainValue } = {};
    for (const kv of v.kvlistValue.values) setEntry(object, kv.key, kv.value ? anyValue(kv.value) : null);
    return object;
  }
  if (has(v, 'bytesValue')) return Buffer.from(v.bytesValue.buffer, v.bytesValue.byteOffset, v.bytesValue.byteLength).toString('base64');
  return null;
}
