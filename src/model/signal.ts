import { compile } from './json-schema.js';
import { CANONICAL_UUID_PATTERN } from './span.js';
import { TENANT_ID_PATTERN } from './tenant.js';

export const SEVERITIES = ['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'] as const;
export type Severity = (typeof SEVERITIES)[number];

/**
 * A signal: one rule hit found in a trace. `id` is the idempotency key within its tenant: the
 * TigerBeetle transfer id is derived from (tenantId, id) and `id` is the primary key of the
 * tenant's own DuckDB database.
 */
export interface Signal {
  id: string;
  tenantId: string;
  ruleId: string;
  traceId: string;
  /** RFC 3339 time at which the rule fired, e.g. 2026-11-24T10:00:00.000Z. */
  timestamp: string;
  severity: Severity;
  message: string;
  metadata: Record<string, unknown>;
}

/** RFC 3339 date-time with an offset; the field values are checked by parseSignalTime. */
const SIGNAL_TIME_PATTERN = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:Z|([+-])(\d{2}):(\d{2}))$/;

const uuid = { type: 'string', pattern: CANONICAL_UUID_PATTERN, description: 'must be a canonical lower-case UUID' };

export const SIGNAL_JSON_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'tenantId', 'ruleId', 'traceId', 'timestamp', 'severity', 'message', 'metadata'],
  properties: {
    id: uuid,
    tenantId: { type: 'string', pattern: TENANT_ID_PATTERN, description: 'must be a UUID' },
    ruleId: { type: 'string', minLength: 1, maxLength: 256, description: 'must be 1 to 256 characters' },
    traceId: { type: 'string', pattern: '^[0-9a-f]{32}$', description: 'must be 32 lower-case hex characters' },
    timestamp: {
      type: 'string',
      pattern: SIGNAL_TIME_PATTERN.source,
      description: 'must be an RFC 3339 date-time with an offset, e.g. 2026-11-24T10:00:00.000Z',
    },
    severity: { enum: [...SEVERITIES], description: `must be one of ${SEVERITIES.join(', ')}` },
    message: { type: 'string', maxLength: 8192, description: 'must be at most 8192 characters' },
    metadata: { type: 'object' },
  },
} as const;

export const validateSignal = compile<Signal>(SIGNAL_JSON_SCHEMA);

/**
 * The latest signal time both stores hold alike: 9999-12-31T23:59:59.999Z (UTC). TigerBeetle's
 * user_data_64 (u64 ms) and DuckDB's TIMESTAMPTZ (int64 µs) reach much further, but a later
 * instant has no four-digit UTC year, which ISO 8601 readers (and the span path) refuse.
 */
export const SIGNAL_TIME_MAX_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/** TigerBeetle reserves ids 0 and 2^128-1; as signal ids they would mean "no id" to readers. */
const RESERVED_SIGNAL_IDS = new Set(['00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff']);

export type SignalTime = { ok: true; epochMs: number } | { ok: false; reason: string };

function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/**
 * A signal time as whole milliseconds since the Unix epoch (sub-millisecond digits dropped), or
 * why it is not one both stores hold alike. Stricter than Date.parse on purpose: V8 rolls
 * 2026-02-30 over to March 2 and takes hour 24, DuckDB refuses the former and takes offsets such
 * as +24:00 that V8 refuses; every field must be in its RFC 3339 range, so both read one instant.
 */
export function parseSignalTime(timestamp: string): SignalTime {
  const m = SIGNAL_TIME_PATTERN.exec(timestamp);
  if (!m) return { ok: false, reason: 'is not an RFC 3339 date-time with an offset' };
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  if (month < 1 || month > 12) return { ok: false, reason: `has month ${m[2]}` };
  if (day < 1 || day > daysInMonth(year, month)) return { ok: false, reason: `has day ${m[3]}, not a day of ${m[1]}-${m[2]}` };
  if (Number(m[4]) > 23 || Number(m[5]) > 59 || Number(m[6]) > 59) {
    return { ok: false, reason: `has time of day ${m[4]}:${m[5]}:${m[6]} (hours 00-23, minutes and seconds 00-59)` };
  }
  const offsetHours = m[9] === undefined ? 0 : Number(m[9]);
  const offsetMinutes = m[10] === undefined ? 0 : Number(m[10]);
  if (offsetHours > 23 || offsetMinutes > 59) return { ok: false, reason: `has offset ${m[8]}${m[9]}:${m[10]} (hours 00-23, minutes 00-59)` };
  // Also keeps Date.UTC away from years 0-99, which it reads as 1900-1999.
  if (year < 1969) return { ok: false, reason: BEFORE_1970 };
  const fractionMs = m[7] === undefined ? 0 : Number(m[7].slice(0, 3).padEnd(3, '0'));
  const offsetMs = (m[8] === '-' ? -1 : 1) * (offsetHours * 60 + offsetMinutes) * 60_000;
  const epochMs = Date.UTC(year, month - 1, day, Number(m[4]), Number(m[5]), Number(m[6]), fractionMs) - offsetMs;
  if (epochMs < 0) return { ok: false, reason: BEFORE_1970 };
  if (epochMs > SIGNAL_TIME_MAX_MS) return { ok: false, reason: 'is after 9999-12-31T23:59:59.999Z' };
  return { ok: true, epochMs };
}

