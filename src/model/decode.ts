import { RecordRejectedError } from '../errors.js';
import type { ValidateFunction } from 'ajv';
import { describeErrors } from './json-schema.js';
import { isUtf8 } from 'node:buffer';
import { canonicalTenantId } from './tenant.js';
import { headerValues, type RecordHeaders } from './headers.js';
import { endsBeforeStart, SpanDays, validateSpan, type Span } from './span.js';
import { surelyValidSpan } from './span-quick-check.js';
import { storedSpanFields, type StoredSpanFields } from './stored-span-text.js';
import { MAX_SPANS_PER_RECORD, storedSpan, type StoredSpan } from './span-line.js';
import { decodeOtlpTraces, detectEncoding, type OtlpEncoding, type SpanEncoding } from './otlp.js';
import { signalValueProblem, validateSignal, type Signal } from './signal.js';

/** The parts of a Kafka message a decoder looks at. */
export interface RawMessage {
  value: Buffer | null;
  headers?: RecordHeaders;
}

/** What one record holds: one item (a span, a signal) or, for an OTLP request, many. */
export interface DecodedItem<T> {
  tenantId: string;
  value: T;
}

/** A record is valid as a whole or rejected as a whole (its dead letter is the whole record). */
export type Decoded<T> = { ok: true; items: Array<DecodedItem<T>> } | Rejected;

type Rejected = { ok: false; error: RecordRejectedError };

/** Turns a raw Kafka message into a typed, validated record, or says exactly why it cannot. */
export interface RecordDecoder<T> {
  decode(message: RawMessage): Decoded<T>;
}

export const TENANT_HEADER = 'tenant-id';

function reject(errorClass: string, message: string): Rejected {
  return { ok: false, error: new RecordRejectedError(errorClass, message) };
}

/** A record's value, or why it cannot be decoded whatever its encoding: none, or too large. */
function usableValue(value: Buffer | null, maxBytes: number): Buffer | Rejected {
  if (value === null || value.length === 0) return reject('EmptyRecord', 'record has no value (null or empty)');
  if (value.length > maxBytes) return reject('RecordTooLarge', `record is ${value.length} bytes, more than the maximum of ${maxBytes}`);
  return value;
}

/** The record's value as text: usable and valid UTF-8. */
function jsonText(message: RawMessage, maxBytes: number): { ok: true; text: string } | Rejected {
  const value = usableValue(message.value, maxBytes);
  if (!Buffer.isBuffer(value)) return value;
  // JSON is UTF-8 (RFC 8259); decoding would silently turn bad bytes into U+FFFD and the span
  // log would keep bytes that are not the record's text.
  if (!isUtf8(value)) return reject('InvalidUtf8', 'value is not valid UTF-8');
  return { ok: true, text: value.toString('utf8') };
}

function parseJson(message: RawMessage, maxBytes: number): { ok: true; json: Record<string, unknown> } | Rejected {
  const text = jsonText(message, maxBytes);
  return text.ok ? parseText(text.text) : text;
}

