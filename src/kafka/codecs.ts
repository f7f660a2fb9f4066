/**
 * Kafka compression codecs for kafkajs, registered once for the whole process (kafkajs keeps them
 * in its global `CompressionCodecs`). kafkajs only ships gzip; the others come from npm packages
 * that install from the registry alone (no download, no compiler), chosen for decompressing what
 * real producers write (checked against batches from librdkafka 2.0.2 and Java kafka-clients 3.9):
 *
 * - snappy: `kafkajs-snappy` (pure JS, snappyjs). Handles both raw snappy (librdkafka) and the
 *   xerial framing Java producers write.
 * - lz4: `lz4-napi` (lz4_flex through napi-rs; the prebuilt binary is itself an npm package).
 *   Kafka uses the LZ4 *frame* format, which `decompressFrame` reads; it runs off the event loop.
 *   `kafkajs-lz4` was not taken: its `lz4` dependency builds with node-gyp.
 * - zstd: `fzstd` (pure JS, decompression only). Java and librdkafka write streaming frames that
 *   do not declare their size; fzstd grows its output, whereas `@bokuweb/zstd-wasm` fails on such
 *   frames above 1 MiB, and `zstd-napi`/`@mongodb-js/zstd` download binaries at install time.
 *   spanledger therefore cannot *produce* zstd.
 *
 * Every codec is wrapped so that a batch that cannot be decompressed (codec missing, corrupt
 * data) does not throw: kafkajs would fail the whole fetch and the worker would crash on the same
 * batch after every restart. Instead the wrapper hands kafkajs the batch's records as markers
 * (see `undecodableBatchRecords`); the kafkajs consumer adapter reports it as the batch's `undecodable` reason and the pipeline pauses that partition.
 */
import { randomBytes } from 'node:crypto';
import kafkajs from 'kafkajs';
import { decompress as zstdDecompress } from 'fzstd';
import snappyCodec from 'kafkajs-snappy';
import lz4 from 'lz4-napi';
import { SpanledgerError } from '../errors.js';
import { batchHeaderBefore, describeBatch } from './batch-header.js';

// CommonJS packages: named imports do not resolve under Node's ESM loader.
const { CompressionCodecs, CompressionTypes } = kafkajs;
const { compressFrame, decompressFrame } = lz4;

/** Header of a marker record; its value says why the batch could not be decompressed. */
export const CODEC_ERROR_HEADER = 'spanledger.codec.error';

/**
 * Key of marker records: random per process, so that a record a producer sent with the same
 * header can never pass for a marker and stall a partition.
 */
const MARKER_KEY = randomBytes(16);

/** The shape kafkajs expects: compress gets its Encoder, decompress a Buffer. */
interface KafkaJsCodec {
  compress(encoder: { buffer: Buffer }): Promise<Buffer>;
  decompress(data: Buffer): Promise<Buffer>;
}

interface CodecImplementation {
  compress?(data: Buffer): Promise<Buffer>;
  decompress(data: Buffer): Promise<Buffer>;
}

export type CodecName = 'gzip' | 'snappy' | 'lz4' | 'zstd';

/** A batch cannot be decompressed, or a codec is not available here. Never retriable. */
export class CodecError extends SpanledgerError {
  constructor(message: string, cause?: unknown) {
    super(message, { retriable: false, cause });
  }
}

const kafkajsGzip = (CompressionCodecs[CompressionTypes.GZIP] as () => KafkaJsCodec)();
const snappy = snappyCodec();

export const CODECS: Record<CodecName, { type: number; library: string; implementation: CodecImplementation }> = {
  gzip: { type: CompressionTypes.GZIP, library: 'kafkajs (node:zlib)', implementation: { compress: (d) => kafkajsGzip.compress({ buffer: d }), decompress: (d) => kafkajsGzip.decompress(d) } },
  snappy: { type: CompressionTypes.Snappy, library: 'kafkajs-snappy', implementation: { compress: (d) => snappy.compress({ buffer: d }), decompress: (d) => snappy.decompress(d) } },
  lz4: { type: CompressionTypes.LZ4, library: 'lz4-napi', implementation: { compress: (d) => compressFrame(d), decompress: (d) => decompressFrame(d) } },
  zstd: {
    type: CompressionTypes.ZSTD,
    library: 'fzstd',
    implementation: {
      decompress: async (d) => {
        const out = zstdDecompress(d);
        return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
      },
    },
  },
};

/** Codec ids a record batch can carry (3 bits) that name no Kafka codec. */
const UNKNOWN_CODEC_IDS = [5, 6, 7];

/** More records than this in one batch is not believed (the fill-ins would take too much memory). */
const MAX_MARKED_RECORDS = 1 << 24;

