import { createRequire } from 'node:module';
import { CompressionCodecs } from 'kafkajs';
import { afterEach, describe, expect, it } from 'vitest';
import { CODEC_ERROR_HEADER, CODECS, registerCodecs, undecodableBatchReason, type CodecName } from '../../../src/kafka/codecs.js';
import { FIXTURE_SPANS, REAL_BATCHES } from './codec-batches.js';

// kafkajs' own record batch decoder: the codecs must produce what it reads.
const require = createRequire(import.meta.url);
const KafkaDecoder = require('kafkajs/src/protocol/decoder') as new (buffer: Buffer) => unknown;
const decodeRecordBatch = require('kafkajs/src/protocol/recordBatch/v0/decoder') as (decoder: unknown) => Promise<{
  firstOffset: string;
  lastOffsetDelta: number;
  records: Array<{ offset: string; key: Buffer | null; value: Buffer | null; headers: Record<string, Buffer> }>;
}>;

function decode(base64: string) {
  return decodeRecordBatch(new KafkaDecoder(Buffer.from(base64, 'base64')));
}

afterEach(() => registerCodecs());

describe('compression codecs', () => {
  const spans = FIXTURE_SPANS;

  it.each(REAL_BATCHES.map((b) => [b.codec, b.producer, b.batch] as const))('decodes a %s batch written by %s', async (_codec, _producer, batch) => {
    const decoded = await decode(batch);
    expect(decoded.records.map((r) => r.value?.toString('utf8'))).toEqual(spans);
    expect(decoded.records.every((r) => undecodableBatchReason(r) === undefined)).toBe(true);
  });

  it.each(Object.keys(CODECS) as CodecName[])('%s round-trips 1 MiB through kafkajs registration (or says it cannot compress)', async (name) => {
    const codec = (CompressionCodecs as unknown as Record<number, () => { compress(e: { buffer: Buffer }): Promise<Buffer>; decompress(b: Buffer): Promise<Buffer> }>)[CODECS[name].type]!();
    const data = Buffer.from(spans.join('\n').repeat(140).slice(0, 1 << 20));
    if (CODECS[name].implementation.compress === undefined) {
      await expect(codec.compress({ buffer: data })).rejects.toThrow(`${name} compression is not available`);
      return;
    }
    const compressed = await codec.compress({ buffer: data });
    expect(compressed.length).toBeLessThan(data.length / 2);
    expect((await codec.decompress(compressed)).equals(data)).toBe(true);
  });

  it.each(['snappy', 'lz4', 'zstd'] as const)('a disabled %s codec yields one marker per record at the last offset, read by kafkajs, instead of throwing', async (name) => {
    registerCodecs(new Set([name]));
    const batch = REAL_BATCHES.find((b) => b.codec === name)!.batch;
    const decoded = await decode(batch);
    expect(decoded.records).toHaveLength(20);
    const lastOffset = String(BigInt(decoded.firstOffset) + BigInt(decoded.lastOffsetDelta));
    expect(new Set(decoded.records.map((r) => r.offset))).toEqual(new Set([lastOffset]));
    const reason = undecodableBatchReason(decoded.records[0]!);
    expect(reason).toBe(`${name} decompression failed: no ${name} codec in this worker (batch of 20 records at offsets ${decoded.firstOffset}..${lastOffset})`);
    expect(decoded.records.slice(1).map((r) => [r.value, undecodableBatchReason(r)])).toEqual(Array(19).fill([null, undefined]));
  });

  it('corrupt data yields the marker with the decompressor error', async () => {
    const bytes = Buffer.from(REAL_BATCHES.find((b) => b.codec === 'zstd')!.batch, 'base64');
    bytes.fill(0x55, 70, 90); // inside the zstd frame, after its header
    const decoded = await decodeRecordBatch(new KafkaDecoder(bytes));
    expect(undecodableBatchReason(decoded.records[0]!)).toMatch(/^zstd decompression failed: .+ \(batch of 20 records at offsets/);
  });

  it('a record a producer sent with the marker header is not taken for a marker', () => {
    expect(undecodableBatchReason({ key: Buffer.from('k'), headers: { [CODEC_ERROR_HEADER]: Buffer.from('x') } })).toBeUndefined();
    expect(undecodableBatchReason({ key: null, headers: { [CODEC_ERROR_HEADER]: Buffer.from('x') } })).toBeUndefined();
  });

  it('without a record batch header before the data (e.g. a pre-0.11 message set) the failure is rethrown', async () => {
    registerCodecs(new Set(['lz4']));
    const codec = (CompressionCodecs as unknown as Record<number, () => { decompress(b: Buffer): Promise<Buffer> }>)[CODECS.lz4.type]!();
    await expect(codec.decompress(Buffer.alloc(100).subarray(0))).rejects.toThrow('no lz4 codec in this worker');
  });
});
