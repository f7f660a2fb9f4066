import type { RecordsBatch } from '@platformatic/kafka';
import pino from 'pino';
import { describe, expect, it, vi } from 'vitest';
import { FetchLoop, type LoopClient } from '../../../../src/kafka/platformatic/fetch-loop.js';
import type { FetchResponse } from '../../../../src/kafka/platformatic/fetcher.js';
import type { ConsumedBatch } from '../../../../src/pipeline/consumer-port.js';
import { RECORD_OVERHEAD_BYTES } from '../../../../src/model/headers.js';

const BATCH = 10;

/** One broker (node 1) leading every partition; each partition's log is `length` records in batches of BATCH; a fetch answers one batch per partition. */
function fakeBroker(partitions: number, length: number) {
  const requests: Array<Array<{ partition: number; fetchOffset: bigint }>> = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const client: LoopClient = {
    async metadata() {
      return { topics: new Map([['t', { id: 'tid', partitions: Array.from({ length: partitions }, () => ({ leader: 1 })) }]]) } as never;
    },
    clearMetadata() {},
    async fetch(options) {
      const asked = options.topics[0]!.partitions;
      requests.push(asked.map((p) => ({ partition: p.partition, fetchOffset: p.fetchOffset })));
      inFlight += 1;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((resolve) => setTimeout(resolve, 2));
      inFlight -= 1;
      const answered = asked.flatMap((p) => {
        if (p.fetchOffset >= BigInt(length)) return [];
        const first = (p.fetchOffset / BigInt(BATCH)) * BigInt(BATCH);
        return [{ partitionIndex: p.partition, errorCode: 0, highWatermark: BigInt(length), lastStableOffset: BigInt(length), logStartOffset: 0n, abortedTransactions: null, preferredReadReplica: -1, records: [recordsBatch(first)] }];
      });
      return { throttleTimeMs: 0, errorCode: 0, sessionId: 0, responses: [{ topicId: 'tid', partitions: answered }] } as unknown as FetchResponse;
    },
  };
  return { client, requests, maxInFlight: () => maxInFlight };
}

function recordsBatch(firstOffset: bigint): RecordsBatch {
  return {
    firstOffset,
    length: 100,
    partitionLeaderEpoch: 0,
    magic: 2,
    crc: 0,
    attributes: 0,
    lastOffsetDelta: BATCH - 1,
    firstTimestamp: 0n,
    maxTimestamp: 0n,
    producerId: -1n,
    producerEpoch: 0,
    firstSequence: 0,
    records: Array.from({ length: BATCH }, (_, i) => ({ length: 0, attributes: 0, timestampDelta: 0n, offsetDelta: i, key: null, value: Buffer.from(`${firstOffset + BigInt(i)}`), headers: [] })),
  } as unknown as RecordsBatch;
}

