import type { Consumer, RecordsBatch } from '@platformatic/kafka';

/** The library's parsed fetch response (its type is not exported by name). */
export type FetchResponse = Awaited<ReturnType<Consumer['fetch']>>;
import { undecodableReason } from './codec-guard.js';

/** The part of @platformatic/kafka's Consumer the fetcher uses (a fake in unit tests). */
export interface FetchClient {
  fetch(options: {
    node: number;
    topics: Array<{ topicId: string; partitions: Array<{ partition: number; fetchOffset: bigint; partitionMaxBytes: number; currentLeaderEpoch: number; lastFetchedEpoch: number }> }>;
    maxWaitTime: number;
    maxBytes: number;
    minBytes: number;
  }): Promise<FetchResponse>;
}

export interface FetchSizes {
  maxWaitTime: number;
  maxBytes: number;
  maxBytesPerPartition: number;
}

/** What a fetch brought for one partition. */
export type PartitionOutcome =
  | { kind: 'records'; batches: RecordsBatch[]; highWatermark: bigint }
  /** The batches before one that cannot be decompressed, and why. */
  | { kind: 'undecodable'; batches: RecordsBatch[]; highWatermark: bigint; reason: string }
  /** The broker's error code for the partition (e.g. 1 OFFSET_OUT_OF_RANGE, 6 NOT_LEADER_OR_FOLLOWER). */
  | { kind: 'error'; errorCode: number; logStartOffset: bigint };

/** Small enough that the broker answers with exactly one batch (it always sends a first batch whole). */
const ONE_BATCH_BYTES = 1;

/**
 * Fetches `partitions` of a topic from one broker (its leader for all of them) and says per
 * partition what came back. Partitions absent from the answer had nothing new. A broker error on
 * some partitions does not lose the others' records. A batch that cannot be decompressed fails
 * the library's whole fetch: the partitions are then fetched one at a time, and the one that
 * fails is read one batch at a time up to the bad batch, so that the records before it are
 * delivered and only that partition stops. Anything else (network, broker down) is thrown.
 */
export async function fetchPartitions(client: FetchClient, node: number, topicId: string, partitions: ReadonlyArray<{ partition: number; fetchOffset: bigint }>, sizes: FetchSizes): Promise<Map<number, PartitionOutcome>> {
  try {
    return outcomes(await fetchOnce(client, node, topicId, partitions, sizes, sizes.maxBytesPerPartition), partitions);
  } catch (e) {
    const response = responseOf(e);
    if (response !== undefined) return outcomes(response, partitions);
    if (undecodableReason(e) === undefined) throw e;
  }
  const result = new Map<number, PartitionOutcome>();
  if (partitions.length > 1) {
    for (const p of partitions) for (const [partition, outcome] of await fetchPartitions(client, node, topicId, [p], sizes)) result.set(partition, outcome);
    return result;
  }
  const only = partitions[0]!;
  result.set(only.partition, await readUpToUndecodable(client, node, topicId, only, sizes));
  return result;
}

/**
 * The partition's batches one by one from `fetchOffset` until the one that fails (at most a
 * normal fetch's worth: past that the next fetch carries on from there).
 */
async function readUpToUndecodable(client: FetchClient, node: number, topicId: string, start: { partition: number; fetchOffset: bigint }, sizes: FetchSizes): Promise<PartitionOutcome> {
  const batches: RecordsBatch[] = [];
  let bytes = 0;
  let highWatermark = -1n;
  let offset = start.fetchOffset;
  while (bytes < sizes.maxBytesPerPartition) {
    let response: FetchResponse;
    try {
      response = await fetchOnce(client, node, topicId, [{ partition: start.partition, fetchOffset: offset }], sizes, ONE_BATCH_BYTES);
    } catch (e) {
      const reason = undecodableReason(e);
      if (reason === undefined) throw e;
      return { kind: 'undecodable', batches, highWatermark, reason: reason.includes('(batch ') ? reason : `${reason} (batch at offset ${offset})` };
    }
    const outcome = outcomes(response, [start]).get(start.partition);
    if (outcome === undefined) break;
    if (outcome.kind !== 'records') return batches.length === 0 ? outcome : { kind: 'records', batches, highWatermark };
    highWatermark = outcome.highWatermark;
    const last = outcome.batches.at(-1);
    if (last === undefined) break;
    batches.push(...outcome.batches);
    bytes += outcome.batches.reduce((n, b) => n + b.length, 0);
    offset = last.firstOffset + BigInt(last.lastOffsetDelta) + 1n;
  }
  return { kind: 'records', batches, highWatermark };
}

function fetchOnce(client: FetchClient, node: number, topicId: string, partitions: ReadonlyArray<{ partition: number; fetchOffset: bigint }>, sizes: FetchSizes, partitionMaxBytes: number): Promise<FetchResponse> {
  return client.fetch({
    node,
    topics: [{ topicId, partitions: partitions.map((p) => ({ partition: p.partition, fetchOffset: p.fetchOffset, partitionMaxBytes, currentLeaderEpoch: -1, lastFetchedEpoch: -1 })) }],
    maxWaitTime: sizes.maxWaitTime,
    maxBytes: sizes.maxBytes,
    minBytes: 1,
  });
}

/** Per requested partition, what the response holds for it (partitions a fetch session still lists but we did not ask for are ignored). */
export function outcomes(response: FetchResponse, requested: ReadonlyArray<{ partition: number }>): Map<number, PartitionOutcome> {
  const wanted = new Set(requested.map((p) => p.partition));
  const result = new Map<number, PartitionOutcome>();
  for (const topic of response.responses) {
    for (const p of topic.partitions) {
      if (!wanted.has(p.partitionIndex)) continue;
      if (p.errorCode !== 0) result.set(p.partitionIndex, { kind: 'error', errorCode: p.errorCode, logStartOffset: p.logStartOffset });
      else result.set(p.partitionIndex, { kind: 'records', batches: p.records ?? [], highWatermark: p.highWatermark });
    }
  }
  return result;
}

/**
 * The library reports a broker error on any partition as an error of the whole fetch, with the
 * parsed response attached (the other partitions' records included); after retries, the last
 * attempt's error is the last of MultipleErrors' `errors`.
 */
export function responseOf(error: unknown): FetchResponse | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const inner = (error as { errors?: unknown[] }).errors;
  if (Array.isArray(inner)) {
    for (let i = inner.length - 1; i >= 0; i -= 1) {
      const response = responseOf(inner[i]);
      if (response !== undefined) return response;
    }
  }
  const response = (error as { response?: unknown }).response;
  if (typeof response === 'object' && response !== null && Array.isArray((response as FetchResponse).responses) && (response as FetchResponse).errorCode === 0) return response as FetchResponse;
  return undefined;
}
