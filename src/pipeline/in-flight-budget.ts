import type { FetchPauses } from './fetch-pauses.js';
import type { PipelineOptions } from './options.js';

type BudgetOptions = Pick<PipelineOptions<unknown>, 'topic' | 'metrics' | 'logger' | 'maxInFlightBytes' | 'backpressure' | 'heartbeatIntervalMs' | 'consumer'>;

/**
 * MAX_IN_FLIGHT_BYTES: records and bytes taken from Kafka and not yet flushed, counted from the
 * moment a record is taken into custody until its flush ends, plus what the consumer fetched
 * ahead and holds for later (GroupConsumer.heldBytes). Above the pause mark fetching pauses
 * (backpressure: the consumer drops what it held); at or below the resume mark it resumes.
 */
export class InFlightBudget {
  records = 0;
  bytes = 0;
  maxBytesSeen = 0;
  /** Fetching pauses above this many in-flight bytes… */
  readonly pauseBytes: number;
  /** …and resumes at or below this many. */
  readonly resumeBytes: number;
  private drainWaiters: Array<() => void> = [];
  /** Bytes the consumer fetched ahead and holds, not yet taken into custody. */
  private readonly held: () => number;

  constructor(
    private readonly options: BudgetOptions,
    private readonly pauses: FetchPauses,
  ) {
    const { metrics, topic, maxInFlightBytes, backpressure, consumer } = options;
    this.held = consumer.heldBytes === undefined ? () => 0 : () => consumer.heldBytes!();
    this.pauseBytes = Math.floor(maxInFlightBytes * backpressure.pauseFraction);
    this.resumeBytes = Math.floor(maxInFlightBytes * backpressure.resumeFraction);
    metrics.backpressurePauseBytes.set({ topic }, this.pauseBytes);
    metrics.backpressureResumeBytes.set({ topic }, this.resumeBytes);
    metrics.inFlightRatio.set({ topic }, 0);
  }

  /** Records in custody and what the consumer holds fetched ahead. */
  get totalBytes(): number {
    return this.bytes + this.held();
  }

  get overPauseMark(): boolean {
    return this.totalBytes > this.pauseBytes;
  }

  /** `report`: set the in-flight gauges now (intake sets them once per batch instead of per record). */
  take(records: number, bytes: number, report = true): void {
    this.records += records;
    this.bytes += bytes;
    this.noteMax(this.totalBytes);
    if (report) this.report();
  }

  release(records: number, bytes: number): void {
    this.records -= records;
    this.bytes -= bytes;
    this.report();
    this.wakeWaiters();
  }

  /** Ends every wait for room now (the pipeline stops). */
  wakeWaiters(): void {
    for (const wake of this.drainWaiters.splice(0)) wake();
  }

  report(): void {
    const { metrics, topic, maxInFlightBytes } = this.options;
    const total = this.totalBytes;
    this.noteMax(total);
    metrics.inFlightRecords.set({ topic }, this.records);
    metrics.inFlightBytes.set({ topic }, total);
    metrics.inFlightBytesMax.set({ topic }, this.maxBytesSeen);
    metrics.inFlightRatio.set({ topic }, total / maxInFlightBytes);
  }

  private noteMax(total: number): void {
    if (total > this.maxBytesSeen) this.maxBytesSeen = total;
  }

  /**
   * Backpressure (in-flight bytes passed the pause mark): stop taking records and pause fetching
   * until flushes brought them down to the resume mark. `flushAll` sends every partition's buffer
   * on its way (or we could wait for age limits); the wait ends early once `keepWaiting` says no,
   * and fetching resumes only while `mayResume` says yes.
   */
  async waitForRoom(heartbeat: () => Promise<void>, hooks: { flushAll: () => void; keepWaiting: () => boolean; mayResume: () => boolean }): Promise<void> {
    const { options, pauses } = this;
    const overBudget = () => this.totalBytes > this.resumeBytes;
    if (!overBudget()) return;
    if (!pauses.allPaused) {
      pauses.pauseAll();
      options.metrics.fetchPaused.set({ topic: options.topic }, 1);
      options.metrics.fetchPauses.inc({ topic: options.topic });
    }
    hooks.flushAll();
    while (overBudget() && hooks.keepWaiting()) {
      await new Promise<void>((resolve) => {
        this.drainWaiters.push(resolve);
        setTimeout(resolve, Math.min(1000, options.heartbeatIntervalMs)).unref();
      });
      // Long waits must not cost us the group membership.
      await heartbeat().catch((e: unknown) => {
        options.logger.debug({ err: e }, 'heartbeat while waiting for room failed');
      });
    }
    if (pauses.allPaused && !overBudget() && hooks.mayResume()) {
      pauses.resumeAll();
      options.metrics.fetchPaused.set({ topic: options.topic }, 0);
    }
  }
}
