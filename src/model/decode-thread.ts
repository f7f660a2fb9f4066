/**
 * The worker-thread side of DECODE_THREADS: decodes chunks of records with the same decoder the
 * main thread would use (built once per thread from its spec), and returns plain data: the items,
 * or the reason class and message of a rejection (the main thread rebuilds the error).
 */
import { RecordRejectedError } from '../errors.js';
import { SignalDecoder, SpanDecoder, StoredSpanText, type Decoded, type RawMessage, type RecordDecoder, type SpanDecoderOptions } from './decode.js';
import type { RecordHeaders } from './headers.js';
import { ArchiveSpanDecoder } from './archive-row.js';

/** How to build a worker's decoder in another thread (a decoder instance cannot cross threads). */
export type DecoderSpec =
  | { kind: 'spans' | 'archive-spans'; maxMessageBytes: number; options: Partial<SpanDecoderOptions> }
  | { kind: 'signals'; maxMessageBytes: number };

export function decoderFromSpec(spec: DecoderSpec): RecordDecoder<unknown> {
  switch (spec.kind) {
    // Never the records' bytes here (recordBytes): a view of them would cross back with a copy of
    // all the bytes it views.
    case 'spans':
      return new SpanDecoder(spec.maxMessageBytes, { ...spec.options, recordBytes: false });
    case 'archive-spans':
      return new ArchiveSpanDecoder(spec.maxMessageBytes, { ...spec.options, recordBytes: false });
    case 'signals':
      return new SignalDecoder(spec.maxMessageBytes);
  }
}

/** A record as it crosses to a decode thread: bytes arrive as Uint8Array (structured clone). */
export interface WireRecord {
  value: Uint8Array | null;
  headers?: Record<string, Uint8Array | string | null | Array<Uint8Array | string | null> | undefined>;
}

/** What crosses back: a rejection without its Error object. */
export type WireDecoded<T> = { ok: true; items: Decoded<T> extends { ok: true; items: infer I } ? I : never } | { ok: false; errorClass: string; message: string };

export interface DecodeTask {
  spec: DecoderSpec;
  records: WireRecord[];
}

const asBuffer = (v: Uint8Array) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);

function headersOf(headers: WireRecord['headers']): RecordHeaders | undefined {
  if (headers === undefined) return undefined;
  const out: RecordHeaders = {};
  for (const [key, raw] of Object.entries(headers)) {
    if (raw === undefined) continue;
    const one = (v: Uint8Array | string | null) => (v === null || typeof v === 'string' ? v : asBuffer(v));
    out[key] = Array.isArray(raw) ? raw.map(one) : one(raw);
  }
  return out;
}

let decoder: RecordDecoder<unknown> | undefined;
let decoderKey: string | undefined;

/** One chunk: the decoder's answer for each record, in order. */
export function decodeChunk<T>(task: DecodeTask): Array<WireDecoded<T>> {
  const key = JSON.stringify(task.spec);
  if (decoder === undefined || decoderKey !== key) {
    decoder = decoderFromSpec(task.spec);
    decoderKey = key;
  }
  return task.records.map((r) => toWire(decoder!.decode({ value: r.value === null ? null : asBuffer(r.value), headers: headersOf(r.headers) }) as Decoded<T>));
}

export function toWire<T>(d: Decoded<T>): WireDecoded<T> {
  return d.ok ? (d as WireDecoded<T>) : { ok: false, errorClass: d.error.errorClass, message: d.error.message };
}

export function fromWire<T>(d: WireDecoded<T>): Decoded<T> {
  if (!d.ok) return { ok: false, error: new RecordRejectedError(d.errorClass, d.message) };
  for (const item of d.items as Array<{ value: unknown }>) {
    // A StoredSpanText arrives as its fields (a clone has no getters): made whole again.
    const value = item.value as { storedRecordText?: unknown; day?: string; headerTenant?: string } | null;
    if (typeof value === 'object' && value !== null && typeof value.storedRecordText === 'string') item.value = StoredSpanText.revive(value as { storedRecordText: string; day?: string; headerTenant?: string });
  }
  return d as Decoded<T>;
}

/** The record as it is sent to a thread: only what decoding reads. */
export function toWireRecord(m: RawMessage): WireRecord {
  return { value: m.value, headers: m.headers as WireRecord['headers'] };
}

export default decodeChunk;
