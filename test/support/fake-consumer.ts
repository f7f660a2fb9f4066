import type { ConsumedBatch, ConsumedMessage, DeadLetter, DeadLetterPort, GroupConsumer, OffsetCommit } from '../../src/pipeline/consumer-port.js';

/** A record to append to a fake partition log. */
export interface FakeRecord {
  value: string | null;
  key?: string;
  headers?: Record<string, string>;
}

/**
 * A consumer group member without a broker. Each partition is a log the test appends to; the
 * test decides when a batch is fetched (`deliver`), when the assignment changes (`assign`,
 * `rebalance`) and how commits are answered (`onCommit`). Like kafkajs, the fetch position of a
 * partition moves with `resolveOffset`, goes back to the committed offset on every assignment,
 * and nothing is fetched from a paused partition.
 */
export class FakeConsumer implements GroupConsumer {
  readonly commits: OffsetCommit[] = [];
  readonly pauses: Array<readonly number[] | 'all'> = [];
  readonly resumes: Array<readonly number[] | 'all'> = [];
  /** Answers each commit; throw (or reject) to refuse it, or return a promise the test settles. */
  onCommit: (commit: OffsetCommit) => Promise<void> | void = () => {};
  connected = false;
  /** What heldBytes() reports: records fetched ahead, not yet delivered. Any pause drops them (0), as the port asks. */
  held = 0;
  subscribed: { topic: string; fromBeginning: boolean } | undefined;
  private readonly logs = new Map<number, ConsumedMessage[]>();
  private readonly position = new Map<number, number>();
  private readonly committed = new Map<number, number>();
  private readonly pausedPartitions = new Set<number>();
  private allPaused = false;
  private assignment: number[] = [];
  private running = false;
  /** Bumped by every assignment: batches fetched before it are stale. */
  private generation = 0;
  private eachBatch: ((batch: ConsumedBatch) => Promise<void>) | undefined;
  private readonly joinListeners: Array<(event: { memberId: string; assignment: Record<string, number[]> }) => void> = [];
  private readonly rebalancingListeners: Array<() => void> = [];
  private readonly crashListeners: Array<(event: { error: Error; restart: boolean }) => void> = [];

  constructor(readonly topic: string) {}

  async connect(): Promise<void> {
    this.connected = true;
  }

  async subscribe(topic: string, fromBeginning: boolean): Promise<void> {
    this.subscribed = { topic, fromBeginning };
  }

  async run(eachBatch: (batch: ConsumedBatch) => Promise<void>): Promise<void> {
    this.eachBatch = eachBatch;
    this.running = true;
  }

  pause(topic: string, partitions?: readonly number[]): void {
    if (topic !== this.topic) throw new Error(`paused unknown topic ${topic}`);
    this.pauses.push(partitions ?? 'all');
    this.held = 0;
    if (partitions === undefined) this.allPaused = true;
    else for (const p of partitions) this.pausedPartitions.add(p);
  }

  resume(topic: string, partitions?: readonly number[]): void {
    if (topic !== this.topic) throw new Error(`resumed unknown topic ${topic}`);
    this.resumes.push(partitions ?? 'all');
    if (partitions === undefined) this.allPaused = false;
    else for (const p of partitions) this.pausedPartitions.delete(p);
  }

  heldBytes(): number {
    return this.held;
  }

  async commitOffsets(offsets: OffsetCommit[]): Promise<void> {
    for (const c of offsets) {
      await this.onCommit(c);
      this.commits.push(c);
      this.committed.set(c.partition, Number(c.offset));
    }
  }

  async disconnect(): Promise<void> {
    this.running = false;
    this.connected = false;
  }

  onGroupJoin(listener: (event: { memberId: string; assignment: Record<string, number[]> }) => void): void {
    this.joinListeners.push(listener);
  }

  onRebalancing(listener: () => void): void {
    this.rebalancingListeners.push(listener);
  }

  onCrash(listener: (event: { error: Error; restart: boolean }) => void): void {
    this.crashListeners.push(listener);
  }

