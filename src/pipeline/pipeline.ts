import { StoreBreakers, type BreakerStatus } from './breakers.js';
import { Committer } from './committer.js';
import { FetchPauses } from './fetch-pauses.js';
import { FlushCompletion, type Stage } from './flush-completion.js';
import { FlushScheduler } from './flush-scheduler.js';
import { InFlightBudget } from './in-flight-budget.js';
import { Intake } from './intake.js';
import { PipelineLifecycle, type PipelineState } from './lifecycle.js';
import type { PipelineOptions } from './options.js';
import { Partitions } from './partitions.js';
import { ProcessorStage } from './processor-stage.js';
import { sinkStages } from './sink-stage.js';
import { degradedLines, partitionSnapshot, type PipelineSnapshot, type PipelineTotals } from './status.js';
import { StoreCalls, DEAD_LETTER_STORE, breakerHold } from './store-calls.js';
import { StuckPartitions } from './stuck-partitions.js';
import { validateStages } from './types.js';

export type { PipelineOptions } from './options.js';
export type { PartitionSnapshot, PipelineSnapshot, PipelineTotals } from './status.js';
export type { PipelineState } from './lifecycle.js';
export { DEAD_LETTER_STORE } from './store-calls.js';

/**
 * Runs one consumer group member: takes records from the group consumer, decodes them, batches
 * them per partition, hands each flush to its stages — every sink in turn (with retries for
 * transient failures), or a stateful processor — dead-letters what cannot be stored, and only
 * then commits the partition's offset. This class wires the parts and runs the lifecycle:
 *
 * - intake.ts: custody, decoding, backpressure (in-flight-budget.ts, fetch-pauses.ts);
 * - flush-scheduler.ts: per-partition stage chains and group commit; sink-stage.ts and
 *   processor-stage.ts are the stages, flush-completion.ts their common end (dead letters, durable);
 * - committer.ts: commits and lag; partitions.ts: assignment and revocation; status.ts: /status.
 *
 * It starts and stops nothing it did not make: the worker starts the dead-letter producer, the
 * sinks or processor before `start` and closes them (and the decode pool) after `stop`. The
 * pipeline connects the consumer in `start` and disconnects it (leaves the group) in `stop`.
 *
 * Invariant: the committed offset of a partition never passes a record that is not durable in
 * all of its sinks (or whose effects the processor has not synced and may still need after a
 * restart) or acknowledged by the dead-letter topic.
 */
export class Pipeline<T> {
  private readonly lifecycle = new PipelineLifecycle();
  private readonly pauses: FetchPauses;
  private readonly breakers: StoreBreakers;
  private readonly budget: InFlightBudget;
  private readonly stuck: StuckPartitions;
  private readonly scheduler: FlushScheduler<T>;
  private readonly partitions: Partitions<T>;
  private readonly intake: Intake<T>;
  private readonly committer: Committer;
  /** Plain counters beside the Prometheus ones, cheap to read for /status rates. */
  private readonly totals: PipelineTotals = { consumed: 0, written: 0, deadLettered: 0 };
  private stopCalled = false;

  constructor(private readonly options: PipelineOptions<T>) {
    validateStages(options);
    const { metrics, topic, processor, logger } = options;
    const sinks = options.sinks ?? [];
    const lifecycle = this.lifecycle;
    this.pauses = new FetchPauses(options.consumer, topic, metrics);
    this.budget = new InFlightBudget(options, this.pauses);
    const stores = [...sinks.map((s) => s.name), DEAD_LETTER_STORE, ...(processor?.syncStore === undefined ? [] : [processor.syncStore.name])];
    this.breakers = new StoreBreakers(stores, options.breakers, metrics, logger);
    // A store answers again: the partitions whose flushes waited for it fetch again.
    this.breakers.onClosed((store) => this.pauses.releaseEverywhere(breakerHold(store)));
    const calls = new StoreCalls(options, this.breakers, this.pauses, lifecycle);
    const committer = (this.committer = new Committer(options));
    const completion = new FlushCompletion(options, options.deadLetters, calls, this.totals);
    const processorStage = processor === undefined ? undefined : new ProcessorStage<T>(processor, options, calls, completion, committer);
    const stages: Stage<T>[] = processorStage === undefined ? sinkStages(topic, sinks, calls, completion, committer) : [(pipe, flush) => processorStage.run(pipe, flush)];
    this.scheduler = new FlushScheduler<T>(options, stages, this.budget, lifecycle);
    this.stuck = new StuckPartitions(options, this.pauses);
    this.partitions = new Partitions<T>(options, sinks, processorStage, this.scheduler, committer, this.budget, this.stuck, lifecycle);
    this.intake = new Intake<T>(options, { partitions: this.partitions, scheduler: this.scheduler, committer, budget: this.budget, pauses: this.pauses, stuck: this.stuck, lifecycle, totals: this.totals });
  }

