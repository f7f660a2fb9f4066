import type { FetchPauses } from './fetch-pauses.js';
import type { PipelineOptions } from './options.js';

type StuckOptions = Pick<PipelineOptions<unknown>, 'topic' | 'metrics' | 'logger'>;

/**
 * Partitions paused at a batch that cannot be decompressed (codec missing or data corrupt).
 * Skipping it would lose records and crashing would loop, so only this partition is paused, at
 * the batch: nothing at or past it is taken or committed, the other partitions go on, and the
 * partition stays visible (log, spanledger_partition_stuck, /readyz) until a worker that can
 * read it takes over. The consumer delivers the batch again after any resume, which pauses it
 * again.
 */
export class StuckPartitions {
  /** Partition → what cannot be read and why. */
  private readonly stuck = new Map<number, string>();

  constructor(
    private readonly options: StuckOptions,
    private readonly pauses: FetchPauses,
  ) {}

  stopAt(partition: number, reason: string): void {
    const { options } = this;
    this.pauses.hold(partition, 'stuck');
    if (this.stuck.get(partition) === reason) return;
    this.stuck.set(partition, reason);
    options.metrics.partitionStuck.set(this.labels(partition, reason), 1);
    options.logger.error({ partition, reason }, 'partition paused: a batch cannot be decompressed; its records stay uncommitted until a worker that can read them takes over');
  }

  /** The partition went elsewhere; a pause outlasts assignments, so if it comes back, read it again. */
  forget(partition: number): void {
    this.pauses.forget(partition);
    const reason = this.stuck.get(partition);
    if (reason === undefined) return;
    this.stuck.delete(partition);
    this.options.metrics.partitionStuck.remove(this.labels(partition, reason));
  }

  reasonOf(partition: number): string | undefined {
    return this.stuck.get(partition);
  }

  /** One line per stuck partition, for /readyz. */
  lines(): string[] {
    return [...this.stuck].map(([partition, reason]) => `partition ${this.options.topic}/${partition} stuck: ${reason}`);
  }

  /** The reason label is short and stable (the codec), the full reason is in the log and /readyz. */
  private labels(partition: number, reason: string) {
    return { topic: this.options.topic, partition: String(partition), reason: `undecodable_batch:${reason.split(' ')[0]}` };
  }
}
