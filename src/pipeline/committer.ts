import { RetriableError } from '../errors.js';
import type { PartitionPipeline } from './partition-pipeline.js';
import type { PipelineOptions } from './options.js';

/** Longest pause between attempts of committedThroughDurable while Kafka refuses commits. */
const COMMIT_WAIT_MAX_DELAY_MS = 2_000;

type CommitterOptions = Pick<PipelineOptions<unknown>, 'consumer' | 'topic' | 'metrics' | 'logger'>;

/**
 * Commits each partition's offset once its records are durable (PartitionOffsets says how far),
 * without holding up the next flush, and keeps the lag gauge. Nothing here decides what is
 * durable: the flush stages mark it, this only tells Kafka.
 */
export class Committer {
  constructor(private readonly options: CommitterOptions) {}

  /**
   * One commit per partition is in flight at a time; requests meanwhile are folded into one more
   * commit of the newest offset, so commits never go backwards.
   */
  requestCommit(pipe: PartitionPipeline<unknown>): void {
    if (pipe.committing) {
      pipe.commitAgain = true;
      return;
    }
    pipe.committing = (async () => {
      do {
        pipe.commitAgain = false;
        await this.commit(pipe);
      } while (pipe.commitAgain && !pipe.closed);
    })().finally(() => {
      pipe.committing = undefined;
    });
  }

  /** Waits until the partition has no flush and no commit under way. */
  async settle(pipe: PartitionPipeline<unknown>): Promise<void> {
    await pipe.chain;
    while (pipe.committing) await pipe.committing;
  }

  /**
   * Resolves once Kafka has accepted a commit of everything the partition made durable so far
   * (nothing durable is left uncommitted), asking for the commit again while Kafka refuses it (a
   * rebalance under way). Rejects with a RetriableError once the partition is released: its new
   * owner starts from the committed offset.
   */
  async committedThroughDurable(pipe: PartitionPipeline<unknown>): Promise<void> {
    for (let attempt = 0; ; attempt += 1) {
      if (pipe.closed) throw new RetriableError(`partition ${pipe.partition} was released while its flush waited for the previous commit`);
      if (pipe.offsets.pendingCommit() === undefined) return;
      this.requestCommit(pipe);
      while (pipe.committing) await pipe.committing;
      if (pipe.offsets.pendingCommit() === undefined) return;
      // Refused (a rebalance under way, the coordinator moving): try again shortly.
      await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** attempt, COMMIT_WAIT_MAX_DELAY_MS)));
    }
  }

  updateLag(pipe: PartitionPipeline<unknown>): void {
    const committed = pipe.offsets.committedOffset;
    if (pipe.highWatermark === undefined || committed === undefined) return;
    const lag = pipe.highWatermark - committed;
    this.options.metrics.lag.set({ topic: this.options.topic, partition: String(pipe.partition) }, Number(lag > 0n ? lag : 0n));
  }

  private async commit(pipe: PartitionPipeline<unknown>): Promise<void> {
    const offset = pipe.offsets.pendingCommit();
    if (offset === undefined || pipe.closed) return;
    const { topic, metrics, logger, consumer } = this.options;
    const end = metrics.commitDuration.startTimer({ topic });
    try {
      await consumer.commitOffsets([{ topic, partition: pipe.partition, offset }]);
      pipe.offsets.markCommitted(offset);
      pipe.lastCommitAt = Date.now();
      end();
      this.updateLag(pipe);
    } catch (e) {
      // The records are durable; a later flush or the next assignment commits past them. If this
      // worker dies first, the records are read again and the sinks' idempotency absorbs them.
      metrics.commitFailures.inc({ topic });
      logger.warn({ err: e, partition: pipe.partition, offset: offset.toString() }, 'offset commit refused; will retry');
    }
  }
}
