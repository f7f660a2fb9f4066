import type { z } from 'zod';
import { RecordRejectedError } from '../errors.js';
import { isCanonicalUuid } from './tenant.js';
import { spanDay, spanSchema, type Span } from './span.js';
import { signalSchema, type Signal } from './signal.js';

/** The parts of a Kafka message a decoder looks at. */
export interface RawMessage {
  value: Buffer | null;
  headers?: Record<string, Buffer | string | (Buffer | string)[] | undefined>;
}

export type Decoded<T> =
  | { ok: true; tenantId: string; value: T; bytes: number }
  | { ok: false; error: RecordRejectedError; bytes: number };

/** Turns a raw Kafka message into a typed, validated record, or says exactly why it cannot. */
export interface RecordDecoder<T> {
  decode(message: RawMessage): Decoded<T>;
}

export const TENANT_HEADER = 'tenant-id';

function headerString(headers: RawMessage['headers'], name: string): string | undefined {
  const raw = headers?.[name];
  const first = Array.isArray(raw) ? raw[0] : raw;
  if (first === undefined) return undefined;
  return typeof first === 'string' ? first : first.toString('utf8');
}

/** Renders zod issues as one readable line: "traceId: must be 32 lower-case hex characters; ...". */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(record)'}: ${issue.message}`)
    .join('; ');
}

type Rejected = { ok: false; error: RecordRejectedError; bytes: number };

function parseJson(message: RawMessage, maxBytes: number): { ok: true; json: unknown; bytes: number } | Rejected {
  const bytes = message.value?.length ?? 0;
  if (message.value === null || bytes === 0) {
    return { ok: false, bytes, error: new RecordRejectedError('EmptyRecord', 'record has no value (null or empty)') };
  }
  if (bytes > maxBytes) {
    return {
      ok: false,
      bytes,
      error: new RecordRejectedError('RecordTooLarge', `record is ${bytes} bytes, more than the maximum of ${maxBytes}`),
    };
  }
  let json: unknown;
  try {
    json = JSON.parse(message.value.toString('utf8'));
  } catch (e) {
    return { ok: false, bytes, error: new RecordRejectedError('InvalidJson', `value is not JSON: ${(e as Error).message}`) };
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    return { ok: false, bytes, error: new RecordRejectedError('SchemaViolation', 'value must be a JSON object') };
  }
  return { ok: true, json, bytes };
}

/** Span with its tenant resolved and its UTC day (from its start time) computed. */
export interface DecodedSpan {
  span: Span & { tenantId: string };
  day: string;
}

export class SpanDecoder implements RecordDecoder<DecodedSpan> {
  constructor(private readonly maxMessageBytes: number) {}

  decode(message: RawMessage): Decoded<DecodedSpan> {
    const parsed = parseJson(message, this.maxMessageBytes);
    if (!parsed.ok) return parsed;
    const { bytes } = parsed;
    const result = spanSchema.safeParse(parsed.json);
    if (!result.success) {
      const tenantIssue = result.error.issues.some((i) => i.path[0] === 'tenantId');
      return { ok: false, bytes, error: new RecordRejectedError(tenantIssue ? 'InvalidTenantId' : 'SchemaViolation', describeIssues(result.error)) };
    }
    const span = result.data;
    const header = headerString(message.headers, TENANT_HEADER);
    let tenantId = span.tenantId;
    if (tenantId === undefined) {
      if (header === undefined) {
        return {
          ok: false,
          bytes,
          error: new RecordRejectedError('MissingTenantId', `no tenantId field and no '${TENANT_HEADER}' header`),
        };
      }
      if (!isCanonicalUuid(header)) {
        return {
          ok: false,
          bytes,
          error: new RecordRejectedError(
            'InvalidTenantId',
            `'${TENANT_HEADER}' header ${JSON.stringify((header as string).slice(0, 64))} is not a canonical lower-case UUID`,
          ),
        };
      }
      tenantId = header;
    } else if (header !== undefined && header !== tenantId) {
      return {
        ok: false,
        bytes,
        error: new RecordRejectedError('TenantMismatch', `tenantId field ${tenantId} differs from '${TENANT_HEADER}' header`),
      };
    }
    const day = spanDay(span);
    if (day === undefined) {
      return { ok: false, bytes, error: new RecordRejectedError('SchemaViolation', 'startTimeUnixNano: after year 9999') };
    }
    return { ok: true, tenantId, bytes, value: { span: { ...span, tenantId }, day } };
  }
}

export class SignalDecoder implements RecordDecoder<Signal> {
  constructor(private readonly maxMessageBytes: number) {}

  decode(message: RawMessage): Decoded<Signal> {
    const parsed = parseJson(message, this.maxMessageBytes);
    if (!parsed.ok) return parsed;
    const { bytes } = parsed;
    const json = parsed.json as Record<string, unknown>;
    const result = signalSchema.safeParse(json);
    if (!result.success) {
      const tenantIssue = result.error.issues.find((i) => i.path[0] === 'tenantId');
      const errorClass = tenantIssue ? (json.tenantId === undefined ? 'MissingTenantId' : 'InvalidTenantId') : 'SchemaViolation';
      return { ok: false, bytes, error: new RecordRejectedError(errorClass, describeIssues(result.error)) };
    }
    const header = headerString(message.headers, TENANT_HEADER);
    if (header !== undefined && header !== result.data.tenantId) {
      return {
        ok: false,
        bytes,
        error: new RecordRejectedError('TenantMismatch', `tenantId field ${result.data.tenantId} differs from '${TENANT_HEADER}' header`),
      };
    }
    return { ok: true, tenantId: result.data.tenantId, bytes, value: result.data };
  }
}