function parseText(text: string): { ok: true; json: Record<string, unknown> } | Rejected {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return reject('InvalidJson', `value is not JSON: ${(e as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return reject('SchemaViolation', 'value must be a JSON object');
  return { ok: true, json: json as Record<string, unknown> };
}

/** Why a parsed record fails its schema; a bad or missing tenant id gets a reason class of its own. */
function schemaRejection(validate: ValidateFunction, json: Record<string, unknown>): Rejected | undefined {
  const valid: boolean = validate(json);
  if (valid) return undefined;
  const reason = describeErrors(validate.errors);
  if (!reason.startsWith('tenantId:')) return reject('SchemaViolation', reason);
  return reject(json.tenantId === undefined ? 'MissingTenantId' : 'InvalidTenantId', reason);
}

/** Why a span fails the span schema, or undefined: the hand-written quick yes first, Ajv for the rest. */
function spanRejection(span: Record<string, unknown>): Rejected | undefined {
  return surelyValidSpan(span) ? undefined : schemaRejection(validateSpan, span);
}

type Tenant = { ok: true; tenantId: string } | Rejected;

/**
 * The record's tenant, from its own field (already schema-checked) and the `tenant-id` header.
 * A header with a null value counts as absent; repeated headers must name one tenant; a header
 * that names another tenant than the field is a TenantMismatch. Any letter case is accepted and
 * the tenant is the lower-case form.
 */
function resolveTenant(field: string | undefined, headers: RecordHeaders | undefined): Tenant {
  const header = headerTenant(headers);
  if (typeof header === 'object') return header;
  if (field === undefined) {
    if (header === undefined) return reject('MissingTenantId', `no tenantId field and no '${TENANT_HEADER}' header`);
    return { ok: true, tenantId: header };
  }
  const tenantId = field.toLowerCase();
  if (header !== undefined && header !== tenantId) return reject('TenantMismatch', `tenantId field ${tenantId} differs from '${TENANT_HEADER}' header ${header}`);
  return { ok: true, tenantId };
}

/**
 * The tenant the `tenant-id` header names (undefined when there is none, or only null values),
 * or why it names none: not UTF-8, not a UUID, or repeated with different tenants.
 */
function headerTenant(headers: RecordHeaders | undefined): string | undefined | Rejected {
  let header: string | undefined;
  for (const value of headerValues(headers, TENANT_HEADER)) {
    if (value === null) continue;
    if (typeof value !== 'string' && !isUtf8(value)) return reject('InvalidTenantId', `'${TENANT_HEADER}' header is not UTF-8 text`);
    const text = typeof value === 'string' ? value : value.toString('utf8');
    const tenantId = canonicalTenantId(text);
    if (tenantId === undefined) return reject('InvalidTenantId', `'${TENANT_HEADER}' header ${JSON.stringify(text.slice(0, 64))} is not a UUID`);
    if (header !== undefined && header !== tenantId) return reject('InvalidTenantId', `repeated '${TENANT_HEADER}' headers name different tenants`);
    header = tenantId;
  }
  return header;
}

/**
 * A span as the span log stores it (see storedSpan), with its UTC day (from its start time);
 * `day` is absent when the decoder was made with `withDay: false` (callers that do not file
 * spans by day, such as the rule worker).
 */
export interface DecodedSpan {
  span: StoredSpan;
  day?: string;
  /** The stored span's JSON text, when the decoder has it (SpanDecoderOptions.storedText). */
  json?: string;
  /**
   * The record's own bytes, when the record is the stored span's line and the decoder keeps them
   * (SpanDecoderOptions.recordBytes): the line's UTF-8, but for its tenant when `headerTenant` is
   * set.
   */
  bytes?: Uint8Array;
  /**
   * With `bytes`: the tenant of a record that leaves it to its header. The line is then
   * `{"tenantId":"<headerTenant>",` and the bytes after their `{`.
   */
  headerTenant?: string;
}

/**
 * A span whose record is its stored line (stored-span-text.ts), or that line without its tenant
 * (`headerTenant`): the record is kept, as its text or its bytes, and the object made only if
 * something asks for it. Held as the bytes, the text made to check it dies young: the bytes are
 * the record's value, which the pipeline keeps anyway until the record is committed (for its dead
 * letter), so holding the span until its flush copies nothing (bench/README, ninth session).
 */
export class StoredSpanText implements DecodedSpan {
  private parsed: StoredSpan | undefined;
  /** The record's text (a field of its own name: fromWire revives a clone by it). */
  private storedRecordText: string | undefined;
  readonly bytes: Uint8Array | undefined;

  constructor(
    record: string | Uint8Array,
    readonly day: string | undefined,
    readonly headerTenant?: string,
  ) {
    if (typeof record === 'string') this.storedRecordText = record;
    else this.bytes = record;
  }

  get json(): string {
    this.storedRecordText ??= Buffer.from(this.bytes!.buffer, this.bytes!.byteOffset, this.bytes!.byteLength).toString('utf8');
    return this.headerTenant === undefined ? this.storedRecordText : `{"tenantId":"${this.headerTenant}",${this.storedRecordText.slice(1)}`;
  }

  get span(): StoredSpan {
    this.parsed ??= JSON.parse(this.json) as StoredSpan;
    return this.parsed;
  }

  /** One that crossed from a decode thread (a structured clone keeps only its fields; made with its text there). */
  static revive(value: { storedRecordText: string; day?: string; headerTenant?: string }): StoredSpanText {
    return new StoredSpanText(value.storedRecordText, value.day, value.headerTenant);
  }
}

export interface SpanDecoderOptions {
  /** SPANS_ENCODING: what records hold; `auto` tells them apart per record (detectEncoding). */
  encoding: SpanEncoding | 'auto';
  /** TENANT_ATTRIBUTE: the resource attribute naming an OTLP span's tenant (without a header). */
  tenantAttribute: string;
  /**
   * Compute each span's UTC day (default true). Without it the decoder accepts and rejects
   * exactly the same records with the same reasons (a start after year 9999 is still refused);
   * it only skips naming the day.
   */
  withDay: boolean;
  /**
   * A JSON record that already is its stored line (stored-span-text.ts), or is it but for the
   * tenant it leaves to its header, is answered as that line (StoredSpanText) without being
   * parsed. For the span log and the archive, which write the line; off by default (the rule
   * worker reads the span's fields).
   */
  storedText: boolean;
  /**
   * With storedText, hold such a record's bytes rather than its text (DecodedSpan.bytes): for
   * the span log and the archive, which write the line as it is. Off in decode threads: a view of
   * a record's bytes would cross back with a copy of all the bytes it views.
   */
  recordBytes: boolean;
}

export class SpanDecoder implements RecordDecoder<DecodedSpan> {
  private readonly options: SpanDecoderOptions;
  private readonly days: SpanDays | undefined;

  constructor(
    private readonly maxMessageBytes: number,
    options: Partial<SpanDecoderOptions> = {},
  ) {
    this.options = { encoding: 'auto', tenantAttribute: 'tenant.id', withDay: true, storedText: false, recordBytes: false, ...options };
    this.days = this.options.withDay ? new SpanDays() : undefined;
  }

  decode(message: RawMessage): Decoded<DecodedSpan> {
    const { value } = message;
    const encoding = this.options.encoding === 'auto' && value !== null ? detectEncoding(value) : this.options.encoding;
    if (encoding === 'otlp_proto' || encoding === 'otlp_json') return this.decodeOtlp(message, encoding);
    const text = jsonText(message, this.maxMessageBytes);
    if (!text.ok) return text;
    if (this.options.storedText) {
      const fields = storedSpanFields(text.text, value!);
      if (fields !== undefined) return this.storedLine(this.options.recordBytes ? value! : text.text, fields, message.headers);
    }
    const parsed = parseText(text.text);
    if (!parsed.ok) return parsed;
    const { json } = parsed;
    const invalid = spanRejection(json);
    if (invalid) return invalid;
    const span = json as unknown as Span;
    const tenant = resolveTenant(span.tenantId, message.headers);
    if (!tenant.ok) return tenant;
    const item = spanItem(span, tenant.tenantId, this.days);
    return 'error' in item ? item : { ok: true, items: [item] };
  }

  /** A record that is its stored line: the tenant and the times checked as for any span. */
  private storedLine(line: string | Uint8Array, fields: StoredSpanFields, headers: RecordHeaders | undefined): Decoded<DecodedSpan> {
    const tenant = resolveTenant(fields.tenantId, headers);
    if (!tenant.ok) return tenant;
    const day = spanDay(fields.startTimeUnixNano, fields.endTimeUnixNano, this.days);
    if (typeof day === 'object') return day;
    return { ok: true, items: [{ tenantId: tenant.tenantId, value: new StoredSpanText(line, day, fields.tenantId === undefined ? tenant.tenantId : undefined) }] };
  }

  /**
   * A whole ExportTraceServiceRequest: valid as a whole or dead-lettered as a whole (the simplest
   * faithful choice: the dead letter is the Collector's message as it was). Each span's tenant is
   * the `tenant-id` header when there is one, else its resource's TENANT_ATTRIBUTE.
   */
  private decodeOtlp(message: RawMessage, encoding: OtlpEncoding): Decoded<DecodedSpan> {
    const value = usableValue(message.value, this.maxMessageBytes);
    if (!Buffer.isBuffer(value)) return value;
    let spans: Span[];
    try {
      spans = decodeOtlpTraces(value, encoding);
    } catch (e) {
      if (e instanceof RecordRejectedError) return { ok: false, error: e };
      throw e;
    }
    if (spans.length > MAX_SPANS_PER_RECORD) return reject('RecordTooLarge', `an OTLP request holds ${spans.length} spans, more than ${MAX_SPANS_PER_RECORD}`);
    const header = headerTenant(message.headers);
    if (typeof header === 'object') return header;
    const items: Array<DecodedItem<DecodedSpan>> = [];
    for (const [i, span] of spans.entries()) {
      const invalid = spanRejection(span as unknown as Record<string, unknown>);
      if (invalid) return reject(invalid.error.errorClass, `span ${i}: ${invalid.error.message}`);
      let tenantId: string;
      if (header !== undefined) tenantId = header;
      else {
        const attribute = span.resource?.attributes[this.options.tenantAttribute];
        if (attribute === undefined) return reject('MissingTenantId', `span ${i}: no '${TENANT_HEADER}' header and no resource attribute '${this.options.tenantAttribute}'`);
        const canonical = typeof attribute === 'string' ? canonicalTenantId(attribute) : undefined;
        if (canonical === undefined) return reject('InvalidTenantId', `span ${i}: resource attribute '${this.options.tenantAttribute}' ${JSON.stringify(attribute).slice(0, 64)} is not a UUID`);
        tenantId = canonical;
      }
      const item = spanItem(span, tenantId, this.days);
      if ('error' in item) return reject(item.error.errorClass, `span ${i}: ${item.error.message}`);
      items.push(item);
    }
    return { ok: true, items };
  }
}

/**
 * A schema-valid span with its tenant, as stored (with its day when `days` is given); or why its
 * times cannot be. No BigInt and no Date per span: see SpanDays.
 */
function spanItem(span: Span, tenantId: string, days: SpanDays | undefined): DecodedItem<DecodedSpan> | Rejected {
  const day = spanDay(span.startTimeUnixNano, span.endTimeUnixNano, days);
  if (typeof day === 'object') return day;
  return { tenantId, value: day === undefined ? { span: storedSpan(span, tenantId) } : { span: storedSpan(span, tenantId), day } };
}

/**
 * Why a span's times cannot be stored (an end before its start, a start after year 9999), else
 * its UTC day when `days` is given (undefined without).
 */
function spanDay(start: string | number, end: string | number, days: SpanDays | undefined): string | undefined | Rejected {
  if (endsBeforeStart(start, end)) return reject('SchemaViolation', 'endTimeUnixNano: must not be before startTimeUnixNano');
  if (days === undefined) return SpanDays.tooLate(start) ? reject('SchemaViolation', 'startTimeUnixNano: after year 9999') : undefined;
  return days.of(start) ?? reject('SchemaViolation', 'startTimeUnixNano: after year 9999');
}

export class SignalDecoder implements RecordDecoder<Signal> {
  constructor(private readonly maxMessageBytes: number) {}

  decode(message: RawMessage): Decoded<Signal> {
    const parsed = parseJson(message, this.maxMessageBytes);
    if (!parsed.ok) return parsed;
    const { json } = parsed;
    const invalid = schemaRejection(validateSignal, json);
    if (invalid) return invalid;
    const signal = json as unknown as Signal;
    // Everything either store would refuse is refused here, before the first store is written.
    // Only a \u escape makes a lone surrogate (decoding UTF-8 replaces bad bytes with U+FFFD).
    const problem = signalValueProblem(signal, message.value!.includes('\\u'));
    if (problem) return reject(problem.errorClass, problem.message);
    const tenant = resolveTenant(signal.tenantId, message.headers);
    if (!tenant.ok) return tenant;
    signal.tenantId = tenant.tenantId;
    return { ok: true, items: [{ tenantId: tenant.tenantId, value: signal }] };
  }
}