  get state(): PipelineState {
    return this.lifecycle.state;
  }

  /** Ready: joined the group and consuming. */
  ready(): boolean {
    return this.lifecycle.ready();
  }

  healthy(): boolean {
    return this.lifecycle.healthy();
  }

  /** Every store's circuit breaker: state, since when, and when an open one lets its next probe through. */
  breakerStates(): BreakerStatus[] {
    return this.breakers.statuses();
  }

  /**
   * Why the worker is degraded, one line per open breaker (empty when none is): it stays up and
   * keeps the other stores' partitions going, but records for that store wait.
   */
  degraded(now = Date.now()): string[] {
    return degradedLines(this.breakerStates(), now);
  }

  /** Conditions an operator should see on /readyz even while the worker is ready. */
  details(): string[] {
    const detail = this.options.deadLetters.detail();
    return detail === undefined ? [] : [detail];
  }

  /** One line per stuck partition, for /readyz. */
  stuckPartitions(): string[] {
    return this.stuck.lines();
  }

  /** A copy of what /status shows; reads state only (no I/O, no change). */
  snapshot(): PipelineSnapshot {
    const { partitions, budget } = this;
    return {
      ready: this.ready(),
      healthy: this.healthy(),
      problems: this.stuckPartitions(),
      partitions: [...partitions.assignment]
        .sort((a, b) => a - b)
        .map((partition) => partitionSnapshot(partition, { pipe: partitions.pipes.get(partition), paused: this.pauses.reasonOf(partition), stuckReason: this.stuck.reasonOf(partition) })),
      inFlight: { records: budget.records, bytes: budget.totalBytes, budgetBytes: this.options.maxInFlightBytes, maxBytesSeen: budget.maxBytesSeen },
      totals: { ...this.totals },
    };
  }

  /** Joins the group and starts consuming; the sinks or processor and the dead-letter producer must be started already. */
  async start(): Promise<void> {
    const { options, lifecycle } = this;
    const { logger, consumer } = options;
    lifecycle.starting();
    consumer.onGroupJoin((event) => {
      const assigned = new Set<number>(event.assignment[options.topic] ?? []);
      this.partitions.assign(assigned);
      this.pauses.setAssigned(assigned.size);
      lifecycle.joined();
      logger.info({ partitions: [...assigned], memberId: event.memberId }, 'joined consumer group');
    });
    consumer.onRebalancing(() => {
      // Flush what is buffered now: the partitions may move to another worker.
      logger.info('group is rebalancing; flushing buffers');
      for (const pipe of this.partitions.pipes.values()) this.scheduler.scheduleFlush(pipe, 'age');
    });
    consumer.onCrash(({ error, restart }) => {
      // kafkajs restarts the consumer after a retriable crash (e.g. a coordinator that moved).
      const log = restart ? logger.warn.bind(logger) : logger.error.bind(logger);
      log({ err: error, restart }, restart ? 'kafka consumer crashed; kafkajs restarts it' : 'kafka consumer crashed');
      if (!restart && lifecycle.crash()) options.onFatal(error);
    });

    await consumer.connect();
    await consumer.subscribe(options.topic, true);
    await consumer.run((batch) => this.intake.eachBatch(batch));
  }

  /**
   * Graceful stop: stop taking records, flush and commit everything buffered, leave the group,
   * and let the processor drop its partitions. Resolves true when all of it finished within
   * `timeoutMs` and no flush had failed for good; a second call resolves false at once.
   */
  async stop(timeoutMs: number): Promise<boolean> {
    const { options, lifecycle, partitions } = this;
    const { logger } = options;
    if (this.stopCalled) return false;
    this.stopCalled = true;
    lifecycle.stopping();
    this.budget.wakeWaiters();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const work = (async () => {
      try {
        this.pauses.pauseAll();
      } catch {
        // not running yet: nothing to pause
      }
      await this.intake.drain();
      for (const pipe of partitions.pipes.values()) this.scheduler.scheduleFlush(pipe, 'age');
      await Promise.all([...partitions.pipes.values()].map((p) => this.committer.settle(p)));
      const clean = !lifecycle.gaveUp;
      logger.info({ clean }, 'buffers flushed and offsets committed; leaving the group');
      await options.consumer.disconnect();
      return clean;
    })();
    const finished = await Promise.race([work, deadline]);
    clearTimeout(timer);
    for (const pipe of partitions.pipes.values()) pipe.close();
    this.breakers.close();
    if (!finished) logger.error({ timeoutMs }, 'graceful stop did not finish in time');
    await partitions.releaseAll();
    lifecycle.stopped();
    return finished;
  }
}
