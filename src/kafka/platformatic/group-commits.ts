import type { OffsetCommit } from '../../pipeline/consumer-port.js';

/** Sends one OffsetCommit request for the member's current generation; rejects with the broker's refusal. */
export type CommitSender = (offsets: OffsetCommit[]) => Promise<void>;

export interface GroupCommitsOptions {
  send: CommitSender;
  /** The refusal means "this generation is over or not complete yet" (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, not a member yet). */
  isRebalanceRefusal: (error: unknown) => boolean;
  /** The member owns the partition now (a commit of a partition it lost is not worth keeping). */
  owns: (topic: string, partition: number) => boolean;
  /** How long a refused commit waits for the next join before it fails for good. */
  holdLimitMs: number;
}

interface Waiter {
  resolve: () => void;
  reject: (error: unknown) => void;
}

interface Held {
  commit: OffsetCommit;
  waiters: Waiter[];
  /** The refusal that put it on hold: what the waiters get if no join comes in time. */
  refusal: unknown;
  timer: NodeJS.Timeout;
}

/** A commit of a partition this member no longer owns: the next owner reads from the last committed offset. */
export class CommitDroppedError extends Error {
  constructor(topic: string, partition: number) {
    super(`partition ${topic}/${partition} was revoked before its offset could be committed; its next owner reads from the last committed offset`);
    this.name = 'CommitDroppedError';
  }
}

/**
 * The member's offset commits around rebalances. Kafka accepts a commit of the current
 * generation while the group is stable or preparing a rebalance, and refuses it while the
 * rebalance completes (REBALANCE_IN_PROGRESS) or once the generation is over (ILLEGAL_GENERATION).
 * A refused commit is not sent again at once (it would be refused again, and with
 * @platformatic/kafka's own commit it would even make the member rejoin the group, starting one
 * more rebalance): it is held, the newest offset per partition, until this member joins the next
 * generation, then sent for the partitions it still owns. Those it lost are dropped (their
 * callers' promises reject with CommitDroppedError), so that a revoked partition is released
 * without waiting for a commit Kafka would refuse: the next owner reads again from the last
 * commit, into idempotent stores (at least once). Each caller's promise settles with the outcome
 * of the request that carried its offset, or of a newer offset of the same partition.
 */
export class GroupCommits {
  private readonly held = new Map<string, Held>();
  /** Joins seen so far: a refusal that answers a request sent before the latest join is not this generation's. */
  private joins = 0;
  private closed = false;

  constructor(private readonly options: GroupCommitsOptions) {}

  /** Resolves once Kafka has the offsets (or newer ones of the same partitions). */
  commit(offsets: readonly OffsetCommit[]): Promise<void> {
    if (offsets.length === 0) return Promise.resolve();
    if (this.closed) return Promise.reject(new Error('the consumer is closing: offsets not committed'));
    const items: Array<{ commit: OffsetCommit; waiters: Waiter[] }> = [];
    const waiting = offsets.map((commit) => new Promise<void>((resolve, reject) => items.push({ commit, waiters: [{ resolve, reject }] })));
    // One request for all of them.
    this.dispatch(items);
    return Promise.all(waiting).then(() => undefined);
  }

  /**
   * The member joined a new generation: held commits of partitions it still owns are sent now,
   * the others dropped. Call after the member's assignment was updated.
   */
  joined(): void {
    this.joins += 1;
    const entries = [...this.held.values()];
    for (const entry of entries) clearTimeout(entry.timer);
    this.held.clear();
    const kept = entries.filter((e) => this.keepOrDrop(e));
    if (kept.length > 0) this.dispatch(kept.map((e) => ({ commit: e.commit, waiters: e.waiters })));
  }

  /** The member lost these partitions: their held commits are dropped now, so that nothing waits on them. */
  revoked(topic: string, partitions: readonly number[]): void {
    for (const partition of partitions) {
      const key = keyOf(topic, partition);
      const entry = this.held.get(key);
      if (entry === undefined) continue;
      this.held.delete(key);
      clearTimeout(entry.timer);
      for (const w of entry.waiters) w.reject(new CommitDroppedError(topic, partition));
    }
  }

  /** The consumer stops (or lost the group for good): nothing held will be sent. */
  close(error: Error): void {
    this.closed = true;
    this.failAll(error);
  }

  /** Fails what is held (the member could not rejoin); later commits are tried again. */
  failAll(error: Error): void {
    const entries = [...this.held.values()];
    this.held.clear();
    for (const entry of entries) {
      clearTimeout(entry.timer);
      for (const w of entry.waiters) w.reject(error);
    }
  }

  /** How many partitions have a commit on hold. */
  get heldCount(): number {
    return this.held.size;
  }

  private keepOrDrop(entry: Held): boolean {
    const { topic, partition } = entry.commit;
    if (this.options.owns(topic, partition)) return true;
    for (const w of entry.waiters) w.reject(new CommitDroppedError(topic, partition));
    return false;
  }

  /** Sends the commits in one request, or holds them if a refused commit of the same partition already waits for the next join. */
  private dispatch(items: Array<{ commit: OffsetCommit; waiters: Waiter[] }>): void {
    const toSend: typeof items = [];
    for (const item of items) {
      const entry = this.held.get(keyOf(item.commit.topic, item.commit.partition));
      if (entry === undefined) toSend.push(item);
      else this.merge(entry, item.commit, item.waiters);
    }
    if (toSend.length === 0) return;
    const joinsAtSend = this.joins;
    this.options.send(toSend.map((i) => i.commit)).then(
      () => {
        for (const i of toSend) for (const w of i.waiters) w.resolve();
      },
      (error: unknown) => this.refused(toSend, error, joinsAtSend),
    );
  }

  private refused(items: Array<{ commit: OffsetCommit; waiters: Waiter[] }>, error: unknown, joinsAtSend: number): void {
    if (this.closed || !this.options.isRebalanceRefusal(error)) {
      for (const i of items) for (const w of i.waiters) w.reject(error);
      return;
    }
    const retryNow: typeof items = [];
    for (const item of items) {
      const { topic, partition } = item.commit;
      if (!this.options.owns(topic, partition)) {
        for (const w of item.waiters) w.reject(new CommitDroppedError(topic, partition));
      } else if (this.joins !== joinsAtSend) {
        // The refusal answers the previous generation; this member is in a newer one already.
        retryNow.push(item);
      } else {
        this.hold(item.commit, item.waiters, error);
      }
    }
    if (retryNow.length > 0) this.dispatch(retryNow);
  }

  private hold(commit: OffsetCommit, waiters: Waiter[], refusal: unknown): void {
    const key = keyOf(commit.topic, commit.partition);
    const existing = this.held.get(key);
    if (existing !== undefined) {
      this.merge(existing, commit, waiters);
      return;
    }
    const timer = setTimeout(() => {
      const entry = this.held.get(key);
      if (entry === undefined) return;
      this.held.delete(key);
      for (const w of entry.waiters) w.reject(entry.refusal);
    }, this.options.holdLimitMs);
    timer.unref();
    this.held.set(key, { commit, waiters: [...waiters], refusal, timer });
  }

  /** Commits never go backwards: the newest offset of the partition is the one kept. */
  private merge(entry: Held, commit: OffsetCommit, waiters: Waiter[]): void {
    if (commit.offset > entry.commit.offset) entry.commit = commit;
    entry.waiters.push(...waiters);
  }
}

function keyOf(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}
