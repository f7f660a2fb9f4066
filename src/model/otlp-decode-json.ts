import { isUtf8 } from 'node:buffer';
import { RecordRejectedError } from '../errors.js';
import { SPAN_KINDS, STATUS_CODES, type AttributeValue, type InstrumentationScope, type Span, type SpanEvent, type SpanLink } from './span.js';
import { attributeValue, doubleValue, location, OtlpProblem, setEntry, type PlainValue } from './otlp-values.js';

/**
 * Spans of an OTLP/JSON ExportTraceServiceRequest, flattened in request order (mapping:
 * otlp-values.ts). Follows https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding:
 * lowerCamelCase field names (snake_case names are unknown fields), unknown fields ignored, null
 * means absent, ids as hex, enums as integers or names, 64-bit integers as decimal strings or
 * numbers, bytes as base64. Every field spanledger keeps is type-checked.
 */
export function decodeJsonTraces(value: Buffer): Span[] {
  if (!isUtf8(value)) throw new RecordRejectedError('InvalidOtlp', 'OTLP/JSON value is not valid UTF-8');
  let json: unknown;
  try {
    json = JSON.parse(value.toString('utf8'));
  } catch (e) {
    throw new RecordRejectedError('InvalidOtlp', `value is not JSON: ${(e as Error).message}`);
  }
  const spans: Span[] = [];
  let r = -1;
  let s = -1;
  let i = -1;
  try {
    const request = object(json, '');
    if (request === undefined) throw new OtlpProblem('', 'must be a JSON object');
    const resourceSpansList = list(request.resourceSpans, 'resourceSpans');
    for (r = 0; r < resourceSpansList.length; r += 1) {
      s = -1;
      i = -1;
      const resourceSpans = object(resourceSpansList[r], '') ?? {};
      const resource = { attributes: keyValues(object(resourceSpans.resource, 'resource')?.attributes, 'resource.attributes') };
      const scopeSpansList = list(resourceSpans.scopeSpans, 'scopeSpans');
      for (s = 0; s < scopeSpansList.length; s += 1) {
        i = -1;
        const scopeSpans = object(scopeSpansList[s], '') ?? {};
        const scope = instrumentationScope(object(scopeSpans.scope, 'scope'));
        const spanList = list(scopeSpans.spans, 'spans');
        for (i = 0; i < spanList.length; i += 1) spans.push(span(object(spanList[i], '') ?? {}, resource, scope));
      }
    }
  } catch (e) {
    if (!(e instanceof OtlpProblem)) throw e;
    throw new RecordRejectedError('InvalidOtlp', location(r, s, i, e));
  }
  return spans;
}

type JsonObject = Record<string, unknown>;

function instrumentationScope(scope: JsonObject | undefined): InstrumentationScope | undefined {
  if (scope === undefined) return undefined;
  const name = string(scope.name, 'scope.name');
  const version = string(scope.version, 'scope.version');
  const attributes = list(scope.attributes, 'scope.attributes');
  if (name === '' && version === '' && attributes.length === 0) return undefined;
  const result: InstrumentationScope = { name };
  if (version !== '') result.version = version;
  if (attributes.length > 0) result.attributes = keyValues(attributes, 'scope.attributes');
  return result;
}

function span(o: JsonObject, resource: Span['resource'], scope: InstrumentationScope | undefined): Span {
  const result: Span = {
    traceId: hexId(o.traceId, 16, 'traceId'),
    spanId: hexId(o.spanId, 8, 'spanId'),
    parentSpanId: parentId(o.parentSpanId),
    name: string(o.name, 'name'),
    kind: enumValue(o.kind, SPAN_KINDS, 'kind'),
    startTimeUnixNano: uint64(o.startTimeUnixNano, 'startTimeUnixNano'),
    endTimeUnixNano: uint64(o.endTimeUnixNano, 'endTimeUnixNano'),
    attributes: keyValues(o.attributes, 'attributes'),
    status: statusOf(object(o.status, 'status')),
    resource,
  };
  if (scope) result.scope = scope;
  const traceState = string(o.traceState, 'traceState');
  if (traceState !== '') result.traceState = traceState;
  const events = list(o.events, 'events');
  if (events.length > 0) {
    result.events = events.map((item, k): SpanEvent => {
      const e = object(item, `events[${k}]`) ?? {};
      const event: SpanEvent = { timeUnixNano: uint64(e.timeUnixNano, `events[${k}].timeUnixNano`), name: string(e.name, `events[${k}].name`) };
      const attributes = list(e.attributes, `events[${k}].attributes`);
      if (attributes.length > 0) event.attributes = keyValues(attributes, `events[${k}].attributes`);
      return event;
    });
  }
  const links = list(o.links, 'links');
  if (links.length > 0) {
    result.links = links.map((item, k): SpanLink => {
      const l = object(item, `links[${k}]`) ?? {};
      const link: SpanLink = { traceId: hexId(l.traceId, 16, `links[${k}].traceId`), spanId: hexId(l.spanId, 8, `links[${k}].spanId`) };
      const linkTraceState = string(l.traceState, `links[${k}].traceState`);
      if (linkTraceState !== '') link.traceState = linkTraceState;
      const attributes = list(l.attributes, `links[${k}].attributes`);
      if (attributes.length > 0) link.attributes = keyValues(attributes, `links[${k}].attributes`);
      return link;
    });
  }
  return result;
}

