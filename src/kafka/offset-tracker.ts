/**
 * Per-partition offset bookkeeping. Pure: no I/O.
 *
 * - `custody` is the offset after the last record this worker has taken into its buffer. Kafka
 *   may deliver a record again (kafkajs re-fetches from the committed offset after every
 *   rebalance, even for partitions it keeps); anything below `custody` is already buffered or
 *   durable and is skipped, which keeps order and avoids buffering a record twice.
 * - `durable` is the offset after the last record every store holds (or the dead-letter topic
 *   acknowledged): the only offset that may be committed.
 * - `committed` is what Kafka has accepted, so commits are sent only when they move forward.
 */
export class PartitionOffsets {
  private custody: bigint | undefined;
  private durable: bigint | undefined;
  private committed: bigint | undefined;

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

  /** The offset to commit now, or undefined when Kafka already has it. */
  pendingCommit(): bigint | undefined {
    if (this.durable === undefined) return undefined;
    if (this.committed !== undefined && this.committed >= this.durable) return undefined;
    return this.durable;
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
