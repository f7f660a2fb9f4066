import type { Logger } from 'pino';
import type { ClusterMetadata } from '@platformatic/kafka';
import type { ConsumedBatch } from '../../pipeline/consumer-port.js';
import { fetchPartitions, type FetchClient, type FetchSizes, type PartitionOutcome } from './fetcher.js';
import { PartitionStates, type PartitionState } from './partition-states.js';
import { batchesFootprint, partitionRecords } from './record-batches.js';

/** The part of @platformatic/kafka's Consumer the loop uses besides fetching. */
export interface LoopClient extends FetchClient {
  metadata(options: { topics: string[]; forceUpdate?: boolean }): Promise<ClusterMetadata>;
  clearMetadata(): void;
}

/** Where a newly assigned partition starts: the group's committed offsets, else the earliest or latest. */
export type StartingOffsets = (partitions: number[]) => Promise<Map<number, bigint>>;

export interface FetchLoopOptions {
  topic: string;
  sizes: FetchSizes;
  partitionsConcurrency: number;
  logger: Logger;
  startingOffsets: StartingOffsets;
  /** The earliest offset of each partition (an out-of-range position restarts there). */
  earliestOffsets: (partitions: number[]) => Promise<Map<number, bigint>>;
  eachBatch: (batch: ConsumedBatch) => Promise<void>;
  fetchedThrough: (partition: number, nextOffset: bigint) => void;
  /** The pipeline's callback threw (restart: the loop carries on). */
  onBatchError: (error: Error) => void;
}

const OFFSET_OUT_OF_RANGE = 1;

/**
 * The consumer's fetch loop, event-driven: whenever something changes (an assignment, a resume,
 * a fetch answered, a batch handled, a backoff over) `wake` sends one fetch to each broker that
 * leads a fetchable partition and has none under way (one at a time per broker: the library keeps
 * a fetch session per broker). Each partition's batch goes to the pipeline as soon as it arrives,
 * up to `partitionsConcurrency` at once, and the partition is fetched again only once its batch
 * was handled, from the offset after the last record the pipeline resolved.
 *
 * Fetch ahead: while a partition's batch is with the pipeline, the loop already fetches from
 * where that batch ends (as kafkajs overlaps fetching with processing), so that the next batch is
 * at hand when the pipeline resolves the whole batch. The answer is kept, not delivered, until
 * the batch is handled; it is delivered then only if the partition's position is its fetch
 * offset (a partly resolved batch is fetched again from the first unresolved record, as without
 * fetch ahead), and dropped if the partition was paused, revoked or backed off meanwhile. Memory
 * stays bounded: one fetch per broker is under way, and none (ahead or not) while an answer
 * fetched ahead from it waits, so at most one response per broker is outside the pipeline, as
 * with kafkajs; what waits counts against MAX_IN_FLIGHT_BYTES (`states.heldBytes`, reported
 * through GroupConsumer.heldBytes), and paused partitions hold nothing fetched ahead.
 */
export class FetchLoop {
  readonly states = new PartitionStates();
  private running = false;
  private readonly busyNodes = new Set<number>();
  private readonly highWatermarks = new Map<number, bigint>();
  private activeHandlers = 0;
  /** Batches with the pipeline now (at most partitionsConcurrency), and those waiting for a turn. */
  private inSlot = 0;
  private readonly handlerQueue: Array<() => void> = [];
  private readonly idle: Array<() => void> = [];
  private timer: NodeJS.Timeout | undefined;
  private initializing = false;

  constructor(
    private readonly client: LoopClient,
    private readonly options: FetchLoopOptions,
  ) {}

  get isRunning(): boolean {
    return this.running;
  }

  start(): void {
    this.running = true;
    this.wake();
  }

