/**
 * Per-partition offset bookkeeping. Pure: no I/O.
 *
 * - `custody` is the offset after the last record this worker has taken into its buffer. Kafka
 *   may deliver a record again (kafkajs re-fetches from the committed offset after every
 *   rebalance, even for partitions it keeps); anything below `custody` is already buffered or
 *   durable and is skipped, which keeps order and avoids buffering a record twice.
 * - `durable` is the offset after the last record every store holds (or the dead-letter topic
 *   acknowledged): no commit passes it.
 * - `restartFrom` is where a stateful stage still needs records from after a restart (its oldest
 *   open work): no commit passes it either, so a commit may stay behind `durable`.
 * - `checkpointed` (only with `checkpoints`) is the newest offset for which the stateful stage
 *   persisted what a restart from there needs: commits go no further.
 * - `committed` is what Kafka has accepted, so commits are sent only when they move forward.
 */
export class PartitionOffsets {
  private custody: bigint | undefined;
  private durable: bigint | undefined;
  private restartFrom: bigint | undefined;
  private checkpointed: bigint | undefined;
  private committed: bigint | undefined;

  /** `checkpoints`: an offset is committed only after markCheckpointed (a stateful stage). */
  constructor(private readonly checkpoints = false) {}

  /** True if the record at `offset` is new to this worker and must be buffered. */
  accept(offset: bigint): boolean {
    if (this.custody !== undefined && offset < this.custody) return false;
    this.custody = offset + 1n;
    return true;
  }

  /** Every record up to and including `lastOffset` is durable. */
  markDurable(lastOffset: bigint): void {
    const next = lastOffset + 1n;
    if (this.durable === undefined || next > this.durable) this.durable = next;
  }

  /** A restart must re-read from `offset` (undefined: nothing needs re-reading). */
  holdAt(offset: bigint | undefined): void {
    this.restartFrom = offset;
  }

  /** The furthest a commit may go now: the durable offset, or the hold when it is lower. */
  private reachable(): bigint | undefined {
    if (this.durable === undefined) return undefined;
    return this.restartFrom !== undefined && this.restartFrom < this.durable ? this.restartFrom : this.durable;
  }

  /** The offset a checkpoint must be persisted for before it is committed, or undefined when none is due. */
  checkpointDue(): bigint | undefined {
    const target = this.reachable();
    if (target === undefined) return undefined;
    if (this.checkpointed !== undefined && this.checkpointed >= target) return undefined;
    if (this.committed !== undefined && this.committed >= target) return undefined;
    return target;
  }

  markCheckpointed(offset: bigint): void {
    if (this.checkpointed === undefined || offset > this.checkpointed) this.checkpointed = offset;
  }

  /** The offset to commit now, or undefined when Kafka already has it. */
  pendingCommit(): bigint | undefined {
    const target = this.checkpoints ? this.checkpointed : this.reachable();
    if (target === undefined) return undefined;
    if (this.committed !== undefined && this.committed >= target) return undefined;
    return target;
  }

  markCommitted(offset: bigint): void {
    if (this.committed === undefined || offset > this.committed) this.committed = offset;
  }

  get nextCustodyOffset(): bigint | undefined {
    return this.custody;
  }

  get committedOffset(): bigint | undefined {
    return this.committed;
  }
}
