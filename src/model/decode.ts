import { RecordRejectedError } from '../errors.js';
import type { ValidateFunction } from 'ajv';
import { describeErrors } from './json-schema.js';
import { isUtf8 } from 'node:buffer';
import { canonicalTenantId } from './tenant.js';
import { headerValues, type RecordHeaders } from './headers.js';
import { spanDay, validateSpan, type Span } from './span.js';
import { signalValueProblem, validateSignal, type Signal } from './signal.js';

/** The parts of a Kafka message a decoder looks at. */
export interface RawMessage {
  value: Buffer | null;
  headers?: RecordHeaders;
}

export type Decoded<T> =
  | { ok: true; tenantId: string; value: T; bytes: number }
  | { ok: false; error: RecordRejectedError; bytes: number };

type Rejected = { ok: false; error: RecordRejectedError; bytes: number };

/** Turns a raw Kafka message into a typed, validated record, or says exactly why it cannot. */
export interface RecordDecoder<T> {
  decode(message: RawMessage): Decoded<T>;
}

export const TENANT_HEADER = 'tenant-id';

function reject(bytes: number, errorClass: string, message: string): Rejected {
  return { ok: false, bytes, error: new RecordRejectedError(errorClass, message) };
}

function parseJson(message: RawMessage, maxBytes: number): { ok: true; json: Record<string, unknown>; bytes: number } | Rejected {
  const bytes = message.value?.length ?? 0;
  if (message.value === null || bytes === 0) return reject(bytes, 'EmptyRecord', 'record has no value (null or empty)');
  if (bytes > maxBytes) return reject(bytes, 'RecordTooLarge', `record is ${bytes} bytes, more than the maximum of ${maxBytes}`);
  // JSON is UTF-8 (RFC 8259); decoding would silently turn bad bytes into U+FFFD and the span
  // log would keep bytes that are not the record's text.
  if (!isUtf8(message.value)) return reject(bytes, 'InvalidUtf8', 'value is not valid UTF-8');
  let json: unknown;
  try {
    json = JSON.parse(message.value.toString('utf8'));
  } catch (e) {
    return reject(bytes, 'InvalidJson', `value is not JSON: ${(e as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return reject(bytes, 'SchemaViolation', 'value must be a JSON object');
  return { ok: true, json: json as Record<string, unknown>, bytes };
}

/** Why a parsed record fails its schema; a bad or missing tenant id gets a reason class of its own. */
function schemaRejection(validate: ValidateFunction, json: Record<string, unknown>, bytes: number): Rejected | undefined {
  const valid: boolean = validate(json);
  if (valid) return undefined;
  const reason = describeErrors(validate.errors);
  if (!reason.startsWith('tenantId:')) return reject(bytes, 'SchemaViolation', reason);
  return reject(bytes, json.tenantId === undefined ? 'MissingTenantId' : 'InvalidTenantId', reason);
}

type Tenant = { ok: true; tenantId: string; fromHeader: boolean } | Rejected;

/**
 * The record's tenant, from its own field (already schema-checked) and the `tenant-id` header.
 * A header with a null value counts as absent; repeated headers must name one tenant; a header
 * that names another tenant than the field is a TenantMismatch. Any letter case is accepted and
 * the tenant is the lower-case form.
 */
function resolveTenant(field: string | undefined, headers: RecordHeaders | undefined, bytes: number): Tenant {
  let header: string | undefined;
  for (const value of headerValues(headers, TENANT_HEADER)) {
    if (value === null) continue;
    if (typeof value !== 'string' && !isUtf8(value)) return reject(bytes, 'InvalidTenantId', `'${TENANT_HEADER}' header is not UTF-8 text`);
    const text = typeof value === 'string' ? value : value.toString('utf8');
    const tenantId = canonicalTenantId(text);
    if (tenantId === undefined) return reject(bytes, 'InvalidTenantId', `'${TENANT_HEADER}' header ${JSON.stringify(text.slice(0, 64))} is not a UUID`);
    if (header !== undefined && header !== tenantId) return reject(bytes, 'InvalidTenantId', `repeated '${TENANT_HEADER}' headers name different tenants`);
    header = tenantId;
  }
  if (field === undefined) {
    if (header === undefined) return reject(bytes, 'MissingTenantId', `no tenantId field and no '${TENANT_HEADER}' header`);
    return { ok: true, tenantId: header, fromHeader: true };
  }
  const tenantId = field.toLowerCase();
  if (header !== undefined && header !== tenantId) return reject(bytes, 'TenantMismatch', `tenantId field ${tenantId} differs from '${TENANT_HEADER}' header ${header}`);
  return { ok: true, tenantId, fromHeader: false };
}

/** Span with its tenant resolved, its UTC day (from its start time) and the bytes it came as. */
export interface DecodedSpan {
  span: Span & { tenantId: string };
  day: string;
  /** The record's value as received, when it can be written to the span log as it is. */
  raw?: Buffer;
  /** The tenant came from the header: a raw copy needs the tenantId field added. */
  tenantFromHeader: boolean;
}

/** True when `raw` is one line ending with the object's closing brace (no trailing whitespace). */
function isSingleLineObject(raw: Buffer): boolean {
  return raw[raw.length - 1] === 0x7d && raw.indexOf(0x0a) === -1 && raw.indexOf(0x0d) === -1;
}

export class SpanDecoder implements RecordDecoder<DecodedSpan> {
  constructor(private readonly maxMessageBytes: number) {}

  decode(message: RawMessage): Decoded<DecodedSpan> {
    const parsed = parseJson(message, this.maxMessageBytes);
    if (!parsed.ok) return parsed;
    const { bytes, json } = parsed;
    const invalid = schemaRejection(validateSpan, json, bytes);
    if (invalid) return invalid;
    const span = json as unknown as Span;
    if (BigInt(span.endTimeUnixNano) < BigInt(span.startTimeUnixNano)) {
      return reject(bytes, 'SchemaViolation', 'endTimeUnixNano: must not be before startTimeUnixNano');
    }
    const tenant = resolveTenant(span.tenantId, message.headers, bytes);
    if (!tenant.ok) return tenant;
    const { tenantId } = tenant;
    // The producer's bytes can be kept when the tenant is spliced in (header) or already written
    // as stored (lower-case field).
    const keepRaw = tenant.fromHeader || span.tenantId === tenantId;
    span.tenantId = tenantId;
    const day = spanDay(span);
    if (day === undefined) return reject(bytes, 'SchemaViolation', 'startTimeUnixNano: after year 9999');
    const raw = message.value!;
    return {
      ok: true,
      tenantId,
      bytes,
      value: { span: span as Span & { tenantId: string }, day, tenantFromHeader: tenant.fromHeader, raw: keepRaw && isSingleLineObject(raw) ? raw : undefined },
    };
  }
}

export class SignalDecoder implements RecordDecoder<Signal> {
  constructor(private readonly maxMessageBytes: number) {}

  decode(message: RawMessage): Decoded<Signal> {
    const parsed = parseJson(message, this.maxMessageBytes);
    if (!parsed.ok) return parsed;
    const { bytes, json } = parsed;
    const invalid = schemaRejection(validateSignal, json, bytes);
    if (invalid) return invalid;
    const signal = json as unknown as Signal;
    // Everything either store would refuse is refused here, before the first store is written.
    // Only a \u escape makes a lone surrogate (decoding UTF-8 replaces bad bytes with U+FFFD).
    const problem = signalValueProblem(signal, message.value!.includes('\\u'));
    if (problem) return reject(bytes, problem.errorClass, problem.message);
    const tenant = resolveTenant(signal.tenantId, message.headers, bytes);
    if (!tenant.ok) return tenant;
    signal.tenantId = tenant.tenantId;
    return { ok: true, tenantId: tenant.tenantId, bytes, value: signal };
  }
}
