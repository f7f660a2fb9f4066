import { GenericError, Reader, readRecordsBatch, type RecordsBatch } from '@platformatic/kafka';
import zlib from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { installCodecGuard, undecodableBatchError, undecodableReason } from '../../../../src/kafka/platformatic/codec-guard.js';
import { fetchPartitions, responseOf, type FetchClient, type FetchResponse } from '../../../../src/kafka/platformatic/fetcher.js';
import { FIXTURE_SPANS, REAL_BATCHES } from '../codec-batches.js';

const SIZES = { maxWaitTime: 10, maxBytes: 1 << 20, maxBytesPerPartition: 1 << 20 };

afterEach(() => installCodecGuard());

// @platformatic/kafka decompresses zstd with node:zlib, which has zstd from Node 22.15 on:
// spanledger runs on Node 24 (make uses it); on an older Node only the zstd batches are skipped.
const zlibHasZstd = typeof (zlib as { zstdDecompressSync?: unknown }).zstdDecompressSync === 'function';
if (!zlibHasZstd) console.log(`\n*** zstd batch decoding skipped: node:zlib of Node ${process.version} has no zstd (run the tests on Node 24: make test-unit) ***\n`);

describe('codec guard on the library decompressors', () => {
  const decodable = REAL_BATCHES.filter((b) => zlibHasZstd || b.codec !== 'zstd');
  it.each(decodable.map((b) => [b.producer, b.codec, b.batch] as const))('%s %s batches decode', (_producer, _codec, base64) => {
    const batch = readRecordsBatch(Reader.from(Buffer.from(base64, 'base64')));
    expect(batch.records.map((r) => r.value!.toString())).toEqual(FIXTURE_SPANS);
  });

  it('a corrupt batch is an undecodable batch error (not retried) naming the codec and the batch', () => {
    const gzip = REAL_BATCHES.find((b) => b.codec === 'gzip')!;
    const bytes = Buffer.from(gzip.batch, 'base64');
    // Corrupt the compressed records (the header is 61 bytes).
    for (let i = 70; i < 90; i += 1) bytes[i] = 0x55;
    let error: unknown;
    try {
      readRecordsBatch(Reader.from(bytes));
    } catch (e) {
      error = e;
    }
    expect(undecodableReason(error)).toMatch(/^gzip decompression failed: .+ \(batch of 20 records at offsets 0\.\.19\)$/);
    expect((error as { canRetry?: boolean }).canRetry).toBe(false);
  });

  it('a disabled codec (tests) and an unknown codec id are undecodable too', () => {
    installCodecGuard(new Set(['zstd']));
    const zstd = Buffer.from(REAL_BATCHES.find((b) => b.codec === 'zstd')!.batch, 'base64');
    expect(() => readRecordsBatch(Reader.from(zstd))).toThrow(/^zstd decompression failed: no zstd codec in this worker \(batch of 20 records at offsets 0\.\.19\)$/);
    const unknown = Buffer.from(zstd);
    unknown.writeInt16BE((unknown.readInt16BE(21) & ~0x07) | 6, 21);
    expect(() => readRecordsBatch(Reader.from(unknown))).toThrow(/^unknown \(id 6\) decompression failed: no unknown \(id 6\) codec in this worker/);
  });
});

interface LogBatch {
  firstOffset: bigint;
  count: number;
  bad?: boolean;
}

/** A broker holding a log of batches per partition (some that cannot be decompressed), answering as the library would. */
function fakeBroker(logs: Map<number, LogBatch[]>) {
  const requests: Array<Array<{ partition: number; fetchOffset: bigint; partitionMaxBytes: number }>> = [];
  const client: FetchClient = {
    async fetch(options) {
      const asked = options.topics[0]!.partitions;
      requests.push(asked.map((p) => ({ partition: p.partition, fetchOffset: p.fetchOffset, partitionMaxBytes: p.partitionMaxBytes })));
      const partitions = asked.map((p) => {
        let batches = (logs.get(p.partition) ?? []).filter((b) => b.firstOffset + BigInt(b.count) > p.fetchOffset);
        if (p.partitionMaxBytes === 1) batches = batches.slice(0, 1);
        if (batches.some((b) => b.bad)) throw undecodableBatchError('zstd decompression failed: boom');
        return { partitionIndex: p.partition, errorCode: 0, highWatermark: 100n, lastStableOffset: 100n, logStartOffset: 0n, abortedTransactions: null, preferredReadReplica: -1, records: batches.map(recordsBatch) };
      });
      return { throttleTimeMs: 0, errorCode: 0, sessionId: 0, responses: [{ topicId: 't', partitions }] } as FetchResponse;
    },
  };
  return { client, requests };
}

