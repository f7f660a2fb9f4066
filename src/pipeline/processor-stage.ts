import type { Committer } from './committer.js';
import type { FlushCompletion, FlushState } from './flush-completion.js';
import type { PartitionPipeline } from './partition-pipeline.js';
import type { PipelineOptions } from './options.js';
import { isRetriable, retrying } from './retry.js';
import type { StoreCalls } from './store-calls.js';
import type { PartitionProcessor } from './types.js';

type ProcessorStageOptions = Pick<PipelineOptions<unknown>, 'topic' | 'metrics' | 'logger'>;

/**
 * The processor protocol: a stateful processor's partition is opened, gets each flush applied
 * once, is ticked, synced until the sync succeeds and checkpointed before its offset is committed.
 * Each method here is one link of the partition's chain (the flush scheduler orders them).
 */
export class ProcessorStage<T> {
  constructor(
    readonly processor: PartitionProcessor<T>,
    private readonly options: ProcessorStageOptions,
    private readonly calls: StoreCalls,
    private readonly completion: FlushCompletion,
    private readonly committer: Committer,
  ) {}

  /**
   * A processor's only stage: apply once, sync until it succeeds, then dead letters and offsets.
   * The checkpoint is taken here, in the chain, so that it matches the state the sync made
   * durable and no later flush is applied meanwhile.
   */
  async run(pipe: PartitionPipeline<T>, flush: FlushState<T>): Promise<void> {
    const { plan } = flush;
    this.processor.apply(this.options.topic, pipe.partition, plan.ordered, plan.lastOffset, Date.now());
    await this.sync(pipe);
    await this.completion.finish(pipe, flush, [plan.ordered]);
    await this.checkpoint(pipe);
    this.committer.requestCommit(pipe);
  }

  /** Loads the processor's state of a partition once `revoking` (its release by an earlier assignment) is done. */
  async open(pipe: PartitionPipeline<T>, revoking: Promise<void> | undefined): Promise<void> {
    const { processor, options } = this;
    await revoking;
    if (pipe.closed) return;
    // Only what says it is retriable: a broken checkpoint (an unknown error) must stop the worker at once.
    await retrying(() => processor.openPartition(options.topic, pipe.partition), { ...this.calls.retryOptions(pipe, `${processor.name}-open`), retriable: isRetriable });
  }

  /** A wall-clock tick: the processor may close work by time alone; then as after a flush. */
  async tick(pipe: PartitionPipeline<T>): Promise<void> {
    this.processor.tick(this.options.topic, pipe.partition, Date.now());
    await this.sync(pipe);
    await this.checkpoint(pipe);
    this.committer.requestCommit(pipe);
  }

  /** The partition is gone (revoked, or the pipeline stops): the processor drops its state. */
  async release(partition: number): Promise<void> {
    const { processor, options } = this;
    try {
      await processor.releasePartition(options.topic, partition);
    } catch (e) {
      options.logger.error({ err: e, partition }, `processor ${processor.name} failed to release partition`);
    }
  }

  private async sync(pipe: PartitionPipeline<T>): Promise<void> {
    const { processor, options } = this;
    const store = processor.syncStore;
    // A sync with nothing to write is not a call to the store: it must not close (or dilute) its breaker.
    const sync = () => processor.sync(options.topic, pipe.partition);
    await this.calls.retried(pipe, `${processor.name}-sync`, () => (store?.hasPending(options.topic, pipe.partition) ? this.calls.guarded(pipe, store.name, sync) : sync()));
  }

  /**
   * After a sync: the commit may go no further than where the processor still needs records
   * from, and only once the processor persisted what a restart from there needs. A failed
   * checkpoint leaves the commit where it was until the next flush or tick.
   */
  private async checkpoint(pipe: PartitionPipeline<T>): Promise<void> {
    const { processor, options } = this;
    const { topic, metrics, logger } = options;
    pipe.offsets.holdAt(processor.committableOffset(topic, pipe.partition));
    const offset = pipe.offsets.checkpointDue();
    if (offset === undefined || pipe.closed) return;
    try {
      await processor.beforeCommit(topic, pipe.partition, offset);
      pipe.offsets.markCheckpointed(offset);
    } catch (e) {
      metrics.commitFailures.inc({ topic });
      logger.warn({ err: e, partition: pipe.partition, offset: offset.toString() }, `processor ${processor.name} could not checkpoint; the commit waits for the next one`);
    }
  }
}
