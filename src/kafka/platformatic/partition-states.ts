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

  /** The group's assignment for this member: returns what was added and what was revoked. */
  assign(partitions: Iterable<number>): { added: number[]; revoked: number[] } {
    const next = new Set(partitions);
    const revoked: number[] = [];
    for (const [partition, state] of this.states) {
      if (next.has(partition)) continue;
      state.revoked = true;
      this.states.delete(partition);
      revoked.push(partition);
    }
    const added: number[] = [];
    for (const partition of next) {
      if (this.states.has(partition)) continue;
      this.states.set(partition, { partition, position: undefined, busy: false, retryAt: 0, failures: 0, revoked: false });
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
      if (state.position === undefined || state.busy || state.retryAt > now || this.isPaused(state.partition)) continue;
      out.push(state);
    }
    return out;
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
