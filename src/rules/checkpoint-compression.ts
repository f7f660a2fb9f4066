import { promisify } from 'node:util';
import zlib from 'node:zlib';

/**
 * Rule checkpoints are compressed here, by the rule stage, not by the Kafka client: a checkpoint
 * lists up to CLOSED_TRACE_MEMORY closed traces (~800 KB of JSON at the default 20,000; random
 * trace ids compress only ~2x), and the clients compress a batch synchronously on the main thread
 * (gzip: ~36 ms for such a checkpoint, every RULES_CHECKPOINT_INTERVAL_MS per partition), then the
 * worker's own checkpoint table decompressed it again when it read the record back (~6 ms). Every
 * partition's signals waited behind those blocks of the event loop. zlib's asynchronous calls run
 * on libuv's thread pool; the table keeps values as they are stored and only a newly assigned
 * partition decompresses one. zstd where node:zlib has it (Node >= 22.15: ~2.5x less CPU than
 * gzip for the same size), gzip otherwise. A value is told by its first bytes, so checkpoints
 * written before this change (JSON, compressed by the client and so read back as plain JSON)
 * still load.
 */
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
/** Most bytes a stored checkpoint may decompress to (a damaged or foreign value cannot exhaust memory). */
const MAX_CHECKPOINT_BYTES = 256 * 1024 * 1024;

type Codec = (data: Buffer, options: zlib.ZlibOptions) => Promise<Buffer>;
type Callback = (data: Buffer, options: zlib.ZlibOptions, done: (error: Error | null, result: Buffer) => void) => void;
// node:zlib's zstd (Node >= 22.15) is newer than the @types/node the project builds with.
const zlibZstd = zlib as unknown as { zstdCompress?: Callback; zstdDecompress?: Callback };
const zstd = zlibZstd.zstdCompress !== undefined && zlibZstd.zstdDecompress !== undefined ? { compress: promisify(zlibZstd.zstdCompress) as Codec, decompress: promisify(zlibZstd.zstdDecompress) as Codec } : undefined;
const gzip = promisify(zlib.gzip) as Codec;
const gunzip = promisify(zlib.gunzip) as Codec;

/** The stored form of a checkpoint's JSON (encodeCheckpoint). */
export function compressCheckpoint(json: Buffer): Promise<Buffer> {
  return zstd === undefined ? gzip(json, {}) : zstd.compress(json, {});
}

/** The checkpoint's JSON from a stored value, whichever way it was stored; rejects when it cannot be decompressed. */
export async function decompressCheckpoint(stored: Buffer): Promise<Buffer> {
  const options = { maxOutputLength: MAX_CHECKPOINT_BYTES };
  if (stored.subarray(0, 4).equals(ZSTD_MAGIC)) {
    if (zstd === undefined) throw new Error(`the checkpoint is zstd-compressed and this Node.js (${process.version}) has no zstd in node:zlib: run the worker on Node.js 24`);
    return zstd.decompress(stored, options);
  }
  if (stored.subarray(0, 2).equals(GZIP_MAGIC)) return gunzip(stored, options);
  return stored;
}
