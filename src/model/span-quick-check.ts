import { SPAN_KINDS, STATUS_CODES } from './span.js';

/**
 * A quick yes for the common span, written out by hand: true only when `validateSpan` (Ajv, the
 * schema in span.ts) accepts the value too; false means "ask Ajv", which gives the verdict and the
 * reason. So the decoder still accepts and rejects exactly what the schema says, with the same
 * messages, while the usual record skips Ajv's generic checks (~1.4 µs of a span's CPU, about as
 * much as parsing it: bench/README.md). It accepts a subset of the schema on purpose: lengths in
 * UTF-16 code units (at most the code points the schema counts), finite numbers only, and it
 * leaves spans with events or links, and anything unusual, to Ajv.
 * test/unit/model/span-quick-check.test.ts checks "quick yes ⇒ Ajv yes" on generated values.
 */
export function surelyValidSpan(span: Record<string, unknown>): boolean {
  let required = 0;
  for (const key in span) {
    const value = span[key];
    switch (key) {
      case 'tenantId':
        if (!isAnyCaseUuid(value)) return false;
        break;
      case 'traceId':
        if (!isHexId(value, 32)) return false;
        required += 1;
        break;
      case 'spanId':
        if (!isHexId(value, 16)) return false;
        required += 1;
        break;
      case 'parentSpanId':
        if (value !== '' && !isHexId(value, 16)) return false;
        break;
      case 'name':
        if (!isShortString(value, 1024)) return false;
        required += 1;
        break;
      case 'kind':
        if (!(isIntegerIn(value, 0, 5) || (typeof value === 'string' && (SPAN_KINDS as readonly string[]).includes(value)))) return false;
        break;
      case 'startTimeUnixNano':
      case 'endTimeUnixNano':
        if (!isUnixNano(value)) return false;
        required += 1;
        break;
      case 'attributes':
        if (!isAttributes(value)) return false;
        break;
      case 'status':
        if (!isStatus(value)) return false;
        break;
      case 'resource':
        if (!isPlainObject(value) || !onlyKey(value, 'attributes') || !isAttributes(value.attributes)) return false;
        break;
      case 'scope':
        if (!isScope(value)) return false;
        break;
      case 'traceState':
        if (!isShortString(value, 8192)) return false;
        break;
      default:
        // events, links, unknown fields: Ajv decides.
        return false;
    }
  }
  return required === 5;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A string of at most `max` UTF-16 code units (so at most `max` code points, as the schema counts). */
function isShortString(value: unknown, max: number): value is string {
  return typeof value === 'string' && value.length <= max;
}

function isIntegerIn(value: unknown, min: number, max: number): boolean {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
}

/** `length` lower-case hex digits, not all zeros. */
function isHexId(value: unknown, length: number): boolean {
  if (typeof value !== 'string' || value.length !== length) return false;
  let nonZero = false;
  for (let i = 0; i < length; i += 1) {
    const c = value.charCodeAt(i);
    if (c >= 0x30 && c <= 0x39) {
      if (c !== 0x30) nonZero = true;
    } else if (c >= 0x61 && c <= 0x66) nonZero = true;
    else return false;
  }
  return nonZero;
}

/** 8-4-4-4-12 hex digits of either case (TENANT_ID_PATTERN). */
function isAnyCaseUuid(value: unknown): boolean {
  if (typeof value !== 'string' || value.length !== 36) return false;
  for (let i = 0; i < 36; i += 1) {
    const c = value.charCodeAt(i);
    if (i === 8 || i === 13 || i === 18 || i === 23) {
      if (c !== 0x2d) return false;
    } else if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46))) return false;
  }
  return true;
}

/** 1 to 20 decimal digits, or a safe non-negative integer. */
function isUnixNano(value: unknown): boolean {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0;
  if (typeof value !== 'string' || value.length < 1 || value.length > 20) return false;
  for (let i = 0; i < value.length; i += 1) {
    const c = value.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

function isScalar(value: unknown): boolean {
  return value === null || typeof value === 'string' || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value));
}

/** An attribute map: names of 1 to 256 characters, values scalars or arrays of scalars. */
function isAttributes(value: unknown): boolean {
  if (!isPlainObject(value)) return false;
  for (const name in value) {
    if (name.length === 0 || name.length > 256) return false;
    const v = value[name];
    if (Array.isArray(v)) {
      for (const item of v) if (!isScalar(item)) return false;
    } else if (!isScalar(v)) return false;
  }
  return true;
}

function isStatus(value: unknown): boolean {
  if (!isPlainObject(value)) return false;
  for (const key in value) {
    const v = value[key];
    if (key === 'code') {
      if (!(isIntegerIn(v, 0, 2) || (typeof v === 'string' && (STATUS_CODES as readonly string[]).includes(v)))) return false;
    } else if (key === 'message') {
      if (!isShortString(v, 8192)) return false;
    } else return false;
  }
  return true;
}

function isScope(value: unknown): boolean {
  if (!isPlainObject(value) || typeof value.name !== 'string') return false;
  for (const key in value) {
    const v = value[key];
    if (key === 'name' || key === 'version') {
      if (!isShortString(v, 1024)) return false;
    } else if (key === 'attributes') {
      if (!isAttributes(v)) return false;
    } else return false;
  }
  return true;
}

/** The object has `key` and no other own enumerable key. */
function onlyKey(value: Record<string, unknown>, key: string): boolean {
  let found = false;
  for (const k in value) {
    if (k !== key) return false;
    found = true;
  }
  return found;
}
