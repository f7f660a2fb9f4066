/**
 * @platformatic/kafka decompresses record batches while it parses a fetch response, with its own
 * codecs (node:zlib gzip and zstd, snappy and lz4 in WebAssembly). A batch it cannot decompress
 * (corrupt data, or a codec id Kafka does not define) throws out of the parser and fails the whole
 * fetch, every partition in it, and its retries would meet the same batch again.
 *
 * This guard wraps the library's decompressors (process-wide: they are module-level tables) so
 * that such a failure is an UndecodableBatchError: not retried by the library, and recognised by
 * the fetcher (fetcher.ts), which then finds the partition and the batch and reports it to the
 * pipeline as `undecodable`, while the other partitions go on.
 */
import { compressionsAlgorithms, compressionsAlgorithmsByBitmask, GenericError, type CompressionAlgorithmSpecification } from '@platformatic/kafka';
import { batchHeaderBefore, describeBatch } from '../batch-header.js';

export const UNDECODABLE_BATCH_CODE = 'SPANLEDGER_UNDECODABLE_BATCH';

/** Codec ids a record batch can carry (3 bits) that name no Kafka codec. */
const UNKNOWN_CODEC_IDS = [5, 6, 7];


/** A record batch that cannot be decompressed here; `canRetry: false` keeps the library from fetching it again. */
export function undecodableBatchError(reason: string): GenericError {
  // The library types its own codes only; any code works at run time.
  return new GenericError(UNDECODABLE_BATCH_CODE as ConstructorParameters<typeof GenericError>[0], reason, { canRetry: false });
}

/** The reason, when `error` (or one it carries) is an undecodable batch. */
export function undecodableReason(error: unknown): string | undefined {
  if (!(error instanceof Error)) return undefined;
  if ((error as { code?: unknown }).code === UNDECODABLE_BATCH_CODE) return error.message;
  for (const inner of (error as { errors?: unknown[] }).errors ?? []) {
    const reason = undecodableReason(inner);
    if (reason !== undefined) return reason;
  }
  return undefined;
}

/**
 * Which batch, when the compressed bytes are still a view of the response with the batch header
 * right before them (a batch that straddles two socket reads is a copy; then nothing is said).
 * The header must check out: magic 2, a length that matches, our codec id.
 */
export function batchDescription(compressed: Buffer, codecId: number): string | undefined {
  const header = batchHeaderBefore(compressed, codecId);
  return header && describeBatch(header);
}

type Decompress = CompressionAlgorithmSpecification['decompressSync'];
const originals = new Map<string, Decompress>();

function guarded(name: string, codecId: number, decompress: Decompress | undefined): Decompress {
  return (data) => {
    const bytes = Buffer.isBuffer(data) ? data : data.buffer;
    try {
      if (decompress === undefined) throw new Error(`no ${name} codec in this worker`);
      return decompress(bytes);
    } catch (e) {
      const which = batchDescription(bytes, codecId);
      throw undecodableBatchError(`${name} decompression failed: ${(e as Error).message}${which === undefined ? '' : ` (${which})`}`);
    }
  };
}

/**
 * Installs the guard, replacing an earlier one. `disabled` codecs behave as if there were no
 * implementation (tests use it to meet an undecodable batch on a real broker, which refuses
 * corrupt compressed batches at produce time).
 */
export function installCodecGuard(disabled: ReadonlySet<string> = new Set()): void {
  const table = compressionsAlgorithms as unknown as Record<string, { decompressSync: Decompress; bitmask: number }>;
  for (const name of ['gzip', 'snappy', 'lz4', 'zstd']) {
    const codec = table[name]!;
    if (!originals.has(name)) originals.set(name, codec.decompressSync);
    codec.decompressSync = guarded(name, codec.bitmask, disabled.has(name) ? undefined : originals.get(name));
  }
  const byBitmask = compressionsAlgorithmsByBitmask as unknown as Record<number, unknown>;
  for (const id of UNKNOWN_CODEC_IDS) {
    const name = `unknown (id ${id})`;
    const decompress = guarded(name, id, undefined);
    byBitmask[id] = { bitmask: id, available: false, compressSync: () => {
        throw new Error(`${name} compression is not available`);
      }, decompressSync: decompress };
  }
}

/** SPANLEDGER_TEST_DISABLE_CODECS=zstd,lz4, honoured only with NODE_ENV=test (as codecs.ts does for kafkajs). */
function disabledForTests(): Set<string> {
  if (process.env.NODE_ENV !== 'test') return new Set();
  return new Set((process.env.SPANLEDGER_TEST_DISABLE_CODECS ?? '').split(',').map((s) => s.trim()).filter(Boolean));
}

installCodecGuard(disabledForTests());
