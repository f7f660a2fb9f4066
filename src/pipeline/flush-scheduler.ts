import { mergePlans, type FlushReason } from './partition-batch.js';
import type { FlushState, Stage } from './flush-completion.js';
import type { InFlightBudget } from './in-flight-budget.js';
import type { PipelineLifecycle } from './lifecycle.js';
import type { PipelineOptions } from './options.js';
import type { PartitionPipeline } from './partition-pipeline.js';

type SchedulerOptions = Pick<PipelineOptions<unknown>, 'topic' | 'metrics' | 'logger' | 'limits' | 'onFatal'>;

const ignore = () => undefined;

/**
 * Sends each partition's buffer through the stages as flushes, in offset order: one chain per
 * stage and partition (flush N+1 can be in the first store while flush N is in the second), group
 * commit (batches that come while the first stage is busy merge into one queued flush), the age
 * limit's timer, and what happens when a flush fails for good.
 */
export class FlushScheduler<T> {
  constructor(
    private readonly options: SchedulerOptions,
    private readonly stages: readonly Stage<T>[],
    private readonly budget: InFlightBudget,
    private readonly lifecycle: PipelineLifecycle,
  ) {}

  get stageCount(): number {
    return this.stages.length;
  }

  armAgeTimer(pipe: PartitionPipeline<T>): void {
    if (pipe.timer || pipe.closed) return;
    const due = pipe.batch.msUntilDue(this.options.limits, Date.now());
    if (due === undefined) return;
    pipe.timer = setTimeout(() => {
      pipe.timer = undefined;
      if (!pipe.batch.isEmpty) this.scheduleFlush(pipe, 'age');
    }, due);
  }

  scheduleFlush(pipe: PartitionPipeline<T>, reason: FlushReason): void {
    if (pipe.closed) return;
    const plan = pipe.batch.drain();
    if (plan === undefined) return;
    if (pipe.timer) {
      clearTimeout(pipe.timer);
      pipe.timer = undefined;
    }
    const { topic, metrics } = this.options;
    metrics.flushes.inc({ topic, reason });
    if (reason === 'age') pipe.lastTimedFlushAt = Date.now();
    // Group commit: while the first stage of this partition is busy, later batches wait in one
    // queued plan, which then becomes durable with one write and one sync per file. Under load
    // flushes grow (bounded by MAX_IN_FLIGHT_BYTES); when idle each batch goes alone.
    if (pipe.queued !== undefined) {
      mergePlans(pipe.queued, plan);
      return;
    }
    pipe.queued = plan;
    pipe.pending += 1;
    const previousDone = pipe.stageTails[this.stages.length - 1]!;
    const flush: FlushState<T> = { plan, letters: [], current: new Map(), started: 0n, previousDone };

    // Each stage has its own chain per partition. A stage of a flush starts when the same stage
    // of the previous flush and the previous stage of this flush are done, so each store sees
    // records in order.
    let previous: Promise<boolean> = pipe.stageTails[0]!.then(() => {
      flush.plan = pipe.queued!;
      pipe.queued = undefined;
      flush.current = flush.plan.tenants;
      flush.started = process.hrtime.bigint();
      flush.letters = flush.plan.rejected.map((r) => ({ topic, partition: pipe.partition, source: r.source, error: r.error, stage: 'DECODE' }));
      // Revoked while it waited: the new owner reads these records again.
      return !pipe.closed;
    });
    this.stages.forEach((stage, k) => {
      const ready = k === 0 ? previous : Promise.all([previous, pipe.stageTails[k]]).then(([ok]) => ok);
      const run = ready.then(async (ok) => {
        if (!ok || pipe.closed) return false;
        await stage(pipe, flush);
        return true;
      });
      pipe.stageTails[k] = run.then(ignore, ignore);
      previous = run;
    });
    pipe.chain = previous
      .then(ignore)
      .catch((e: unknown) => this.failFlush(pipe, e))
      .finally(() => {
        pipe.pending -= 1;
        this.budget.release(flush.plan.records, flush.plan.bytes);
      });
  }

  /**
   * Appends `link` to the first stage's chain of the partition (after every flush so far, before
   * any later one): how a processor's partition is opened and ticked in order with its flushes.
   */
  enqueue(pipe: PartitionPipeline<T>, link: () => Promise<void>): void {
    pipe.pending += 1;
    const run = pipe.stageTails[0]!.then(() => (pipe.closed ? undefined : link()));
    pipe.stageTails[0] = run.then(ignore, ignore);
    const settled = run
      .catch((e: unknown) => this.failFlush(pipe, e))
      .finally(() => {
        pipe.pending -= 1;
      });
    // The previous flush may still be releasing its bytes when this link is done.
    pipe.chain = Promise.all([pipe.chain, settled]).then(ignore);
  }

  failFlush(pipe: PartitionPipeline<T>, error: unknown): void {
    const { logger, onFatal } = this.options;
    // No later flush of this partition may commit past the records this one did not store.
    const wasClosed = pipe.closed;
    pipe.close();
    // A non-retriable failure that is not one record's fault (e.g. a store's configuration):
    // stop without committing rather than skip or dead-letter good records. Once stopping (or
    // already failed) the records are simply read again.
    if (wasClosed || !this.lifecycle.fail()) {
      logger.warn({ err: error, partition: pipe.partition }, 'flush abandoned (partition released or worker stopping); records will be re-read');
      return;
    }
    logger.fatal({ err: error, partition: pipe.partition }, 'flush failed for good; stopping the worker');
    onFatal(error instanceof Error ? error : new Error(String(error)));
  }
}
