import { compile } from './json-schema.js';
import { TENANT_ID_PATTERN } from './tenant.js';

/**
 * One span per Kafka message, JSON, shaped after OpenTelemetry's span data model (the field names
 * of OTLP/JSON, with attributes as a plain map so that the span log stays easy to query).
 * `tenantId` is optional in the body: a `tenant-id` header may carry it instead.
 */
export type AttributeValue = string | number | boolean | null | Array<string | number | boolean | null>;

export interface Span {
  tenantId?: string;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind?: number | string;
  startTimeUnixNano: string | number;
  endTimeUnixNano: string | number;
  attributes?: Record<string, AttributeValue>;
  status?: { code?: number | string; message?: string };
  resource?: { attributes: Record<string, AttributeValue> };
  /** From OTLP: the instrumentation scope, the W3C tracestate, span events and links. */
  scope?: InstrumentationScope;
  traceState?: string;
  events?: SpanEvent[];
  links?: SpanLink[];
}

export interface InstrumentationScope {
  name: string;
  version?: string;
  attributes?: Record<string, AttributeValue>;
}

export interface SpanEvent {
  timeUnixNano: string | number;
  name: string;
  attributes?: Record<string, AttributeValue>;
}

export interface SpanLink {
  traceId: string;
  spanId: string;
  traceState?: string;
  attributes?: Record<string, AttributeValue>;
}

/** OTLP span kinds, as integers (OTLP/JSON) or as their names. */
export const SPAN_KINDS = [
  'SPAN_KIND_UNSPECIFIED',
  'SPAN_KIND_INTERNAL',
  'SPAN_KIND_SERVER',
  'SPAN_KIND_CLIENT',
  'SPAN_KIND_PRODUCER',
  'SPAN_KIND_CONSUMER',
] as const;
export const STATUS_CODES = ['STATUS_CODE_UNSET', 'STATUS_CODE_OK', 'STATUS_CODE_ERROR'] as const;

export const CANONICAL_UUID_PATTERN = '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';

const scalar = { type: ['string', 'number', 'boolean', 'null'] };
const attributes = {
  type: 'object',
  propertyNames: { minLength: 1, maxLength: 256 },
  additionalProperties: { anyOf: [scalar, { type: 'array', items: scalar }], description: 'attribute values must be strings, numbers, booleans, null or arrays of them' },
};
const hexId = (n: number) => ({
  type: 'string',
  pattern: `^(?!0+$)[0-9a-f]{${n}}$`,
  description: `must be ${n} lower-case hex characters, not all zeros`,
});
const unixNano = {
  anyOf: [
    { type: 'string', pattern: '^\\d{1,20}$' },
    { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
  ],
  description: 'must be nanoseconds since the epoch: a decimal string or a safe integer',
};
const traceState = { type: 'string', maxLength: 8192 };

export const SPAN_JSON_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['traceId', 'spanId', 'name', 'startTimeUnixNano', 'endTimeUnixNano'],
  properties: {
    tenantId: { type: 'string', pattern: TENANT_ID_PATTERN, description: 'must be a UUID' },
    traceId: hexId(32),
    spanId: hexId(16),
    parentSpanId: { anyOf: [hexId(16), { const: '' }], description: 'must be 16 lower-case hex characters or empty' },
    // OTLP allows an empty name; refusing it would dead-letter a whole Collector batch.
    name: { type: 'string', maxLength: 1024, description: 'must be at most 1024 characters' },
    kind: {
      anyOf: [
        { type: 'integer', minimum: 0, maximum: 5 },
        { enum: [...SPAN_KINDS] },
      ],
      description: 'must be an OTLP span kind: 0..5 or SPAN_KIND_*',
    },
    startTimeUnixNano: unixNano,
    endTimeUnixNano: unixNano,
    attributes,
    status: {
      type: 'object',
      additionalProperties: false,
      properties: {
        code: { anyOf: [{ type: 'integer', minimum: 0, maximum: 2 }, { enum: [...STATUS_CODES] }], description: 'must be 0..2 or STATUS_CODE_*' },
        message: { type: 'string', maxLength: 8192 },
      },
    },
    resource: { type: 'object', additionalProperties: false, required: ['attributes'], properties: { attributes } },
    scope: {
      type: 'object',
      additionalProperties: false,
      required: ['name'],
      properties: { name: { type: 'string', maxLength: 1024 }, version: { type: 'string', maxLength: 1024 }, attributes },
    },
    traceState,
    events: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['timeUnixNano', 'name'],
        properties: { timeUnixNano: unixNano, name: { type: 'string', maxLength: 1024 }, attributes },
      },
    },
    links: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['traceId', 'spanId'],
        properties: { traceId: hexId(32), spanId: hexId(16), traceState, attributes },
      },
    },
  },
} as const;

