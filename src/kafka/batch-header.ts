/**
 * The header of a v2 record batch (kafka.apache.org/documentation/#recordbatch), read from the
 * bytes just before a batch's compressed records: both clients hand their decompressors a view
 * of the fetch response, so the header is there when the batch was not copied out of it. Used to
 * say which batch could not be decoded (offsets and record count).
 */

const BATCH_HEADER_BYTES = 61;
const BATCH = { baseOffset: 0, length: 8, magic: 16, attributes: 21, lastOffsetDelta: 23, recordCount: 57 } as const;
/** Bytes of a batch counted by its length field that come before the records. */
const BATCH_LENGTH_BEFORE_RECORDS = BATCH_HEADER_BYTES - (BATCH.length + 4);

export interface BatchHeader {
  baseOffset: bigint;
  lastOffsetDelta: number;
  recordCount: number;
}

/**
 * The header of the batch whose compressed records `compressed` is, when it checks out (magic 2,
 * a length that matches, codec id `codecId`, a believable record count); otherwise undefined
 * (a copy, a pre-0.11 message set, or bytes that are not a batch header).
 */
export function batchHeaderBefore(compressed: Buffer, codecId: number): BatchHeader | undefined {
  if (compressed.byteOffset < BATCH_HEADER_BYTES) return undefined;
  const header = Buffer.from(compressed.buffer, compressed.byteOffset - BATCH_HEADER_BYTES, BATCH_HEADER_BYTES);
  if (header.readInt8(BATCH.magic) !== 2) return undefined;
  if (header.readInt32BE(BATCH.length) !== compressed.length + BATCH_LENGTH_BEFORE_RECORDS) return undefined;
  if ((header.readInt16BE(BATCH.attributes) & 0x07) !== codecId) return undefined;
  const recordCount = header.readInt32BE(BATCH.recordCount);
  const lastOffsetDelta = header.readInt32BE(BATCH.lastOffsetDelta);
  if (recordCount < 1 || recordCount > lastOffsetDelta + 1) return undefined;
  return { baseOffset: header.readBigInt64BE(BATCH.baseOffset), lastOffsetDelta, recordCount };
}

/** "batch of N records at offsets A..B", as the dead-letter reasons say it. */
export function describeBatch({ baseOffset, lastOffsetDelta, recordCount }: BatchHeader): string {
  return `batch of ${recordCount} records at offsets ${baseOffset}..${baseOffset + BigInt(lastOffsetDelta)}`;
}
