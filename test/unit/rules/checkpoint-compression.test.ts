import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { compressCheckpoint, decompressCheckpoint } from '../../../src/rules/checkpoint-compression.js';
import { encodeCheckpoint, type TraceCheckpoint } from '../../../src/rules/trace-checkpoint.js';

const TENANT = '6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b';
const CHECKPOINT: TraceCheckpoint = {
  v: 1,
  processedEnd: 1234n,
  streamTime: 1_764_000_000_000,
  open: [{ tenantId: TENANT, traceId: 'a'.repeat(32), segment: 0, firstOffset: 1200n, firstIndex: 0 }],
  closed: Array.from({ length: 500 }, (_, i) => ({ tenantId: TENANT, traceId: i.toString(16).padStart(32, '0') })),
};

describe('rule checkpoint compression', () => {
  it('stores the JSON compressed and gives it back byte for byte', async () => {
    const json = encodeCheckpoint(CHECKPOINT);
    const stored = await compressCheckpoint(json);
    expect(stored.length).toBeLessThan(json.length / 2);
    expect(stored.subarray(0, 1).toString()).not.toBe('{');
    expect((await decompressCheckpoint(stored)).equals(json)).toBe(true);
  });

  it('reads what was stored before: JSON as the client decompressed it, and gzip', async () => {
    const json = encodeCheckpoint(CHECKPOINT);
    expect((await decompressCheckpoint(json)).equals(json)).toBe(true);
    expect((await decompressCheckpoint(zlib.gzipSync(json))).equals(json)).toBe(true);
  });

  it('rejects a damaged value (the rule stage then starts the partition without it)', async () => {
    const stored = await compressCheckpoint(encodeCheckpoint(CHECKPOINT));
    const damaged = Buffer.concat([stored.subarray(0, 8), Buffer.alloc(64, 0xff)]);
    await expect(decompressCheckpoint(damaged)).rejects.toThrow();
    await expect(decompressCheckpoint(Buffer.concat([zlib.gzipSync(Buffer.from('{}')).subarray(0, 10), Buffer.alloc(8)]))).rejects.toThrow();
  });
});