function recordsBatch(b: LogBatch): RecordsBatch {
  return {
    firstOffset: b.firstOffset,
    length: 100,
    partitionLeaderEpoch: 0,
    magic: 2,
    crc: 0,
    attributes: 0,
    lastOffsetDelta: b.count - 1,
    firstTimestamp: 0n,
    maxTimestamp: 0n,
    producerId: -1n,
    producerEpoch: 0,
    firstSequence: 0,
    records: Array.from({ length: b.count }, (_, i) => ({ length: 0, attributes: 0, timestampDelta: 0n, offsetDelta: i, key: null, value: Buffer.from(`${b.firstOffset + BigInt(i)}`), headers: [] })),
  };
}

describe('fetchPartitions', () => {
  it('an undecodable batch stops only its partition, after the batches before it', async () => {
    const { client, requests } = fakeBroker(
      new Map([
        [0, [{ firstOffset: 0n, count: 3 }]],
        [1, [{ firstOffset: 0n, count: 2 }, { firstOffset: 2n, count: 2 }, { firstOffset: 4n, count: 5, bad: true }, { firstOffset: 9n, count: 1 }]],
        [2, [{ firstOffset: 5n, count: 1 }]],
      ]),
    );
    const outcomes = await fetchPartitions(client, 1, 't', [0, 1, 2].map((partition) => ({ partition, fetchOffset: partition === 2 ? 5n : 0n })), SIZES);
    const first = outcomes.get(0)!;
    expect(first.kind === 'records' && first.batches.map((b) => b.firstOffset)).toEqual([0n]);
    expect(outcomes.get(2)!.kind).toBe('records');
    const bad = outcomes.get(1)!;
    expect(bad.kind).toBe('undecodable');
    if (bad.kind !== 'undecodable') return;
    expect(bad.batches.map((b) => b.firstOffset)).toEqual([0n, 2n]);
    expect(bad.reason).toBe('zstd decompression failed: boom (batch at offset 4)');
    // The whole fetch, then one partition at a time, then partition 1 one batch at a time.
    expect(requests.map((r) => r.map((p) => `${p.partition}@${p.fetchOffset}${p.partitionMaxBytes === 1 ? '/1' : ''}`))).toEqual([
      ['0@0', '1@0', '2@5'],
      ['0@0'],
      ['1@0'],
      ['1@0/1'],
      ['1@2/1'],
      ['1@4/1'],
      ['2@5'],
    ]);
  });

  it('a broker error on one partition keeps the records of the others', async () => {
    const response = {
      throttleTimeMs: 0,
      errorCode: 0,
      sessionId: 0,
      responses: [
        {
          topicId: 't',
          partitions: [
            { partitionIndex: 0, errorCode: 1, highWatermark: -1n, lastStableOffset: -1n, logStartOffset: 40n, abortedTransactions: null, preferredReadReplica: -1, records: null },
            { partitionIndex: 1, errorCode: 0, highWatermark: 3n, lastStableOffset: 3n, logStartOffset: 0n, abortedTransactions: null, preferredReadReplica: -1, records: [recordsBatch({ firstOffset: 0n, count: 3 })] },
          ],
        },
      ],
    } as FetchResponse;
    const failure = Object.assign(new GenericError('PLT_KFK_RESPONSE', 'Received response with error while executing API Fetch(v17)', { canRetry: false }), { response });
    const client: FetchClient = { fetch: () => Promise.reject(failure) };
    const outcomes = await fetchPartitions(client, 1, 't', [{ partition: 0, fetchOffset: 7n }, { partition: 1, fetchOffset: 0n }], SIZES);
    expect(outcomes.get(0)).toEqual({ kind: 'error', errorCode: 1, logStartOffset: 40n });
    expect(outcomes.get(1)!.kind).toBe('records');
    // After retries, the last attempt's response.
    expect(responseOf({ errors: [new Error('network'), failure] })).toBe(response);
    expect(responseOf(new Error('network'))).toBeUndefined();
  });

  it('other failures (network, broker down) are thrown for the loop to back off', async () => {
    const client: FetchClient = { fetch: () => Promise.reject(new Error('connect ECONNREFUSED')) };
    await expect(fetchPartitions(client, 1, 't', [{ partition: 0, fetchOffset: 0n }], SIZES)).rejects.toThrow('ECONNREFUSED');
  });
});