/**
 * The decompressed records kafkajs gets for a batch that cannot be decompressed: as many records
 * as the batch header announces (kafkajs decodes exactly that many), all at the batch's last
 * offset (kafkajs drops records below the offset it fetched from, which may lie inside the
 * batch). The first carries CODEC_ERROR_HEADER and the marker key; the others are empty fill-ins
 * the pipeline never gets, because the consumer adapter stops at the marker.
 *
 * kafkajs passes `decompress` a view of its fetch buffer, so the batch header sits just before
 * `compressed`. It is used only if it checks out (magic 2, length matching, our codec id);
 * otherwise (e.g. a pre-0.11 message set) this returns undefined and the caller rethrows.
 */
export function undecodableBatchRecords(compressed: Buffer, codecType: number, reason: string): Buffer | undefined {
  const header = batchHeaderBefore(compressed, codecType);
  if (header === undefined || header.recordCount > MAX_MARKED_RECORDS) return undefined;
  const { lastOffsetDelta, recordCount: count } = header;
  const detail = `${reason} (${describeBatch(header)})`;
  const marker = encodeRecord(lastOffsetDelta, MARKER_KEY, [[CODEC_ERROR_HEADER, Buffer.from(detail, 'utf8')]]);
  const fillIn = encodeRecord(lastOffsetDelta, null, []);
  const out = Buffer.alloc(marker.length + fillIn.length * (count - 1));
  marker.copy(out, 0);
  for (let at = marker.length; at < out.length; at += fillIn.length) fillIn.copy(out, at);
  return out;
}

/** The reason a message is a marker for an undecodable batch, or undefined for a real record. */
export function undecodableBatchReason(message: { key: Buffer | null; headers?: Record<string, unknown> }): string | undefined {
  const reason = message.headers?.[CODEC_ERROR_HEADER];
  if (reason === undefined || message.key === null || !MARKER_KEY.equals(message.key)) return undefined;
  return String(reason);
}

/** One record (Kafka record v2): length, attributes, timestamp delta 0, offset delta, key, no value, headers. */
function encodeRecord(offsetDelta: number, key: Buffer | null, headers: Array<[string, Buffer]>): Buffer {
  const parts: Buffer[] = [Buffer.from([0]), varint(0), varint(offsetDelta), ...bytes(key), varint(-1), varint(headers.length)];
  for (const [name, value] of headers) parts.push(...bytes(Buffer.from(name, 'utf8')), ...bytes(value));
  const body = Buffer.concat(parts);
  return Buffer.concat([varint(body.length), body]);
}

function bytes(value: Buffer | null): Buffer[] {
  return value === null ? [varint(-1)] : [varint(value.length), value];
}

/** Zig-zag varint, as Kafka writes record fields. */
function varint(value: number): Buffer {
  let v = ((value << 1) ^ (value >> 31)) >>> 0;
  const out: number[] = [];
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
  return Buffer.from(out);
}

function guarded(name: string, type: number, implementation: CodecImplementation | undefined): KafkaJsCodec {
  return {
    async compress(encoder) {
      if (implementation?.compress === undefined) throw new CodecError(`${name} compression is not available in spanledger`);
      return implementation.compress(encoder.buffer);
    },
    async decompress(compressed) {
      try {
        if (implementation === undefined) throw new CodecError(`no ${name} codec in this worker`);
        return await implementation.decompress(compressed);
      } catch (e) {
        const records = undecodableBatchRecords(compressed, type, `${name} decompression failed: ${(e as Error).message}`);
        if (records === undefined) throw e;
        return records;
      }
    },
  };
}

/**
 * Registers every codec with kafkajs, replacing what was registered before. `disabled` codecs
 * behave as if there were no implementation (tests use it to rehearse an undecodable batch).
 */
export function registerCodecs(disabled: ReadonlySet<string> = new Set()): void {
  const registry = CompressionCodecs as unknown as Record<number, () => KafkaJsCodec>;
  for (const [name, codec] of Object.entries(CODECS)) {
    const codecGuard = guarded(name, codec.type, disabled.has(name) ? undefined : codec.implementation);
    registry[codec.type] = () => codecGuard;
  }
  for (const id of UNKNOWN_CODEC_IDS) {
    const codecGuard = guarded(`unknown (id ${id})`, id, undefined);
    registry[id] = () => codecGuard;
  }
}

/**
 * Test-only: SPANLEDGER_TEST_DISABLE_CODECS=zstd,lz4 (honoured only with NODE_ENV=test) makes
 * those codecs unavailable, so integration tests can meet an undecodable batch on a real broker
 * (which refuses corrupt compressed batches at produce time).
 */
function disabledForTests(): Set<string> {
  if (process.env.NODE_ENV !== 'test') return new Set();
  return new Set((process.env.SPANLEDGER_TEST_DISABLE_CODECS ?? '').split(',').map((s) => s.trim()).filter(Boolean));
}

registerCodecs(disabledForTests());