  /** Stops fetching; resolves once no fetch or batch is under way. */
  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    while (this.busyNodes.size > 0 || this.activeHandlers > 0) await new Promise<void>((resolve) => this.idle.push(resolve));
  }

  /** The group's new assignment: revoked partitions are stale at once, new ones look up where to start. */
  assign(partitions: Iterable<number>): { added: number[]; revoked: number[] } {
    const change = this.states.assign(partitions);
    for (const p of change.revoked) this.highWatermarks.delete(p);
    this.wake();
    return change;
  }

  pause(partitions?: readonly number[]): void {
    this.states.pause(partitions);
    // Data fetched ahead for them was dropped: their broker may take a fetch ahead for others.
    this.wake();
  }

  resume(partitions?: readonly number[]): void {
    this.states.resume(partitions);
    this.wake();
  }

  /** Starts every fetch that can start now, and arms a timer for the next backoff to end. */
  wake(): void {
    if (!this.running) return;
    void this.initializePositions();
    const now = Date.now();
    const fetchable = this.states.fetchable(now);
    const ahead = this.states.prefetchable(now, this.highWatermarks);
    if (fetchable.length > 0 || ahead.length > 0) void this.fetchAll(fetchable, ahead);
    const retryAt = this.states.nextRetryAt(now);
    clearTimeout(this.timer);
    if (retryAt !== undefined) this.timer = setTimeout(() => this.wake(), Math.max(0, retryAt - now));
  }

  /** New partitions: their starting offsets (committed, else earliest or latest). */
  private async initializePositions(): Promise<void> {
    if (this.initializing) return;
    const waiting = this.states.assigned.map((p) => this.states.get(p)!).filter((s) => s.position === undefined && !s.busy && s.retryAt <= Date.now());
    if (waiting.length === 0) return;
    this.initializing = true;
    for (const s of waiting) s.busy = true;
    try {
      const offsets = await this.options.startingOffsets(waiting.map((s) => s.partition));
      for (const s of waiting) {
        const offset = offsets.get(s.partition);
        if (offset === undefined) PartitionStates.backOff(s, Date.now());
        else s.position = offset;
      }
    } catch (e) {
      this.options.logger.warn({ err: e, partitions: waiting.map((s) => s.partition) }, 'could not look up where newly assigned partitions start; retrying');
      for (const s of waiting) PartitionStates.backOff(s, Date.now());
    } finally {
      for (const s of waiting) s.busy = false;
      this.initializing = false;
    }
    this.wake();
  }

  private async fetchAll(fetchable: PartitionState[], ahead: PartitionState[]): Promise<void> {
    const { topic } = this.options;
    for (const s of fetchable) s.busy = true;
    for (const s of ahead) s.prefetching = true;
    let metadata: ClusterMetadata;
    try {
      metadata = await this.client.metadata({ topics: [topic] });
    } catch (e) {
      for (const s of ahead) s.prefetching = false;
      this.failed(fetchable, e, 'metadata');
      return;
    }
    const topicMetadata = metadata.topics.get(topic);
    const byNode = new Map<number, PartitionState[]>();
    const unplaced: PartitionState[] = [];
    for (const s of fetchable) {
      const leader = topicMetadata?.partitions[s.partition]?.leader ?? -1;
      if (leader < 0) {
        // Leaderless: an election is under way.
        unplaced.push(s);
        continue;
      }
      if (this.busyNodes.has(leader) || this.states.holdsAheadFrom(leader)) {
        // Its broker has a fetch under way, or an answer fetched ahead from it waits (at most one
        // response per broker outside the pipeline, as kafkajs): it goes in the next one (wake()
        // after that fetch, or after the batch that the answer waits for).
        s.busy = false;
        continue;
      }
      let list = byNode.get(leader);
      if (list === undefined) byNode.set(leader, (list = []));
      list.push(s);
    }
    if (unplaced.length > 0) this.failed(unplaced, new Error('partition has no leader'), 'leader');
    const aheadByNode = new Map<number, PartitionState[]>();
    for (const s of ahead) {
      const leader = topicMetadata?.partitions[s.partition]?.leader ?? -1;
      // No fetch ahead to a broker with a fetch under way, or an answer fetched ahead still waiting (memory).
      if (leader < 0 || this.busyNodes.has(leader) || !this.states.isCurrent(s) || !s.handling || s.nextIfResolved === undefined || this.states.holdsAheadFrom(leader)) {
        s.prefetching = false;
        continue;
      }
      let list = aheadByNode.get(leader);
      if (list === undefined) aheadByNode.set(leader, (list = []));
      list.push(s);
    }
    for (const node of new Set([...byNode.keys(), ...aheadByNode.keys()])) void this.fetchFromNode(node, topicMetadata!.id, byNode.get(node) ?? [], aheadByNode.get(node) ?? []);
  }

  /** One fetch from `node`: `states` from their positions, `ahead` from where their batches with the pipeline end. */
  private async fetchFromNode(node: number, topicId: string, states: PartitionState[], ahead: PartitionState[]): Promise<void> {
    this.busyNodes.add(node);
    const positions = new Map(states.map((s) => [s.partition, s.position!]));
    const aheadOffsets = new Map(ahead.map((s) => [s.partition, s.nextIfResolved!]));
    const requested = [...positions, ...aheadOffsets].map(([partition, fetchOffset]) => ({ partition, fetchOffset }));
    let outcomes: Map<number, PartitionOutcome> | undefined;
    try {
      outcomes = await fetchPartitions(this.client, node, topicId, requested, this.options.sizes);
    } catch (e) {
      // The partitions fetched ahead are fetched again once their batches are handled (and back off then if need be).
      for (const s of ahead) s.prefetching = false;
      if (states.length > 0) this.failed(states, e, 'fetch');
      else this.client.clearMetadata();
    } finally {
      this.busyNodes.delete(node);
    }
    if (outcomes !== undefined) {
      for (const s of ahead) this.fetchedAhead(s, node, aheadOffsets.get(s.partition)!, outcomes.get(s.partition));
      for (const s of states) {
        const outcome = outcomes.get(s.partition);
        if (outcome === undefined) {
          // Nothing new for it.
          s.busy = false;
          PartitionStates.succeeded(s);
          continue;
        }
        this.took(s, positions.get(s.partition)!, outcome);
      }
    }
    this.settled();
    this.wake();
  }

  /** A partition's answer to a fetch ahead: kept for after its batch, delivered now if that batch was handled meanwhile, or dropped. */
  private fetchedAhead(state: PartitionState, node: number, fetchOffset: bigint, outcome: PartitionOutcome | undefined): void {
    state.prefetching = false;
    // Nothing new there (fetched again after the batch), or the partition is no longer to be delivered: dropped.
    if (outcome === undefined || !this.running || !this.states.isCurrent(state) || this.states.isPaused(state.partition)) return;
    if (state.handling) {
      this.states.holdAhead(state, { node, fetchOffset, outcome, bytes: outcome.kind === 'error' ? 0 : batchesFootprint(outcome.batches) });
      return;
    }
    // The batch before it was handled while the fetch was under way: delivered now if it was resolved in full.
    if (!state.busy && state.position === fetchOffset && state.retryAt <= Date.now()) {
      state.busy = true;
      this.took(state, fetchOffset, outcome);
    }
  }

  /** One partition's outcome of a fetch from `fetchOffset`. */
  private took(state: PartitionState, fetchOffset: bigint, outcome: PartitionOutcome): void {
    const { logger } = this.options;
    if (outcome.kind === 'error') {
      state.busy = false;
      if (outcome.errorCode === OFFSET_OUT_OF_RANGE) {
        void this.resetOutOfRange(state, fetchOffset, outcome.logStartOffset);
        return;
      }
      const delay = PartitionStates.backOff(state, Date.now());
      this.client.clearMetadata();
      logger.warn({ partition: state.partition, errorCode: outcome.errorCode, retryInMs: delay }, 'fetch refused for partition; refreshing metadata and retrying');
      return;
    }
    PartitionStates.succeeded(state);
    if (outcome.highWatermark >= 0n) this.highWatermarks.set(state.partition, outcome.highWatermark);
    // Paused or revoked while the fetch was under way: its records are not delivered (fetched again on resume).
    if (!this.running || !this.states.isCurrent(state) || this.states.isPaused(state.partition)) {
      state.busy = false;
      return;
    }
    const { messages, nextOffset } = partitionRecords(outcome.batches, fetchOffset);
    const undecodable = outcome.kind === 'undecodable' ? outcome.reason : undefined;
    if (messages.length === 0 && undecodable === undefined) {
      // Only control records (transaction markers), or records before the fetch offset.
      if (nextOffset !== undefined && nextOffset > fetchOffset) {
        state.position = nextOffset;
        this.options.fetchedThrough(state.partition, nextOffset);
      }
      state.busy = false;
      return;
    }
    void this.handle(state, fetchOffset, { messages, nextOffset, undecodable });
  }

  /** Hands one partition batch to the pipeline, at most `partitionsConcurrency` at once. */
  private async handle(state: PartitionState, fetchOffset: bigint, fetched: ReturnType<typeof partitionRecords> & { undecodable: string | undefined }): Promise<void> {
    this.activeHandlers += 1;
    state.handling = true;
    state.nextIfResolved = fetched.undecodable === undefined ? fetched.nextOffset : undefined;
    let slot = false;
    try {
      await this.handlerSlot();
      slot = true;
      let resolvedNext: bigint | undefined;
      const batch: ConsumedBatch = {
        partition: state.partition,
        highWatermark: this.highWatermarks.get(state.partition) ?? -1n,
        messages: fetched.messages,
        undecodable: fetched.undecodable,
        resolveOffset: (offset) => {
          if (resolvedNext === undefined || offset + 1n > resolvedNext) resolvedNext = offset + 1n;
        },
        // The library heartbeats on its own timer, whatever the pipeline is doing.
        heartbeat: () => Promise.resolve(),
        isRunning: () => this.running,
        isStale: () => !this.states.isCurrent(state),
      };
      if (this.states.isCurrent(state)) {
        try {
          await this.options.eachBatch(batch);
        } catch (e) {
          this.options.onBatchError(e as Error);
          PartitionStates.backOff(state, Date.now());
        }
      }
      if (this.states.isCurrent(state) && resolvedNext !== undefined && resolvedNext > fetchOffset) {
        state.position = resolvedNext;
        const last = fetched.messages.at(-1);
        // Every record delivered is in custody: the fetch is read through its end (control records after the last record included).
        if (fetched.undecodable === undefined && last !== undefined && resolvedNext === last.offset + 1n && fetched.nextOffset !== undefined) {
          if (fetched.nextOffset > state.position) state.position = fetched.nextOffset;
          this.options.fetchedThrough(state.partition, state.position);
        }
      }
    } finally {
      state.handling = false;
      state.nextIfResolved = undefined;
      this.activeHandlers -= 1;
      if (slot) this.releaseSlot();
      this.takeAhead(state);
      this.settled();
      this.wake();
    }
  }

  /** After a batch: the answer fetched ahead goes to the pipeline if it starts at the partition's position; else dropped. */
  private takeAhead(state: PartitionState): void {
    const ahead = this.states.takeAhead(state);
    if (ahead !== undefined && this.running && this.states.isCurrent(state) && !this.states.isPaused(state.partition) && state.position === ahead.fetchOffset && state.retryAt <= Date.now()) {
      this.took(state, ahead.fetchOffset, ahead.outcome);
      return;
    }
    state.busy = false;
  }

  private handlerSlot(): Promise<void> {
    if (this.inSlot < Math.max(1, this.options.partitionsConcurrency)) {
      this.inSlot += 1;
      return Promise.resolve();
    }
    // The slot passes straight to the waiter (releaseSlot does not give it back).
    return new Promise((resolve) => this.handlerQueue.push(resolve));
  }

  private releaseSlot(): void {
    const next = this.handlerQueue.shift();
    if (next !== undefined) next();
    else this.inSlot -= 1;
  }

  /** OFFSET_OUT_OF_RANGE: the records were deleted (retention) or the offset is past the end: start again from the earliest. */
  private async resetOutOfRange(state: PartitionState, fetchOffset: bigint, logStartOffset: bigint): Promise<void> {
    state.busy = true;
    try {
      const earliest = logStartOffset >= 0n ? logStartOffset : (await this.options.earliestOffsets([state.partition])).get(state.partition);
      if (earliest === undefined) throw new Error('no earliest offset');
      if (this.states.isCurrent(state) && state.position === fetchOffset) state.position = earliest;
      this.options.logger.warn({ partition: state.partition, fetchOffset: fetchOffset.toString(), earliest: earliest.toString() }, 'fetch offset out of range; reading from the earliest offset');
    } catch (e) {
      this.failed([state], e, 'offset reset');
      return;
    } finally {
      state.busy = false;
    }
    this.wake();
  }

  private failed(states: PartitionState[], error: unknown, what: string): void {
    this.client.clearMetadata();
    let delay = 0;
    for (const s of states) {
      s.busy = false;
      delay = PartitionStates.backOff(s, Date.now());
    }
    if (this.running) this.options.logger.warn({ err: error, partitions: states.map((s) => s.partition), retryInMs: delay }, `${what} failed; retrying`);
    this.wake();
  }

  private settled(): void {
    if (this.busyNodes.size === 0 && this.activeHandlers === 0) for (const resolve of this.idle.splice(0)) resolve();
  }
}