export const validateSpan = compile<Span>(SPAN_JSON_SCHEMA);

const NANOS_PER_MS = 1_000_000n;
/** Latest day a span may start on (year 9999); later times cannot be a valid UTC date folder. */
const MAX_MS = 253_402_300_799_999n;
const MAX_MS_NUMBER = 253_402_300_799_999;
const MS_PER_DAY = 86_400_000;

/**
 * The UTC day a span belongs to, from its own start time, never from the wall clock: a replay
 * days later must land in the same file, or idempotency would break.
 */
export function spanDay(span: Pick<Span, 'startTimeUnixNano'>): string | undefined {
  const ms = BigInt(span.startTimeUnixNano) / NANOS_PER_MS;
  if (ms > MAX_MS) return undefined;
  return new Date(Number(ms)).toISOString().slice(0, 10);
}

/**
 * Whole milliseconds of a schema-valid time (a decimal string of 1..20 digits or a safe integer),
 * exactly, without BigInt: the digits before the last six are at most 14 (< 2^53).
 */
export function unixNanoMillis(time: string | number): number {
  if (typeof time === 'number') return (time - (time % 1_000_000)) / 1_000_000;
  return time.length <= 6 ? 0 : Number(time.slice(0, -6));
}

/** Whether end < start for two schema-valid times, exactly (as BigInt would say), without BigInt. */
export function endsBeforeStart(start: string | number, end: string | number): boolean {
  if (typeof start === 'number' && typeof end === 'number') return end < start;
  const a = stripZeros(String(start));
  const b = stripZeros(String(end));
  return b.length !== a.length ? b.length < a.length : b < a;
}

function stripZeros(digits: string): string {
  if (digits.length < 2 || digits.charCodeAt(0) !== 48) return digits;
  const stripped = digits.replace(/^0+/, '');
  return stripped === '' ? '0' : stripped;
}

/**
 * spanDay without BigInt and without a Date per span: the day number of the start time's
 * milliseconds, its name memoized (a backlog has few distinct days). Same answers as spanDay.
 */
export class SpanDays {
  private readonly names = new Map<number, string>();

  /** The span's UTC day, or undefined after year 9999 (as spanDay). */
  of(startTimeUnixNano: string | number): string | undefined {
    const ms = unixNanoMillis(startTimeUnixNano);
    if (ms > MAX_MS_NUMBER) return undefined;
    const day = (ms - (ms % MS_PER_DAY)) / MS_PER_DAY;
    let name = this.names.get(day);
    if (name === undefined) {
      if (this.names.size >= 4096) this.names.clear();
      name = new Date(day * MS_PER_DAY).toISOString().slice(0, 10);
      this.names.set(day, name);
    }
    return name;
  }

  /** Whether the start time is past year 9999 (no day folder can hold it). */
  static tooLate(startTimeUnixNano: string | number): boolean {
    return unixNanoMillis(startTimeUnixNano) > MAX_MS_NUMBER;
  }
}