  /** Appends records to a partition's log; returns their offsets. */
  append(partition: number, records: FakeRecord[]): number[] {
    let log = this.logs.get(partition);
    if (log === undefined) this.logs.set(partition, (log = []));
    const offsets: number[] = [];
    for (const r of records) {
      const offset = log.length;
      offsets.push(offset);
      log.push({
        offset: BigInt(offset),
        key: r.key === undefined ? null : Buffer.from(r.key),
        value: r.value === null ? null : Buffer.from(r.value),
        headers: r.headers,
        timestamp: String(Date.now()),
      });
    }
    return offsets;
  }

  /** This member joins with `partitions` (no rebalancing event first: the first join). */
  assign(partitions: number[]): void {
    this.generation += 1;
    this.assignment = [...partitions];
    // kafkajs fetches every assigned partition from its committed offset after a join.
    for (const p of partitions) this.position.set(p, this.committed.get(p) ?? 0);
    for (const listener of this.joinListeners) listener({ memberId: 'fake-member', assignment: { [this.topic]: [...partitions] } });
  }

  /** The group rebalances and this member ends up with `partitions`. */
  rebalance(partitions: number[]): void {
    for (const listener of this.rebalancingListeners) listener();
    this.assign(partitions);
  }

  crash(error: Error, restart: boolean): void {
    for (const listener of this.crashListeners) listener({ error, restart });
  }

  isPaused(partition: number): boolean {
    return this.allPaused || this.pausedPartitions.has(partition);
  }

  /** Offset the next fetch of `partition` starts at. */
  fetchPosition(partition: number): number {
    return this.position.get(partition) ?? 0;
  }

  committedOffset(partition: number): number | undefined {
    return this.committed.get(partition);
  }

  /** Commits of one partition, as numbers, in the order they were accepted. */
  committedOffsets(partition: number): number[] {
    return this.commits.filter((c) => c.partition === partition).map((c) => Number(c.offset));
  }

  /**
   * Fetches up to `max` records of `partition` from its fetch position and hands them to the
   * pipeline; resolves when its eachBatch returns. Returns false (and fetches nothing) when the
   * partition is not assigned, paused, or has nothing new. `undecodable`: the log holds a batch
   * that cannot be decompressed right after the records fetched.
   */
  async deliver(partition: number, options: { max?: number; undecodable?: string } = {}): Promise<boolean> {
    const { eachBatch } = this;
    if (eachBatch === undefined || !this.running) throw new Error('deliver before run');
    if (!this.assignment.includes(partition) || this.isPaused(partition)) return false;
    const log = this.logs.get(partition) ?? [];
    const from = this.fetchPosition(partition);
    const messages = log.slice(from, from + (options.max ?? Number.MAX_SAFE_INTEGER));
    if (messages.length === 0 && options.undecodable === undefined) return false;
    const generation = this.generation;
    await eachBatch({
      partition,
      highWatermark: BigInt(log.length),
      messages,
      undecodable: options.undecodable,
      resolveOffset: (offset) => {
        if (generation === this.generation) this.position.set(partition, Number(offset) + 1);
      },
      heartbeat: async () => {},
      isRunning: () => this.running,
      isStale: () => generation !== this.generation,
    });
    return true;
  }
}

/** A dead-letter topic that acknowledges at once, unless the test makes `onSend` fail or wait. */
export class FakeDeadLetters implements DeadLetterPort {
  readonly sent: DeadLetter[] = [];
  onSend: (letters: DeadLetter[]) => Promise<void> | void = () => {};
  started: number | undefined;
  closed = false;

  async start(maxMessageBytes: number): Promise<void> {
    this.started = maxMessageBytes;
  }

  async send(letters: DeadLetter[]): Promise<void> {
    const pending = letters.filter((l) => l.outcome === undefined);
    if (pending.length === 0) return;
    await this.onSend(pending);
    for (const l of pending) {
      l.outcome = 'delivered';
      this.sent.push(l);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  detail(): string | undefined {
    return undefined;
  }
}