function statusOf(status: JsonObject | undefined): NonNullable<Span['status']> {
  if (status === undefined) return { code: 0 };
  const code = enumValue(status.code, STATUS_CODES, 'status.code');
  const message = string(status.message, 'status.message');
  return message === '' ? { code } : { code, message };
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (v === null) return 'null';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v).slice(0, 40)}`;
}

/** An object, or undefined for an absent or null field. */
function object(v: unknown, path: string): JsonObject | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw new OtlpProblem(path, `must be an object, got ${describe(v)}`);
  return v as JsonObject;
}

function list(v: unknown, path: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new OtlpProblem(path, `must be an array, got ${describe(v)}`);
  return v;
}

function string(v: unknown, path: string): string {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw new OtlpProblem(path, `must be a string, got ${describe(v)}`);
  return v;
}

const HEX_ID = { 8: /^[0-9a-fA-F]{16}$/, 16: /^[0-9a-fA-F]{32}$/ } as const;
const ALL_ZEROS = /^0+$/;

function hexId(v: unknown, bytes: 8 | 16, path: string): string {
  const text = string(v, path);
  if (text === '') throw new OtlpProblem(path, 'is missing');
  if (!HEX_ID[bytes].test(text)) throw new OtlpProblem(path, `must be ${bytes * 2} hex characters, got ${JSON.stringify(text.slice(0, 40))}`);
  if (ALL_ZEROS.test(text)) throw new OtlpProblem(path, 'must not be all zeros');
  return text.toLowerCase();
}

/** A root span has no parent id; some producers send zeros for it. */
function parentId(v: unknown): string {
  const text = string(v, 'parentSpanId');
  return text === '' || text === '0000000000000000' ? '' : hexId(text, 8, 'parentSpanId');
}

function enumValue(v: unknown, names: readonly string[], path: string): number {
  if (v === undefined || v === null) return 0;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < names.length) return v;
  const index = typeof v === 'string' ? names.indexOf(v) : -1;
  if (index === -1) throw new OtlpProblem(path, `must be 0..${names.length - 1} or ${names[0]!.replace(/_[A-Z]+$/, '_*')}, got ${describe(v)}`);
  return index;
}

const UINT64_MAX = 18446744073709551615n;
const INT64_MIN = -9223372036854775808n;
const INT64_MAX = 9223372036854775807n;
const DECIMAL = /^-?\d{1,20}$/;

/** A fixed64 (nanoseconds) as a decimal string; JSON numbers only while they are exact. */
function uint64(v: unknown, path: string): string {
  if (v === undefined || v === null) return '0';
  if (typeof v === 'number') {
    if (Number.isSafeInteger(v) && v >= 0) return String(v);
    throw new OtlpProblem(path, `must be an unsigned 64-bit integer (a decimal string above 2^53), got ${describe(v)}`);
  }
  if (typeof v === 'string' && DECIMAL.test(v) && v[0] !== '-') {
    const n = BigInt(v);
    if (n <= UINT64_MAX) return n.toString();
  }
  throw new OtlpProblem(path, `must be an unsigned 64-bit integer, got ${describe(v)}`);
}

/** An int64 attribute value: a number when exact, else its decimal string. */
function int64(v: unknown, path: string): number | string {
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
  if (typeof v === 'string' && DECIMAL.test(v)) {
    const n = BigInt(v);
    if (n >= INT64_MIN && n <= INT64_MAX) return Number.isSafeInteger(Number(n)) ? Number(n) : n.toString();
  }
  throw new OtlpProblem(path, `must be a 64-bit integer (a decimal string above 2^53), got ${describe(v)}`);
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/;
const BASE64_URL = /^[A-Za-z0-9_-]*$/;

/** Bytes in base64 (standard or URL-safe, as the protobuf JSON mapping allows), stored as standard base64. */
function bytes(v: unknown, path: string): string {
  const text = string(v, path);
  if (BASE64.test(text)) return text.endsWith('=') || text.length % 4 === 0 ? text : Buffer.from(text, 'base64').toString('base64');
  if (BASE64_URL.test(text) && text.length % 4 !== 1) return Buffer.from(text, 'base64url').toString('base64');
  throw new OtlpProblem(path, `must be base64, got ${describe(v)}`);
}

function double(v: unknown, path: string): number | string {
  if (typeof v === 'number') return v;
  if (v === 'NaN' || v === 'Infinity' || v === '-Infinity') return doubleValue(Number(v));
  throw new OtlpProblem(path, `must be a number, got ${describe(v)}`);
}

/** `problem` one level further down, below `prefix`. */
function below(prefix: string, problem: unknown): unknown {
  if (!(problem instanceof OtlpProblem)) return problem;
  return new OtlpProblem(problem.path === '' ? prefix : `${prefix}.${problem.path}`.replace('.[', '['), problem.message);
}

// Paths of problems are built only when there is one: attributes are the hot path.
function keyValues(v: unknown, path: string): Record<string, AttributeValue> {
  const map: Record<string, AttributeValue> = {};
  const entries = list(v, path);
  for (let k = 0; k < entries.length; k += 1) {
    let key: string | undefined;
    try {
      const kv = object(entries[k], '') ?? {};
      key = string(kv.key, 'key');
      setEntry(map, key, attributeValue(anyValue(kv.value)));
    } catch (e) {
      throw below(`${path}[${key === undefined ? k : JSON.stringify(key)}]`, e);
    }
  }
  return map;
}

/**
 * Deepest nesting of AnyValues in an attribute, as protobuf allows it (recursion limit 100: a
 * span attribute's value is the 6th message down, and each level adds an AnyValue and an
 * ArrayValue or KeyValueList). Without a limit a hostile record would overflow the stack.
 */
const MAX_VALUE_DEPTH = 47;

const ANY_VALUE_FIELDS = ['stringValue', 'boolValue', 'intValue', 'doubleValue', 'arrayValue', 'kvlistValue', 'bytesValue'] as const;

function anyValue(v: unknown, depth = 0): PlainValue {
  const o = object(v, '');
  if (o === undefined) return null;
  if (depth > MAX_VALUE_DEPTH) throw new OtlpProblem('', `values nested more than ${MAX_VALUE_DEPTH} levels deep`);
  let field: (typeof ANY_VALUE_FIELDS)[number] | undefined;
  for (const name of ANY_VALUE_FIELDS) {
    if (o[name] === undefined || o[name] === null) continue;
    if (field !== undefined) throw new OtlpProblem('', `has both ${field} and ${name}; an AnyValue holds one value`);
    field = name;
  }
  switch (field) {
    case 'stringValue':
      return string(o.stringValue, field);
    case 'boolValue':
      if (typeof o.boolValue !== 'boolean') throw new OtlpProblem(field, `must be a boolean, got ${describe(o.boolValue)}`);
      return o.boolValue;
    case 'intValue':
      return int64(o.intValue, field);
    case 'doubleValue':
      return double(o.doubleValue, field);
    case 'bytesValue':
      return bytes(o.bytesValue, field);
    case 'arrayValue':
      return list(object(o.arrayValue, field)?.values, 'arrayValue.values').map((item, k) => {
        try {
          return anyValue(item, depth + 1);
        } catch (e) {
          throw below(`arrayValue.values[${k}]`, e);
        }
      });
    case 'kvlistValue': {
      const result: { [key: string]: PlainValue } = {};
      const entries = list(object(o.kvlistValue, field)?.values, 'kvlistValue.values');
      for (let k = 0; k < entries.length; k += 1) {
        let key: string | undefined;
        try {
          const kv = object(entries[k], '') ?? {};
          key = string(kv.key, 'key');
          setEntry(result, key, anyValue(kv.value, depth + 1));
        } catch (e) {
          throw below(`kvlistValue[${key === undefined ? k : JSON.stringify(key)}]`, e);
        }
      }
      return result;
    }
    default:
      return null;
  }
}
