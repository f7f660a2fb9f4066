import type { AttributeValue } from './span.js';

/**
 * How OTLP maps onto spanledger's flat span (the same for otlp_proto and otlp_json):
 *
 * - trace/span ids: bytes (protobuf) or hex (JSON, any letter case) → lower-case hex; a trace id
 *   must be 16 bytes and a span id 8 bytes, not all zeros; a missing parent (or 8 zero bytes) → '';
 * - times (fixed64 nanoseconds) → decimal strings;
 * - kind and status code → integers (JSON may use the names, SPAN_KIND_SERVER);
 * - attribute values (AnyValue) → a flat map:
 *   string, bool → as they are;
 *   int (int64) → a number when it is a safe integer, else its decimal string;
 *   double → a number; NaN, Infinity, -Infinity → those words as strings (JSON has no such numbers);
 *   bytes → a base64 string;
 *   an array of scalars → an array of the scalars mapped as above (an empty AnyValue → null);
 *   a kvlist, or an array holding an array or a kvlist → one JSON string of the whole value
 *   (kvlists as objects, everything inside mapped as above);
 *   an empty AnyValue → null;
 *   keys must be unique (OTLP says so); a repeated key keeps its last value;
 * - resource attributes → resource.attributes (always present, maybe {});
 * - instrumentation scope → scope {name, version?, attributes?} when it has any of them;
 * - traceState, events [{timeUnixNano, name, attributes?}] and links
 *   [{traceId, spanId, traceState?, attributes?}] → kept when non-empty;
 * - status → {code} plus message when non-empty (absent status → code 0);
 * - not kept: flags, dropped_*_count, schema_url.
 */
export type PlainValue = string | number | boolean | null | PlainValue[] | { [key: string]: PlainValue };

/** A problem in an OTLP request, at `path` below the object being walked. */
export class OtlpProblem extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(message);
  }
}

/** `map[key] = value` that also works for the key "__proto__" (kept as an own property, as JSON.parse does). */
export function setEntry<T>(map: Record<string, T>, key: string, value: T): void {
  if (key === '__proto__') Object.defineProperty(map, key, { value, enumerable: true, writable: true, configurable: true });
  else map[key] = value;
}

/** A double as spanledger stores it: JSON has no NaN or infinities, so they become their names. */
export function doubleValue(n: number): number | string {
  return Number.isFinite(n) ? n : String(n);
}

function isScalar(v: PlainValue): v is string | number | boolean | null {
  return v === null || typeof v !== 'object';
}

/** A decoded AnyValue as an attribute value: arrays of scalars stay arrays, anything nested becomes JSON text. */
export function attributeValue(v: PlainValue): AttributeValue {
  if (isScalar(v)) return v;
  if (Array.isArray(v) && v.every(isScalar)) return v as Array<string | number | boolean | null>;
  return JSON.stringify(v);
}

const HEX = '0123456789abcdef';

/** Lower-case hex of a byte id (trace/span id), checked for length and not all zeros. */
export function idHex(bytes: Uint8Array, length: number, field: string): string {
  if (bytes.length !== length) throw new OtlpProblem(field, bytes.length === 0 ? 'is missing' : `must be ${length} bytes, got ${bytes.length}`);
  let hex = '';
  let zero = true;
  for (let i = 0; i < length; i += 1) {
    const b = bytes[i]!;
    if (b !== 0) zero = false;
    hex += HEX[b >> 4]! + HEX[b & 15]!;
  }
  if (zero) throw new OtlpProblem(field, 'must not be all zeros');
  return hex;
}

const MAX_PATH_LENGTH = 400;

/** Where in the request a problem is, for the reason text; resource -1 means the request itself. */
export function location(resource: number, scope: number, span: number, problem: OtlpProblem): string {
  let at = resource < 0 ? '' : `resourceSpans[${resource}]`;
  if (scope >= 0) at += `.scopeSpans[${scope}]`;
  if (span >= 0) at += `.spans[${span}]`;
  if (problem.path) at += at === '' ? problem.path : `.${problem.path}`;
  // Deeply nested values make long paths; the reason must still fit (capReason) and end with the problem.
  // Never cut a surrogate pair in half: the reason travels in a UTF-8 header.
  if (at.length > MAX_PATH_LENGTH) at = `${at.slice(0, MAX_PATH_LENGTH / 2).replace(/[\uD800-\uDBFF]$/, '')}…${at.slice(-MAX_PATH_LENGTH / 2).replace(/^[\uDC00-\uDFFF]/, '')}`;
  return `${at || 'request'}: ${problem.message}`;
}