function loopOver(client: LoopClient, eachBatch: (batch: ConsumedBatch) => Promise<void>, partitionsConcurrency = 4) {
  return new FetchLoop(client, {
    topic: 't',
    sizes: { maxWaitTime: 10, maxBytes: 1 << 20, maxBytesPerPartition: 1 << 20 },
    partitionsConcurrency,
    logger: pino({ level: 'silent' }),
    startingOffsets: async (partitions) => new Map(partitions.map((p) => [p, 0n])),
    earliestOffsets: async (partitions) => new Map(partitions.map((p) => [p, 0n])),
    eachBatch,
    fetchedThrough: () => {},
    onBatchError: (e) => {
      throw e;
    },
  });
}

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('FetchLoop fetch ahead', () => {
  it('fetches a partition ahead while its batch is handled, delivering every record once and in order, one fetch per broker at a time', async () => {
    const broker = fakeBroker(3, 60);
    const delivered = new Map<number, bigint[]>();
    const loop = loopOver(broker.client, async (batch) => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      for (const m of batch.messages) {
        (delivered.get(batch.partition) ?? delivered.set(batch.partition, []).get(batch.partition)!).push(m.offset);
        batch.resolveOffset(m.offset);
      }
    });
    loop.start();
    loop.assign([0, 1, 2]);
    await vi.waitFor(() => expect([...delivered.values()].map((o) => o.length)).toEqual([60, 60, 60]), { timeout: 5000 });
    await loop.stop();
    for (const offsets of delivered.values()) expect(offsets).toEqual(Array.from({ length: 60 }, (_, i) => BigInt(i)));
    expect(broker.maxInFlight()).toBe(1);
    // Fetch ahead: every partition's offsets after the first batch were asked for while the batch before was handled, never twice.
    const asked = broker.requests.flat().filter((r) => r.fetchOffset < 60n);
    expect(asked.length).toBe(3 * 6);
  });

  it('overlaps: the next batch is requested before the pipeline finishes the current one, and waits for it', async () => {
    const broker = fakeBroker(1, 30);
    const gate = deferred();
    const seen: bigint[] = [];
    const loop = loopOver(broker.client, async (batch) => {
      seen.push(batch.messages[0]!.offset);
      if (seen.length === 1) await gate.promise;
      for (const m of batch.messages) batch.resolveOffset(m.offset);
    });
    loop.start();
    loop.assign([0]);
    await vi.waitFor(() => expect(broker.requests.flat()).toContainEqual({ partition: 0, fetchOffset: 10n }));
    // Only one answer waits ahead: no fetch from 20 until the batch at 10 is delivered.
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(broker.requests.flat().map((r) => r.fetchOffset)).toEqual([0n, 10n]);
    expect(seen).toEqual([0n]);
    gate.resolve();
    await vi.waitFor(() => expect(seen).toEqual([0n, 10n, 20n]));
    await loop.stop();
  });

  it('an answer fetched ahead counts as held bytes until delivered, and no other response from its broker comes meanwhile', async () => {
    const broker = fakeBroker(2, 40);
    const gate = deferred();
    const seen: Array<[number, bigint]> = [];
    const loop = loopOver(broker.client, async (batch) => {
      seen.push([batch.partition, batch.messages[0]!.offset]);
      if (batch.partition === 0 && batch.messages[0]!.offset === 0n) await gate.promise;
      for (const m of batch.messages) batch.resolveOffset(m.offset);
    });
    loop.start();
    loop.assign([0, 1]);
    // Partition 0's records 10..19 (values "10".."19") fetched ahead and waiting: their footprint as the pipeline counts it.
    const footprint = 10 * (RECORD_OVERHEAD_BYTES + 2);
    await vi.waitFor(() => expect(loop.states.heldBytes).toBe(footprint));
    const asked = broker.requests.length;
    await new Promise((resolve) => setTimeout(resolve, 30));
    // Partition 1 is fetchable, but its broker's answer for partition 0 waits: nothing more is asked.
    expect(broker.requests.length).toBe(asked);
    gate.resolve();
    await vi.waitFor(() => expect(seen.filter(([p]) => p === 0).map(([, o]) => o)).toEqual([0n, 10n, 20n, 30n]));
    await vi.waitFor(() => expect(seen.filter(([p]) => p === 1).map(([, o]) => o)).toEqual([0n, 10n, 20n, 30n]));
    expect(loop.states.heldBytes).toBe(0);
    await loop.stop();
  });

  it('a batch resolved in part drops the data fetched ahead and fetches again from the first unresolved record', async () => {
    const broker = fakeBroker(1, 20);
    const firstOffsets: bigint[] = [];
    let calls = 0;
    const loop = loopOver(broker.client, async (batch) => {
      firstOffsets.push(batch.messages[0]!.offset);
      calls += 1;
      // The first batch: wait for the fetch ahead to be answered, then resolve only offsets 0..4.
      if (calls === 1) {
        await vi.waitFor(() => expect(broker.requests.flat()).toContainEqual({ partition: 0, fetchOffset: 10n }));
        await new Promise((resolve) => setTimeout(resolve, 10));
        for (const m of batch.messages.slice(0, 5)) batch.resolveOffset(m.offset);
        return;
      }
      for (const m of batch.messages) batch.resolveOffset(m.offset);
    });
    loop.start();
    loop.assign([0]);
    await vi.waitFor(() => expect(firstOffsets.at(-1)).toBe(10n));
    await loop.stop();
    expect(firstOffsets).toEqual([0n, 5n, 10n]);
  });

  it('a partition paused or revoked while its batch is handled gets nothing fetched ahead', async () => {
    const broker = fakeBroker(2, 40);
    const seen: Array<[number, bigint]> = [];
    const gates = new Map([
      [0, deferred()],
      [1, deferred()],
    ]);
    const loop = loopOver(broker.client, async (batch) => {
      seen.push([batch.partition, batch.messages[0]!.offset]);
      if (batch.messages[0]!.offset === 0n) await gates.get(batch.partition)!.promise;
      for (const m of batch.messages) batch.resolveOffset(m.offset);
    });
    loop.start();
    loop.assign([0, 1]);
    await vi.waitFor(() => expect(broker.requests.flat()).toEqual(expect.arrayContaining([{ partition: 0, fetchOffset: 10n }, { partition: 1, fetchOffset: 10n }])));
    await new Promise((resolve) => setTimeout(resolve, 10));
    loop.pause([0]);
    loop.assign([0]);
    gates.get(0)!.resolve();
    gates.get(1)!.resolve();
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(seen.sort()).toEqual([
      [0, 0n],
      [1, 0n],
    ]);
    loop.resume([0]);
    await vi.waitFor(() => expect(seen.filter(([p]) => p === 0).map(([, o]) => o)).toEqual([0n, 10n, 20n, 30n]));
    await loop.stop();
    expect(seen.filter(([p]) => p === 1)).toEqual([[1, 0n]]);
  });
});