/** Where signalTime keeps a signal's parsed time, on the signal object itself (see signalTime). */
const SIGNAL_TIME = Symbol('spanledger.signalTime');
type WithSignalTime = Signal & { [SIGNAL_TIME]?: { timestamp: string; time: SignalTime } };

/**
 * parseSignalTime of a signal's timestamp, parsed once per signal object: the decoder's check and
 * both stores need it (three parses were 5% of a signal worker's CPU over 8 tenants). Kept under a
 * non-enumerable symbol key on the signal, which JSON.stringify, spreads, equality checks and
 * structured clones skip; a WeakMap cost 1-3 µs more per signal (its entries are ephemerons,
 * which the collector must revisit).
 */
export function signalTime(signal: Signal): SignalTime {
  const cached = (signal as WithSignalTime)[SIGNAL_TIME];
  if (cached !== undefined && cached.timestamp === signal.timestamp) return cached.time;
  const time = parseSignalTime(signal.timestamp);
  const entry = { timestamp: signal.timestamp, time };
  if (cached === undefined) Object.defineProperty(signal, SIGNAL_TIME, { value: entry, writable: true });
  else (signal as WithSignalTime)[SIGNAL_TIME] = entry;
  return time;
}

const BEFORE_1970 = 'is before 1970-01-01T00:00:00Z (TigerBeetle keeps the time as unsigned milliseconds)';

/** Deepest metadata nesting accepted: serializing it again (JSON.stringify) recurses per level. */
export const SIGNAL_METADATA_MAX_DEPTH = 64;

/** A string holding a UTF-16 surrogate without its pair (`\ud800` in JSON): not Unicode text. */
const LONE_SURROGATE = /\p{Cs}/u;

/** Where `value` has a string (value or key) that is not valid Unicode, or is nested too deep. */
function metadataProblem(value: unknown, path: string, depth: number, checkStrings: boolean): string | undefined {
  if (typeof value === 'string') return checkStrings && LONE_SURROGATE.test(value) ? `${path}: contains a lone UTF-16 surrogate (not valid Unicode)` : undefined;
  if (typeof value !== 'object' || value === null) return undefined;
  if (depth > SIGNAL_METADATA_MAX_DEPTH) return `${path}: nested deeper than ${SIGNAL_METADATA_MAX_DEPTH} levels`;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const problem = metadataProblem(value[i], `${path}[${i}]`, depth + 1, checkStrings);
      if (problem) return problem;
    }
    return undefined;
  }
  for (const key in value) {
    if (checkStrings && LONE_SURROGATE.test(key)) return `${path}: a key contains a lone UTF-16 surrogate (not valid Unicode)`;
    const problem = metadataProblem((value as Record<string, unknown>)[key], `${path}.${key}`, depth + 1, checkStrings);
    if (problem) return problem;
  }
  return undefined;
}

/**
 * Why a signal that passed the schema would still be refused, or stored differently, by one of
 * the two stores; undefined when both take it alike. Checked before either store is written, so
 * DuckDB and TigerBeetle never disagree because of a record's content. (Conflicts with what a
 * store already holds under the same id are the stores' own to find.) `mayHaveLoneSurrogates`
 * false skips the Unicode checks: JSON text without a `\u` escape cannot produce a lone surrogate.
 */
export function signalValueProblem(signal: Signal, mayHaveLoneSurrogates = true): { errorClass: string; message: string } | undefined {
  if (RESERVED_SIGNAL_IDS.has(signal.id)) return { errorClass: 'InvalidSignalId', message: `id: ${signal.id} is reserved (TigerBeetle forbids ids 0 and 2^128-1)` };
  const time = signalTime(signal);
  if (!time.ok) return { errorClass: 'InvalidTimestamp', message: `timestamp: ${JSON.stringify(signal.timestamp)} ${time.reason}` };
  // DuckDB's VARCHAR and JSON are UTF-8: a lone surrogate is refused (JSON) or silently replaced by U+FFFD (VARCHAR).
  for (const field of ['ruleId', 'message'] as const) {
    if (mayHaveLoneSurrogates && LONE_SURROGATE.test(signal[field])) {
      return { errorClass: 'SchemaViolation', message: `${field}: contains a lone UTF-16 surrogate (not valid Unicode)` };
    }
  }
  const problem = metadataProblem(signal.metadata, 'metadata', 1, mayHaveLoneSurrogates);
  if (problem) return { errorClass: 'SchemaViolation', message: problem };
  return undefined;
}
