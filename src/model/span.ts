import { z } from 'zod';
import { CANONICAL_UUID } from './tenant.js';

/**
 * One span per Kafka message, JSON, shaped after OpenTelemetry's span data model (the field names
 * of OTLP/JSON, with attributes as a plain map so that the span log stays easy to query).
 * `tenantId` is optional in the body: a `tenant-id` header may carry it instead.
 */
const attributeValue = z.union([
  z.string(),
  z.number(),
  z.boolean(),
  z.null(),
  z.array(z.union([z.string(), z.number(), z.boolean(), z.null()])),
]);
const attributes = z.record(z.string().min(1).max(256), attributeValue);

/** uint64 nanoseconds since the epoch: a decimal string (as OTLP/JSON writes it) or a safe integer. */
const unixNano = z.union([
  z.string().regex(/^\d{1,20}$/, 'must be a decimal string of nanoseconds since the epoch'),
  z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
]);

const hex = (n: number) =>
  z
    .string()
    .regex(new RegExp(`^[0-9a-f]{${n}}$`), `must be ${n} lower-case hex characters`)
    .refine((s) => !/^0+$/.test(s), 'must not be all zeros');

/** OTLP span kinds, as integers (OTLP/JSON) or as their names. */
export const SPAN_KINDS = [
  'SPAN_KIND_UNSPECIFIED',
  'SPAN_KIND_INTERNAL',
  'SPAN_KIND_SERVER',
  'SPAN_KIND_CLIENT',
  'SPAN_KIND_PRODUCER',
  'SPAN_KIND_CONSUMER',
] as const;
const STATUS_CODES = ['STATUS_CODE_UNSET', 'STATUS_CODE_OK', 'STATUS_CODE_ERROR'] as const;

export const spanSchema = z
  .strictObject({
    tenantId: z.string().regex(CANONICAL_UUID, 'must be a canonical lower-case UUID').optional(),
    traceId: hex(32),
    spanId: hex(16),
    parentSpanId: z.union([hex(16), z.literal('')]).optional(),
    name: z.string().min(1).max(1024),
    kind: z.union([z.number().int().min(0).max(5), z.enum(SPAN_KINDS)]).optional(),
    startTimeUnixNano: unixNano,
    endTimeUnixNano: unixNano,
    attributes: attributes.optional(),
    status: z
      .strictObject({
        code: z.union([z.number().int().min(0).max(2), z.enum(STATUS_CODES)]).optional(),
        message: z.string().max(8192).optional(),
      })
      .optional(),
    resource: z.strictObject({ attributes: attributes }).optional(),
  })
  .refine((s) => BigInt(s.endTimeUnixNano) >= BigInt(s.startTimeUnixNano), {
    message: 'endTimeUnixNano must not be before startTimeUnixNano',
    path: ['endTimeUnixNano'],
  });

export type Span = z.infer<typeof spanSchema>;

const NANOS_PER_MS = 1_000_000n;
/** Latest day a span may start on (year 9999); later times cannot be a valid UTC date folder. */
const MAX_MS = 253_402_300_799_999n;

/**
 * The UTC day a span belongs to, from its own start time, never from the wall clock: a replay
 * days later must land in the same file, or idempotency would break.
 */
export function spanDay(span: Pick<Span, 'startTimeUnixNano'>): string | undefined {
  const ms = BigInt(span.startTimeUnixNano) / NANOS_PER_MS;
  if (ms > MAX_MS) return undefined;
  return new Date(Number(ms)).toISOString().slice(0, 10);
}
