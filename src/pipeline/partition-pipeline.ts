import { PartitionBatch, type BatchOrder, type FlushPlan } from './partition-batch.js';
import type { ConsumedMessage } from './consumer-port.js';
import { PartitionOffsets } from './partition-offsets.js';

/**
 * One assigned partition: records in custody, its buffer, its offsets, and the queues of its
 * flushes (one per stage) that keep offset order.
 */
export class PartitionPipeline<T> {
  readonly batch: PartitionBatch<T>;
  readonly offsets: PartitionOffsets;
  /** Settles when the latest flush (and so every earlier one) has finished or failed. */
  chain: Promise<void> = Promise.resolve();
  /** Flushes and other links of the chain (opening, ticks) not settled yet. */
  pending = 0;
  /** The commit under way, if any: at most one per partition, coalescing later requests. */
  committing: Promise<void> | undefined;
  commitAgain = false;
  /** Records in custody, not decoded yet (in offset order). */
  incoming: Array<{ message: ConsumedMessage; offset: bigint; bytes: number }> = [];
  processing: NodeJS.Immediate | undefined;
  /** DECODE_THREADS: settles when the answers of every chunk sent to the decode threads are applied. */
  decoded: Promise<void> = Promise.resolve();
  /** Chunks sent to the decode threads whose answers are not applied yet. */
  decodingChunks = 0;
  /** The last fetched batch reached the partition's high watermark. */
  caughtUp = false;
  /**
   * Wall-clock time (ms) of the partition's last flush at the age limit or on catching up (not at
   * the size limits, nor because the in-flight budget ran short): see caughtUpFlushIntervalMs.
   */
  lastTimedFlushAt: number | undefined;
  /** The next flush, waiting for the first stage; later batches are merged into it. */
  queued: FlushPlan<T> | undefined;
  /** Per stage: the latest flush's run of that stage (never rejects). */
  readonly stageTails: Promise<void>[];
  timer: NodeJS.Timeout | undefined;
  /** A stateful processor's wall-clock ticks. */
  ticker: NodeJS.Timeout | undefined;
  closed = false;
  /** Aborted by close(): sinks cancel the partition's calls under way (SinkFlush.signal). */
  private readonly released = new AbortController();
  highWatermark: bigint | undefined;
  /** Wall-clock time (ms) Kafka last accepted a commit of this partition, for /status. */
  lastCommitAt: number | undefined;

  constructor(
    readonly partition: number,
    stages: number,
    order: BatchOrder,
    checkpoints: boolean,
  ) {
    this.batch = new PartitionBatch<T>(order);
    this.offsets = new PartitionOffsets(checkpoints);
    this.stageTails = Array.from({ length: Math.max(1, stages) }, () => Promise.resolve());
  }

  /** Aborted once the partition is closed. */
  get signal(): AbortSignal {
    return this.released.signal;
  }

  /** No flush starts, no stage runs and nothing is committed from now on; sinks' calls under way are aborted. */
  close(): void {
    this.closed = true;
    if (!this.released.signal.aborted) this.released.abort(new Error(`partition ${this.partition} released`));
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = undefined;
  }
}
