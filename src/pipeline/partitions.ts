import type { FlushSink } from '../sinks/types.js';
import type { Committer } from './committer.js';
import type { FlushScheduler } from './flush-scheduler.js';
import type { InFlightBudget } from './in-flight-budget.js';
import type { PipelineLifecycle } from './lifecycle.js';
import type { PipelineOptions } from './options.js';
import { PartitionPipeline } from './partition-pipeline.js';
import type { ProcessorStage } from './processor-stage.js';
import type { StuckPartitions } from './stuck-partitions.js';

type PartitionsOptions = Pick<PipelineOptions<unknown>, 'topic' | 'metrics' | 'logger' | 'shutdownTimeoutMs' | 'tickIntervalMs'>;

/**
 * The partitions this member holds and the rebalance protocol: a partition's pipeline is made
 * when it is assigned (a processor's is opened and ticked from then on) or first fetched, and
 * on revocation its buffer is dropped, its flush under way gets a bounded time, and the sinks or
 * the processor release it. A partition that comes back waits for its release to finish.
 */
export class Partitions<T> {
  readonly pipes = new Map<number, PartitionPipeline<T>>();
  assignment = new Set<number>();
  /** Partitions being released; if one comes back, its new pipeline waits for the release. */
  readonly revoking = new Map<number, Promise<void>>();

  constructor(
    private readonly options: PartitionsOptions,
    private readonly sinks: readonly FlushSink<T>[],
    private readonly processor: ProcessorStage<T> | undefined,
    private readonly scheduler: FlushScheduler<T>,
    private readonly committer: Committer,
    private readonly budget: InFlightBudget,
    private readonly stuck: StuckPartitions,
    private readonly lifecycle: PipelineLifecycle,
  ) {}

  /** The partition's pipeline, made on first use. */
  pipeline(partition: number): PartitionPipeline<T> {
    let pipe = this.pipes.get(partition);
    if (pipe === undefined) {
      const { processor } = this;
      pipe = new PartitionPipeline<T>(partition, this.scheduler.stageCount, processor === undefined ? 'by-tenant' : 'by-offset', processor !== undefined);
      this.pipes.set(partition, pipe);
      if (processor !== undefined) this.open(pipe, processor);
    }
    return pipe;
  }

  /** The group's new assignment for this member. */
  assign(assigned: Set<number>): void {
    const { metrics, topic } = this.options;
    for (const partition of this.assignment) {
      if (!assigned.has(partition)) {
        const revoking = this.revoke(partition).finally(() => {
          if (this.revoking.get(partition) === revoking) this.revoking.delete(partition);
        });
        this.revoking.set(partition, revoking);
      }
    }
    for (const partition of assigned) {
      const pipe = this.pipes.get(partition);
      // Kafka refuses commits during a rebalance; retry what was made durable meanwhile.
      if (pipe !== undefined) this.committer.requestCommit(pipe);
      // A processor opens the partition (and ticks it) from now on, before any record arrives.
      else if (this.processor !== undefined && this.lifecycle.takesRecords) this.pipeline(partition);
    }
    this.assignment = assigned;
    metrics.assignedPartitions.set({ topic }, assigned.size);
  }

  /** The pipeline stops: the processor drops the state of every partition it held. */
  async releaseAll(): Promise<void> {
    if (this.processor === undefined) return;
    for (const partition of this.pipes.keys()) await this.processor.release(partition);
  }

  /** Loads the processor's state of a partition (after its release by an earlier assignment), then ticks it. */
  private open(pipe: PartitionPipeline<T>, processor: ProcessorStage<T>): void {
    const revoking = this.revoking.get(pipe.partition);
    this.scheduler.enqueue(pipe, () => processor.open(pipe, revoking));
    pipe.ticker = setInterval(() => {
      // A tick goes through the chain like a flush; skipped while one is queued or under way (it will sync anyway).
      if (pipe.closed || pipe.pending > 0 || pipe.queued !== undefined || !this.lifecycle.takesRecords) return;
      this.scheduler.enqueue(pipe, () => processor.tick(pipe));
    }, this.options.tickIntervalMs);
    // Ticks only matter while the worker runs; stop and revoke clear them.
    pipe.ticker.unref();
  }

  /** The partition went to another worker: drop its buffer (the new owner re-reads it), then release it. */
  private async revoke(partition: number): Promise<void> {
    const { options } = this;
    const pipe = this.pipes.get(partition);
    this.pipes.delete(partition);
    options.metrics.lag.remove({ topic: options.topic, partition: String(partition) });
    this.stuck.forget(partition);
    if (pipe !== undefined) {
      pipe.close();
      if (pipe.processing) clearImmediate(pipe.processing);
      pipe.processing = undefined;
      const undecoded = pipe.incoming.splice(0);
      this.budget.release(undecoded.length, undecoded.reduce((n, r) => n + r.bytes, 0));
      const dropped = pipe.batch.drain();
      if (dropped) this.budget.release(dropped.records, dropped.bytes);
      // Bounded: a store or dead-letter topic that does not answer must not hold the partition
      // (and its span log lock) forever. Nothing is committed after this (the pipe is closed).
      const settled = await Promise.race([this.committer.settle(pipe).then(() => true), delay(options.shutdownTimeoutMs, false)]);
      if (!settled) options.logger.warn({ partition, timeoutMs: options.shutdownTimeoutMs }, 'revoked partition still had a flush under way; releasing it anyway (its records will be read again)');
    }
    for (const sink of this.sinks) {
      try {
        await sink.releasePartition?.(options.topic, partition);
      } catch (e) {
        options.logger.error({ err: e, partition }, `sink ${sink.name} failed to release partition`);
      }
    }
    await this.processor?.release(partition);
    options.logger.info({ partition }, 'partition revoked and released');
  }
}

function delay<T>(ms: number, value: T): Promise<T> {
  return new Promise((resolve) => setTimeout(() => resolve(value), ms).unref());
}
