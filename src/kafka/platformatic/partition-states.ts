import type { PartitionOutcome } from './fetcher.js';

/** One assigned partition of the consumer's topic, from its assignment until it is revoked. */
export interface PartitionState {
  readonly partition: number;
  /** The next offset to fetch; undefined until the starting offset is known (committed, else earliest or latest). */
  position: bigint | undefined;
  /** A fetch for it is under way, or its batch is with the pipeline: not fetched again until done. */
  busy: boolean;
  /** Not fetched before this time (ms since the epoch): a failed fetch backs off. */
  retryAt: number;
  /** Consecutive failed fetches (backoff grows with it). */
  failures: number;
  /** Set once a rebalance took the partition away: its batches are stale, their results dropped. */
  revoked: boolean;
  /** Its batch is with the pipeline (or waiting for a handler slot). */
  handling: boolean;
  /** Where the batch with the pipeline ends, should the pipeline resolve all of it: the fetch-ahead offset (undefined: none). */
  nextIfResolved: bigint | undefined;
  /** A fetch ahead (from `nextIfResolved`) is under way: no other fetch for it until it is answered. */
  prefetching: boolean;
  /**
   * A fetch-ahead answer waiting for the batch with the pipeline: delivered next only if the
   * position is then its fetch offset. Set and cleared through PartitionStates (holdAhead,
   * takeAhead), which keeps the count of bytes held.
   */
  readonly ahead: FetchedAhead | undefined;
}

/** A partition's answer from a fetch ahead of its position, kept until its batch before it is handled. */
export interface FetchedAhead {
  /** The broker that answered (at most one answer buffered ahead per broker). */
  node: number;
  fetchOffset: bigint;
  outcome: PartitionOutcome;
  /** Its records' footprint as the pipeline counts it (batchesFootprint). */
  bytes: number;
}

export const MIN_BACKOFF_MS = 250;
export const MAX_BACKOFF_MS = 10_000;

/**
 * Which partitions of the topic this member holds, where each is read from, and which are
 * paused. A pause outlasts assignments (the port's rule): a partition paused, revoked and
 * assigned again stays paused until resumed. Resuming the whole topic lifts every partition's
 * pause too, as kafkajs does (FetchPauses relies on it).
 */
export class PartitionStates {
  private readonly states = new Map<number, PartitionState>();
  private readonly pausedPartitions = new Set<number>();
  private topicPaused = false;
  private heldAheadBytes = 0;

  /** The group's assignment for this member: returns what was added and what was revoked. */
  assign(partitions: Iterable<number>): { added: number[]; revoked: number[] } {
    const next = new Set(partitions);
    const revoked: number[] = [];
    for (const [partition, state] of this.states) {
      if (next.has(partition)) continue;
      state.revoked = true;
      // Its data fetched ahead is stale: dropped now (memory), never delivered.
      this.takeAhead(state);
      this.states.delete(partition);
      revoked.push(partition);
    }
    const added: number[] = [];
    for (const partition of next) {
      if (this.states.has(partition)) continue;
      this.states.set(partition, { partition, position: undefined, busy: false, retryAt: 0, failures: 0, revoked: false, handling: false, nextIfResolved: undefined, prefetching: false, ahead: undefined });
      added.push(partition);
    }
    return { added: added.sort((a, b) => a - b), revoked: revoked.sort((a, b) => a - b) };
  }

  get assigned(): number[] {
    return [...this.states.keys()].sort((a, b) => a - b);
  }

  /** The partition's state while it is assigned. */
  get(partition: number): PartitionState | undefined {
    return this.states.get(partition);
  }

  /** True while `state` is still the partition's current assignment (not revoked, not replaced by a later one). */
  isCurrent(state: PartitionState): boolean {
    return !state.revoked && this.states.get(state.partition) === state;
  }

  pause(partitions?: readonly number[]): void {
    if (partitions === undefined) this.topicPaused = true;
    else for (const p of partitions) this.pausedPartitions.add(p);
    // A paused partition holds no data fetched ahead (the pause bounds memory): fetched again on resume.
    for (const state of this.states.values()) if (this.isPaused(state.partition)) this.takeAhead(state);
  }

  /**
   * Bytes of the answers fetched ahead that wait for their partitions' batches: the consumer
   * reports them to the pipeline, which counts them against MAX_IN_FLIGHT_BYTES.
   */
  get heldBytes(): number {
    return this.heldAheadBytes;
  }

  /** Keeps `ahead` for the partition until its batch is handled (replacing what it held). */
  holdAhead(state: PartitionState, ahead: FetchedAhead): void {
    this.takeAhead(state);
    (state as { ahead: FetchedAhead | undefined }).ahead = ahead;
    this.heldAheadBytes += ahead.bytes;
  }

  /** The partition's answer fetched ahead, if any, no longer held (to be delivered, or dropped). */
  takeAhead(state: PartitionState): FetchedAhead | undefined {
    const ahead = state.ahead;
    if (ahead === undefined) return undefined;
    (state as { ahead: FetchedAhead | undefined }).ahead = undefined;
    this.heldAheadBytes -= ahead.bytes;
    return ahead;
  }

  resume(partitions?: readonly number[]): void {
    if (partitions === undefined) {
      this.topicPaused = false;
      this.pausedPartitions.clear();
    } else {
      for (const p of partitions) this.pausedPartitions.delete(p);
    }
  }

  isPaused(partition: number): boolean {
    return this.topicPaused || this.pausedPartitions.has(partition);
  }

  /** Partitions to fetch now: assigned, starting offset known, not busy, not paused, not backing off. */
  fetchable(now: number): PartitionState[] {
    const out: PartitionState[] = [];
    for (const state of this.states.values()) {
      if (state.position === undefined || state.busy || state.prefetching || state.retryAt > now || this.isPaused(state.partition)) continue;
      out.push(state);
    }
    return out;
  }

  /**
   * Partitions worth fetching ahead now: a batch with the pipeline, ending before the last known
   * high watermark (so records are known to follow: a fetch ahead at the end of the log would
   * only hold the broker's one fetch slot in a long poll), not paused, not backing off, no fetch
   * ahead under way or answered.
   */
  prefetchable(now: number, highWatermarks: ReadonlyMap<number, bigint>): PartitionState[] {
    const out: PartitionState[] = [];
    for (const state of this.states.values()) {
      const next = state.nextIfResolved;
      if (!state.handling || next === undefined || state.prefetching || state.ahead !== undefined || state.retryAt > now || this.isPaused(state.partition)) continue;
      if ((highWatermarks.get(state.partition) ?? -1n) <= next) continue;
      out.push(state);
    }
    return out;
  }

  /** True while an answer fetched ahead from `node` waits for its partition's batch to be handled. */
  holdsAheadFrom(node: number): boolean {
    for (const state of this.states.values()) if (state.ahead?.node === node) return true;
    return false;
  }

  /** The earliest time a partition now backing off may be fetched (undefined when none waits). */
  nextRetryAt(now: number): number | undefined {
    let next: number | undefined;
    for (const state of this.states.values()) {
      if (state.retryAt > now && !state.busy && !this.isPaused(state.partition)) next = next === undefined ? state.retryAt : Math.min(next, state.retryAt);
    }
    return next;
  }

  /** A fetch of the partition failed: wait before the next one, longer after each failure. */
  static backOff(state: PartitionState, now: number): number {
    state.failures += 1;
    const delay = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** Math.min(state.failures - 1, 10));
    state.retryAt = now + delay;
    return delay;
  }

  static succeeded(state: PartitionState): void {
    state.failures = 0;
    state.retryAt = 0;
  }
}
