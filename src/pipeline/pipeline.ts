import type { Logger } from 'pino';
import { mergePlans, type FlushLimits, type FlushPlan, type FlushReason, type SourceMessage, type ValidEntry } from '../batching/partition-batch.js';
import type { Decoded, RecordDecoder } from '../model/decode.js';
import type { DecodePool } from './decode-pool.js';
import type { WorkerMetrics } from '../observability/metrics.js';
import type { FlushSink } from '../sinks/types.js';
import { recordFootprint } from '../model/headers.js';
import type { ConsumedBatch, ConsumedMessage, DeadLetter, DeadLetterPort, GroupConsumer } from './consumer-port.js';
import { StoreBreakers, type BreakerSettings, type BreakerStatus } from './breakers.js';
import { FetchPauses, type PauseReason } from './fetch-pauses.js';
import { PartitionPipeline } from './partition-pipeline.js';
import { isRetriable, retrying, type RetryOptions } from './retry.js';
import { validateStages, type PartitionProcessor, type PipelineStages } from './types.js';

export type PipelineOptions<T> = PipelineStages<T> & {
  consumer: GroupConsumer;
  deadLetters: DeadLetterPort;
  topic: string;
  decoder: RecordDecoder<T>;
  /**
   * DECODE_THREADS > 0: decode on these threads instead of the event loop (the same decoder's
   * answers, applied per partition in offset order). Records it fails to decode (a thread died)
   * are decoded with `decoder` here instead.
   */
  decodePool?: DecodePool<T>;
  limits: FlushLimits;
  /** Flush as soon as a partition has caught up with its high watermark, not only on the limits. */
  flushWhenCaughtUp: boolean;
  maxInFlightBytes: number;
  /**
   * Backpressure marks as fractions of maxInFlightBytes: fetching pauses once in-flight bytes pass
   * `pauseFraction` and resumes once they are back at or below `resumeFraction` (lower, so that a
   * worker near its budget does not pause and resume at every batch).
   */
  backpressure: { pauseFraction: number; resumeFraction: number };
  /** The circuit breakers' settings (one breaker per store: each sink, the dead-letter topic, a processor's syncStore). */
  breakers: BreakerSettings;
  /** Waits for room in the in-flight budget heartbeat at least this often. */
  heartbeatIntervalMs: number;
  retryMaxDelayMs: number;
  /** A revoked partition's flush under way gets this long before the partition is released anyway. */
  shutdownTimeoutMs: number;
  logger: Logger;
  metrics: WorkerMetrics;
  /** Called once when the worker cannot go on (a non-retriable failure that is not a record's fault). */
  onFatal: (error: Error) => void;
};

/** One assigned partition as /status shows it (offsets as decimal strings: they may pass 2^53). */
export interface PartitionSnapshot {
  partition: number;
  /** What Kafka accepted from this worker; undefined before its first commit here. */
  committedOffset: string | undefined;
  /** The high watermark of the partition's last fetched batch. */
  endOffset: string | undefined;
  lag: string | undefined;
  lastCommitAt: number | undefined;
  paused: PauseReason | undefined;
  stuckReason: string | undefined;
  /** Records in custody not yet flushed (undecoded and buffered), and the in-flight bytes they count. */
  bufferedRecords: number;
  bufferedBytes: number;
}

/** A read-only picture of the pipeline for /status; `totals` only grow (rates come from sampling them). */
export interface PipelineSnapshot {
  ready: boolean;
  healthy: boolean;
  /** Lines that make /readyz say not ready (stuck partitions). */
  problems: string[];
  partitions: PartitionSnapshot[];
  inFlight: { records: number; bytes: number; budgetBytes: number; maxBytesSeen: number };
  totals: PipelineTotals;
}

export interface PipelineTotals {
  consumed: number;
  written: number;
  deadLettered: number;
}

/** In-flight bytes each decoded item of a many-item record adds to the record's own bytes. */
const DECODED_ITEM_BYTES = 512;

/** Longest stretch of decoding before the event loop gets a turn. */
const PROCESS_SLICE_MS = 20;

/** Records per chunk sent to a decode thread (a few milliseconds of decoding). */
const DECODE_CHUNK_RECORDS = 512;

/** One flush on its way through the stages. */
interface FlushState<T> {
  plan: FlushPlan<T>;
  letters: DeadLetter[];
  /** Tenant batches still to store (each sink stage drops what its sink refused). */
  current: Map<string, ValidEntry<T>[]>;
  started: bigint;
}

/** One stage of every flush of a partition; a stage of flush N+1 starts once flush N left it. */
type Stage<T> = (pipe: PartitionPipeline<T>, flush: FlushState<T>) => Promise<void>;

const ignore = () => undefined;

/** The breaker of the dead-letter producer (the other stores' breakers are named after their sink or processor store). */
export const DEAD_LETTER_STORE = 'dead_letter';


/**
 * Runs one consumer group member: takes records from the group consumer, decodes them, batches
 * them per partition, hands each flush to its stages — every sink in turn (with retries for
 * transient failures), or a stateful processor — dead-letters what cannot be stored, and only
 * then commits the partition's offset.
 *
 * Invariant: the committed offset of a partition never passes a record that is not durable in
 * all of its sinks (or whose effects the processor has not synced and may still need after a
 * restart) or acknowledged by the dead-letter topic.
 */
export class Pipeline<T> {
  private readonly consumer: GroupConsumer;
  private readonly deadLetters: DeadLetterPort;
  private readonly sinks: FlushSink<T>[];
  private readonly processor: PartitionProcessor<T> | undefined;
  private readonly stages: Stage<T>[];
  private readonly pipelines = new Map<number, PartitionPipeline<T>>();
  private inFlightBytes = 0;
  private inFlightRecords = 0;
  private inFlightBytesMax = 0;
  private drainWaiters: Array<() => void> = [];
  /** Fetching pauses above this many in-flight bytes… */
  private readonly pauseBytes: number;
  /** …and resumes at or below this many. */
  private readonly resumeBytes: number;
  private readonly pauses: FetchPauses;
  private readonly breakers: StoreBreakers;
  private activeBatches = 0;
  private batchesIdle: Array<() => void> = [];
  private stopping = false;
  private joined = false;
  private crashed = false;
  private fatal = false;
  private assignment = new Set<number>();
  /** Partitions being released; if one comes back, its new pipeline waits for the release. */
  private readonly revoking = new Map<number, Promise<void>>();
  /** Partitions paused at a batch that cannot be decompressed: partition → what and why. */
  private readonly stuck = new Map<number, string>();
  /** Plain counters beside the Prometheus ones, cheap to read for /status rates. */
  private readonly totals: PipelineTotals = { consumed: 0, written: 0, deadLettered: 0 };

  constructor(private readonly options: PipelineOptions<T>) {
    validateStages(options);
    this.consumer = options.consumer;
    this.deadLetters = options.deadLetters;
    this.sinks = options.sinks ?? [];
    this.processor = options.processor;
    const processor = this.processor;
    const { metrics, topic, maxInFlightBytes, backpressure } = options;
    this.pauseBytes = Math.floor(maxInFlightBytes * backpressure.pauseFraction);
    this.resumeBytes = Math.floor(maxInFlightBytes * backpressure.resumeFraction);
    metrics.backpressurePauseBytes.set({ topic }, this.pauseBytes);
    metrics.backpressureResumeBytes.set({ topic }, this.resumeBytes);
    metrics.inFlightRatio.set({ topic }, 0);
    this.pauses = new FetchPauses(options.consumer, topic, metrics);
    const stores = [...this.sinks.map((s) => s.name), DEAD_LETTER_STORE, ...(processor?.syncStore === undefined ? [] : [processor.syncStore.name])];
    this.breakers = new StoreBreakers(stores, options.breakers, metrics, options.logger);
    // A store answers again: the partitions whose flushes waited for it fetch again.
    this.breakers.onClosed((store) => this.pauses.releaseEverywhere(breakerHold(store)));
    this.stages =
      processor === undefined
        ? [...this.sinks.map((sink): Stage<T> => (pipe, flush) => this.runSink(pipe, sink, flush)), (pipe, flush) => this.finishStored(pipe, flush)]
        : [(pipe, flush) => this.runProcessor(pipe, processor, flush)];
  }

  /** Ready: joined the group and consuming. */
  ready(): boolean {
    return this.joined && !this.stopping && !this.crashed;
  }

  healthy(): boolean {
    return !this.crashed && !this.fatal;
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
    return this.breakerStates()
      .filter((b) => b.state !== 'closed')
      .map((b) =>
        b.state === 'half_open'
          ? `breaker half-open: ${b.store} since ${b.since.toISOString()}, probing`
          : `breaker open: ${b.store} since ${b.since.toISOString()}, next probe in ${Math.max(0, Math.ceil((b.nextProbeAt!.getTime() - now) / 1000))} s`,
      );
  }

  /** Conditions an operator should see on /readyz even while the worker is ready. */
  details(): string[] {
    const detail = this.deadLetters.detail();
    return detail === undefined ? [] : [detail];
  }

  /** A copy of what /status shows; reads state only (no I/O, no change). */
  snapshot(): PipelineSnapshot {
    const partitions: PartitionSnapshot[] = [...this.assignment]
      .sort((a, b) => a - b)
      .map((partition) => {
        const pipe = this.pipelines.get(partition);
        const committed = pipe?.offsets.committedOffset;
        const end = pipe?.highWatermark;
        const stuckReason = this.stuck.get(partition);
        const incomingBytes = pipe?.incoming.reduce((n, r) => n + r.bytes, 0) ?? 0;
        return {
          partition,
          committedOffset: committed?.toString(),
          endOffset: end?.toString(),
          lag: committed !== undefined && end !== undefined ? (end > committed ? end - committed : 0n).toString() : undefined,
          lastCommitAt: pipe?.lastCommitAt,
          paused: this.pauses.reasonOf(partition),
          stuckReason,
          bufferedRecords: (pipe?.incoming.length ?? 0) + (pipe?.batch.records ?? 0),
          bufferedBytes: incomingBytes + (pipe?.batch.bytes ?? 0),
        };
      });
    return {
      ready: this.ready(),
      healthy: this.healthy(),
      problems: this.stuckPartitions(),
      partitions,
      inFlight: { records: this.inFlightRecords, bytes: this.inFlightBytes, budgetBytes: this.options.maxInFlightBytes, maxBytesSeen: this.inFlightBytesMax },
      totals: { ...this.totals },
    };
  }

  /** `dlqMaxMessageBytes`: the dead-letter topic's max.message.bytes (sends are split under it). */
  async start(dlqMaxMessageBytes: number): Promise<void> {
    const { consumer, options } = this;
    const { logger } = options;
    await this.deadLetters.start(dlqMaxMessageBytes);
    for (const sink of this.sinks) await sink.start();
    await this.processor?.start();

    consumer.onGroupJoin((event) => {
      const assigned = new Set<number>(event.assignment[options.topic] ?? []);
      this.onAssignment(assigned);
      this.joined = true;
      logger.info({ partitions: [...assigned], memberId: event.memberId }, 'joined consumer group');
    });
    consumer.onRebalancing(() => {
      // Flush what is buffered now: the partitions may move to another worker.
      logger.info('group is rebalancing; flushing buffers');
      for (const pipe of this.pipelines.values()) this.scheduleFlush(pipe, 'age');
    });
    consumer.onCrash(({ error, restart }) => {
      // kafkajs restarts the consumer after a retriable crash (e.g. a coordinator that moved).
      const log = restart ? logger.warn.bind(logger) : logger.error.bind(logger);
      log({ err: error, restart }, restart ? 'kafka consumer crashed; kafkajs restarts it' : 'kafka consumer crashed');
      if (!restart) {
        this.crashed = true;
        options.onFatal(error);
      }
    });

    await consumer.connect();
    await consumer.subscribe(options.topic, true);
    await consumer.run((batch) => this.eachBatch(batch));
  }

  private onAssignment(assigned: Set<number>): void {
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
      const pipe = this.pipelines.get(partition);
      // Kafka refuses commits during a rebalance; retry what was made durable meanwhile.
      if (pipe !== undefined) this.requestCommit(pipe);
      // A processor opens the partition (and ticks it) from now on, before any record arrives.
      else if (this.processor !== undefined && !this.stopping) this.pipeline(partition);
    }
    this.assignment = assigned;
    metrics.assignedPartitions.set({ topic }, assigned.size);
    this.pauses.setAssigned(assigned.size);
  }

  /**
   * A batch of this partition cannot be decompressed (codec missing or data corrupt). Skipping it
   * would lose records and crashing would loop, so only this partition is paused, at the batch:
   * nothing at or past it is taken or committed, the other partitions go on, and the partition
   * stays visible (log, spanledger_partition_stuck, /readyz) until a worker that can read it
   * takes over. The consumer delivers the batch again after any resume, which pauses it again.
   */
  private stopAtUndecodableBatch(partition: number, reason: string): void {
    const { options } = this;
    this.pauses.hold(partition, 'stuck');
    if (this.stuck.get(partition) === reason) return;
    this.stuck.set(partition, reason);
    options.metrics.partitionStuck.set(this.stuckLabels(partition, reason), 1);
    options.logger.error({ partition, reason }, 'partition paused: a batch cannot be decompressed; its records stay uncommitted until a worker that can read them takes over');
  }

  /** The reason label is short and stable (the codec), the full reason is in the log and /readyz. */
  private stuckLabels(partition: number, reason: string) {
    return { topic: this.options.topic, partition: String(partition), reason: `undecodable_batch:${reason.split(' ')[0]}` };
  }

  /** The partition went elsewhere; a pause outlasts assignments, so if it comes back, read it again. */
  private forgetPauses(partition: number): void {
    this.pauses.forget(partition);
    const reason = this.stuck.get(partition);
    if (reason === undefined) return;
    this.stuck.delete(partition);
    this.options.metrics.partitionStuck.remove(this.stuckLabels(partition, reason));
  }

  /** One line per stuck partition, for /readyz. */
  stuckPartitions(): string[] {
    return [...this.stuck].map(([partition, reason]) => `partition ${this.options.topic}/${partition} stuck: ${reason}`);
  }

  /** The partition went to another worker: drop its buffer (the new owner re-reads it), then release it. */
  private async revoke(partition: number): Promise<void> {
    const { options } = this;
    const pipe = this.pipelines.get(partition);
    this.pipelines.delete(partition);
    options.metrics.lag.remove({ topic: options.topic, partition: String(partition) });
    this.forgetPauses(partition);
    if (pipe !== undefined) {
      pipe.close();
      if (pipe.processing) clearImmediate(pipe.processing);
      pipe.processing = undefined;
      const undecoded = pipe.incoming.splice(0);
      this.release(undecoded.length, undecoded.reduce((n, r) => n + r.bytes, 0));
      const dropped = pipe.batch.drain();
      if (dropped) this.release(dropped.records, dropped.bytes);
      // Bounded: a store or dead-letter topic that does not answer must not hold the partition
      // (and its span log lock) forever. Nothing is committed after this (the pipe is closed).
      const settled = await Promise.race([this.settle(pipe).then(() => true), delay(options.shutdownTimeoutMs, false)]);
      if (!settled) options.logger.warn({ partition, timeoutMs: options.shutdownTimeoutMs }, 'revoked partition still had a flush under way; releasing it anyway (its records will be read again)');
    }
    for (const sink of this.sinks) {
      try {
        await sink.releasePartition?.(options.topic, partition);
      } catch (e) {
        options.logger.error({ err: e, partition }, `sink ${sink.name} failed to release partition`);
      }
    }
    await this.releaseProcessorPartition(partition);
    options.logger.info({ partition }, 'partition revoked and released');
  }

  private async releaseProcessorPartition(partition: number): Promise<void> {
    const { processor, options } = this;
    if (processor === undefined) return;
    try {
      await processor.releasePartition(options.topic, partition);
    } catch (e) {
      options.logger.error({ err: e, partition }, `processor ${processor.name} failed to release partition`);
    }
  }

  private pipeline(partition: number): PartitionPipeline<T> {
    let pipe = this.pipelines.get(partition);
    if (pipe === undefined) {
      const { processor } = this;
      pipe = new PartitionPipeline<T>(partition, this.stages.length, processor === undefined ? 'by-tenant' : 'by-offset', processor !== undefined);
      this.pipelines.set(partition, pipe);
      if (processor !== undefined) this.openPartition(pipe, processor);
    }
    return pipe;
  }

  /**
   * Takes a fetched batch into custody and returns at once, so that the consumer fetches the next
   * one while this one is decoded (`processIncoming`): the broker's work and ours overlap. Records
   * count against MAX_IN_FLIGHT_BYTES from this moment.
   */
  private async eachBatch(batch: ConsumedBatch): Promise<void> {
    const { resolveOffset, heartbeat, isRunning, isStale } = batch;
    const { options } = this;
    const revoking = this.revoking.get(batch.partition);
    if (revoking !== undefined) await revoking;
    const pipe = this.pipeline(batch.partition);
    pipe.highWatermark = batch.highWatermark;
    this.activeBatches += 1;
    const interrupted = () => this.stopping || pipe.closed || !isRunning() || isStale();
    try {
      let taken = 0;
      let skipped = 0;
      let complete = true;
      // The last record taken into custody (or skipped) and not yet told to the consumer: telling
      // it the last one of a run is enough (kafkajs keeps only the latest resolved offset).
      let unresolved: bigint | undefined;
      for (const message of batch.messages) {
        if (interrupted()) {
          complete = false;
          break;
        }
        const offset = message.offset;
        unresolved = offset;
        if (!pipe.offsets.accept(offset)) {
          skipped += 1;
          continue;
        }
        const bytes = recordFootprint(message);
        pipe.incoming.push({ message, offset, bytes });
        this.account(1, bytes, false);
        taken += 1;
        if (this.inFlightBytes > this.pauseBytes) {
          resolveOffset(offset);
          unresolved = undefined;
          this.reportInFlight();
          this.processIncoming(pipe, Number.POSITIVE_INFINITY);
          await this.waitForRoom(pipe, heartbeat);
        }
      }
      // Tell the consumer the records are in custody, so its next fetch starts after them. This
      // is not a commit: commits happen only after a flush made records durable.
      if (unresolved !== undefined) resolveOffset(unresolved);
      if (taken > 0) this.reportInFlight();
      if (complete && batch.undecodable !== undefined && !interrupted()) this.stopAtUndecodableBatch(batch.partition, batch.undecodable);
      if (taken > 0) {
        options.metrics.consumed.inc({ topic: options.topic }, taken);
        this.totals.consumed += taken;
      }
      if (skipped > 0) options.metrics.skippedRedelivered.inc({ topic: options.topic }, skipped);
      const next = pipe.offsets.nextCustodyOffset;
      pipe.caughtUp = next !== undefined && pipe.highWatermark !== undefined && next >= pipe.highWatermark;
      this.scheduleProcessing(pipe);
      this.updateLag(pipe);
    } finally {
      this.activeBatches -= 1;
      if (this.activeBatches === 0) for (const wake of this.batchesIdle.splice(0)) wake();
    }
  }

  private scheduleProcessing(pipe: PartitionPipeline<T>): void {
    if (pipe.processing || pipe.incoming.length === 0) return;
    pipe.processing = setImmediate(() => {
      pipe.processing = undefined;
      this.processIncoming(pipe, PROCESS_SLICE_MS);
      this.scheduleProcessing(pipe);
    });
  }

  /**
   * Decodes records in custody into the partition's buffer, in offset order, for at most
   * `sliceMs` (so that fetch responses and flush completions get their turn), and starts flushes
   * as limits are reached.
   */
  private processIncoming(pipe: PartitionPipeline<T>, sliceMs: number): void {
    if (this.options.decodePool !== undefined) {
      this.dispatchDecoding(pipe, this.options.decodePool);
      return;
    }
    const { options } = this;
    const deadline = performance.now() + sliceMs;
    let i = 0;
    for (; i < pipe.incoming.length; i += 1) {
      if (pipe.closed) break;
      const { message, offset, bytes } = pipe.incoming[i]!;
      this.take(pipe, message, offset, bytes, options.decoder.decode({ value: message.value, headers: message.headers ?? {} }));
      if ((i & 255) === 255 && performance.now() > deadline) {
        i += 1;
        break;
      }
    }
    pipe.incoming.splice(0, i);
    if (pipe.incoming.length > 0 || pipe.closed) return;
    this.caughtUpWithIncoming(pipe);
  }

  /**
   * Everything in custody is decoded. Nothing more waiting in Kafka for this partition (or
   * fetching is paused): waiting for the age limit would only add latency. Under a backlog this
   * does not fire and batches fill up to the limits; group commit merges the small flushes that
   * come while one is being written.
   */
  private caughtUpWithIncoming(pipe: PartitionPipeline<T>): void {
    if ((this.options.flushWhenCaughtUp && pipe.caughtUp) || this.pauses.allPaused) {
      if (!this.stopping) this.scheduleFlush(pipe, 'caught_up');
    }
    this.armAgeTimer(pipe);
  }

  /**
   * DECODE_THREADS: sends the records in custody to the decode threads in chunks (all at once:
   * they are already counted against MAX_IN_FLIGHT_BYTES) and applies the answers in the order
   * the chunks were sent, so the partition's buffer sees its records in offset order as without
   * threads. A revoked partition's answers only give their bytes back.
   */
  private dispatchDecoding(pipe: PartitionPipeline<T>, pool: DecodePool<T>): void {
    while (pipe.incoming.length > 0 && !pipe.closed) {
      const chunk = pipe.incoming.splice(0, DECODE_CHUNK_RECORDS);
      pipe.decodingChunks += 1;
      const answers = pool.decode(chunk.map((c) => ({ value: c.message.value, headers: c.message.headers ?? {} }))).catch((e: unknown) => {
        this.options.logger.warn({ err: e, partition: pipe.partition, records: chunk.length }, 'decode thread failed; decoding the chunk on the main thread');
        return undefined;
      });
      pipe.decoded = pipe.decoded.then(async () => {
        const decoded = await answers;
        pipe.decodingChunks -= 1;
        if (pipe.closed) {
          this.release(chunk.length, chunk.reduce((n, c) => n + c.bytes, 0));
          return;
        }
        chunk.forEach((c, i) => {
          this.take(pipe, c.message, c.offset, c.bytes, decoded?.[i] ?? this.options.decoder.decode({ value: c.message.value, headers: c.message.headers ?? {} }));
        });
        if (pipe.incoming.length === 0 && pipe.decodingChunks === 0) this.caughtUpWithIncoming(pipe);
      }).catch((e: unknown) => this.failFlush(pipe, e));
    }
  }

  /** Puts one decoded record in custody into the partition's buffer (its `bytes` are already counted); flushes at the limits. */
  private take(pipe: PartitionPipeline<T>, message: ConsumedMessage, offset: bigint, bytes: number, decoded: Decoded<T>): void {
    const source: SourceMessage = {
      offset,
      key: message.key,
      value: message.value,
      headers: message.headers ?? {},
      timestamp: message.timestamp,
    };
    const now = Date.now();
    if (decoded.ok) {
      // A record of many items (an OTLP request) takes more memory decoded than on the wire.
      const expansion = decoded.items.length > 1 ? decoded.items.length * DECODED_ITEM_BYTES : 0;
      if (expansion > 0) this.account(0, expansion);
      pipe.batch.addValid(offset, decoded.items, bytes + expansion, source, now);
    } else {
      pipe.batch.addRejected(offset, decoded.error, bytes, source, now);
    }
    const reason = pipe.batch.flushReason(this.options.limits, now);
    if (reason === 'records' || reason === 'bytes') this.scheduleFlush(pipe, reason);
  }

  /** `report`: set the in-flight gauges now (eachBatch sets them once per batch instead of per record). */
  private account(records: number, bytes: number, report = true): void {
    this.inFlightRecords += records;
    this.inFlightBytes += bytes;
    if (this.inFlightBytes > this.inFlightBytesMax) this.inFlightBytesMax = this.inFlightBytes;
    if (report) this.reportInFlight();
  }

  /**
   * Backpressure (in-flight bytes passed the pause mark): stop taking records and pause fetching
   * until flushes brought them down to the resume mark.
   */
  private async waitForRoom(pipe: PartitionPipeline<T>, heartbeat: () => Promise<void>): Promise<void> {
    const { options } = this;
    const overBudget = () => this.inFlightBytes > this.resumeBytes;
    if (!overBudget()) return;
    if (!this.pauses.allPaused) {
      this.pauses.pauseAll();
      options.metrics.fetchPaused.set({ topic: options.topic }, 1);
      options.metrics.fetchPauses.inc({ topic: options.topic });
    }
    // Make sure every partition's buffer is on its way, or we could wait for age limits.
    for (const other of this.pipelines.values()) this.scheduleFlush(other, 'bytes');
    while (overBudget() && !this.stopping && !pipe.closed) {
      await new Promise<void>((resolve) => {
        this.drainWaiters.push(resolve);
        setTimeout(resolve, Math.min(1000, options.heartbeatIntervalMs)).unref();
      });
      // Long waits must not cost us the group membership.
      await heartbeat().catch((e: unknown) => {
        options.logger.debug({ err: e }, 'heartbeat while waiting for room failed');
      });
    }
    if (this.pauses.allPaused && !overBudget() && !this.stopping) {
      this.pauses.resumeAll();
      options.metrics.fetchPaused.set({ topic: options.topic }, 0);
    }
  }

  private armAgeTimer(pipe: PartitionPipeline<T>): void {
    if (pipe.timer || pipe.closed) return;
    const due = pipe.batch.msUntilDue(this.options.limits, Date.now());
    if (due === undefined) return;
    pipe.timer = setTimeout(() => {
      pipe.timer = undefined;
      if (!pipe.batch.isEmpty) this.scheduleFlush(pipe, 'age');
    }, due);
  }

  private scheduleFlush(pipe: PartitionPipeline<T>, reason: FlushReason): void {
    if (pipe.closed) return;
    const plan = pipe.batch.drain();
    if (plan === undefined) return;
    if (pipe.timer) {
      clearTimeout(pipe.timer);
      pipe.timer = undefined;
    }
    this.options.metrics.flushes.inc({ topic: this.options.topic, reason });
    // Group commit: while the first stage of this partition is busy, later batches wait in one
    // queued plan, which then becomes durable with one write and one sync per file. Under load
    // flushes grow (bounded by MAX_IN_FLIGHT_BYTES); when idle each batch goes alone.
    if (pipe.queued !== undefined) {
      mergePlans(pipe.queued, plan);
      return;
    }
    pipe.queued = plan;
    pipe.pending += 1;
    const flush: FlushState<T> = { plan, letters: [], current: new Map(), started: 0n };

    // Each stage has its own chain per partition: flush N+1 can be in the first store while flush
    // N is in the second. A stage of a flush starts when the same stage of the previous flush and
    // the previous stage of this flush are done, so each store sees records in order.
    let previous: Promise<boolean> = pipe.stageTails[0]!.then(() => {
      flush.plan = pipe.queued!;
      pipe.queued = undefined;
      flush.current = flush.plan.tenants;
      flush.started = process.hrtime.bigint();
      flush.letters = flush.plan.rejected.map((r) => ({ topic: this.options.topic, partition: pipe.partition, source: r.source, error: r.error, stage: 'DECODE' }));
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
        this.release(flush.plan.records, flush.plan.bytes);
      });
  }

  /**
   * Appends `link` to the first stage's chain of the partition (after every flush so far, before
   * any later one): how a processor's partition is opened and ticked in order with its flushes.
   */
  private enqueue(pipe: PartitionPipeline<T>, link: () => Promise<void>): void {
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

  /** Loads the processor's state of a partition (after its release by an earlier assignment), then ticks it. */
  private openPartition(pipe: PartitionPipeline<T>, processor: PartitionProcessor<T>): void {
    const { topic } = this.options;
    const revoking = this.revoking.get(pipe.partition);
    this.enqueue(pipe, async () => {
      await revoking;
      if (pipe.closed) return;
      // Only what says it is retriable: a broken checkpoint (an unknown error) must stop the worker at once.
      await retrying(() => processor.openPartition(topic, pipe.partition), { ...this.retryOptions(pipe, `${processor.name}-open`), retriable: isRetriable });
    });
    pipe.ticker = setInterval(() => this.tick(pipe, processor), this.options.tickIntervalMs);
    // Ticks only matter while the worker runs; stop and revoke clear them.
    pipe.ticker.unref();
  }

  /** A tick goes through the chain like a flush; skipped while one is queued or under way (it will sync anyway). */
  private tick(pipe: PartitionPipeline<T>, processor: PartitionProcessor<T>): void {
    if (pipe.closed || pipe.pending > 0 || pipe.queued !== undefined || this.stopping) return;
    const { topic } = this.options;
    this.enqueue(pipe, async () => {
      processor.tick(topic, pipe.partition, Date.now());
      await this.syncProcessor(pipe, processor);
      await this.checkpoint(pipe, processor);
      this.requestCommit(pipe);
    });
  }

  private failFlush(pipe: PartitionPipeline<T>, error: unknown): void {
    // No later flush of this partition may commit past the records this one did not store.
    const wasClosed = pipe.closed;
    pipe.close();
    if (wasClosed || this.stopping) {
      this.options.logger.warn({ err: error, partition: pipe.partition }, 'flush abandoned (partition released or worker stopping); records will be re-read');
      return;
    }
    // A non-retriable failure that is not one record's fault (e.g. a store's configuration):
    // stop without committing rather than skip or dead-letter good records.
    this.fatal = true;
    this.options.logger.fatal({ err: error, partition: pipe.partition }, 'flush failed for good; stopping the worker');
    this.options.onFatal(error instanceof Error ? error : new Error(String(error)));
  }

  private release(records: number, bytes: number): void {
    this.inFlightRecords -= records;
    this.inFlightBytes -= bytes;
    this.reportInFlight();
    for (const wake of this.drainWaiters.splice(0)) wake();
  }

  private reportInFlight(): void {
    const { metrics, topic } = this.options;
    metrics.inFlightRecords.set({ topic }, this.inFlightRecords);
    metrics.inFlightBytes.set({ topic }, this.inFlightBytes);
    metrics.inFlightBytesMax.set({ topic }, this.inFlightBytesMax);
    metrics.inFlightRatio.set({ topic }, this.inFlightBytes / this.options.maxInFlightBytes);
  }

  private updateLag(pipe: PartitionPipeline<T>): void {
    const committed = pipe.offsets.committedOffset;
    if (pipe.highWatermark === undefined || committed === undefined) return;
    const lag = pipe.highWatermark - committed;
    this.options.metrics.lag.set({ topic: this.options.topic, partition: String(pipe.partition) }, Number(lag > 0n ? lag : 0n));
  }

  private retryOptions(pipe: PartitionPipeline<T>, what: string): RetryOptions {
    const { options } = this;
    return {
      maxDelayMs: options.retryMaxDelayMs,
      what,
      shouldStop: () => pipe.closed || this.fatal,
      onRetry: (error: unknown, attempt: number) => {
        options.metrics.retries.inc({ topic: options.topic, sink: what });
        options.logger.warn({ err: error, attempt, sink: what, partition: pipe.partition }, 'store write failed; retrying');
      },
    };
  }

  /**
   * One call to a store, through its circuit breaker. While the breaker is open the call waits for
   * the breaker's probe instead of reaching the store, and the partition stops fetching until
   * the breaker closes; the partition being released or the worker failing ends the wait.
   */
  private guarded<R>(pipe: PartitionPipeline<T>, store: string, call: () => Promise<R>): Promise<R> {
    return this.breakers.call(store, call, {
      shouldStop: () => pipe.closed || this.fatal,
      onBlocked: () => {
        if (!pipe.closed) this.pauses.hold(pipe.partition, breakerHold(store));
      },
    });
  }

  /**
   * One store's stage of a flush: the tenant batches still standing go to the sink as one flush,
   * then the sink syncs once. If the write or the sync fails, both are repeated: the sink forgets
   * unsynced state and idempotent writes make the repeat safe. Records the sink refuses are
   * dead-lettered and not given to the next stage.
   */
  private async runSink(pipe: PartitionPipeline<T>, sink: FlushSink<T>, flush: FlushState<T>): Promise<void> {
    const { topic } = this.options;
    const sinkFlush = { topic, partition: pipe.partition, tenants: flush.current };
    const attempt = async () => {
      const result = await this.guarded(pipe, sink.name, () => sink.write(sinkFlush));
      if (sink.sync !== undefined) await this.guarded(pipe, sink.name, () => sink.sync!(topic, pipe.partition));
      return result;
    };
    const { rejected } = await retrying(attempt, this.retryOptions(pipe, sink.name));
    if (rejected.size === 0) return;
    const kept = new Map<string, ValidEntry<T>[]>();
    const refused = new Set<SourceMessage>();
    for (const [tenantId, entries] of flush.current) {
      const stored: ValidEntry<T>[] = [];
      for (const entry of entries) {
        const error = rejected.get(entry);
        if (error === undefined) stored.push(entry);
        // A record is dead-lettered once, even when a store refuses several of its items.
        else if (!refused.has(entry.source)) {
          refused.add(entry.source);
          flush.letters.push({ topic, partition: pipe.partition, source: entry.source, error, stage: sink.name });
        }
      }
      kept.set(tenantId, stored);
    }
    flush.current = kept;
  }

  /** The sinks' last stage: the flush is stored, its offset gets committed. */
  private async finishStored(pipe: PartitionPipeline<T>, flush: FlushState<T>): Promise<void> {
    await this.finish(pipe, flush, flush.current.values());
    this.requestCommit(pipe);
  }

  /**
   * A processor's only stage: apply once, sync until it succeeds, then dead letters and offsets.
   * The checkpoint is taken here, in the chain, so that it matches the state the sync made
   * durable and no later flush is applied meanwhile.
   */
  private async runProcessor(pipe: PartitionPipeline<T>, processor: PartitionProcessor<T>, flush: FlushState<T>): Promise<void> {
    const { plan } = flush;
    processor.apply(this.options.topic, pipe.partition, plan.ordered, plan.lastOffset, Date.now());
    await this.syncProcessor(pipe, processor);
    await this.finish(pipe, flush, [plan.ordered]);
    await this.checkpoint(pipe, processor);
    this.requestCommit(pipe);
  }

  private async syncProcessor(pipe: PartitionPipeline<T>, processor: PartitionProcessor<T>): Promise<void> {
    const { topic } = this.options;
    const store = processor.syncStore;
    // A sync with nothing to write is not a call to the store: it must not close (or dilute) its breaker.
    const sync = () => processor.sync(topic, pipe.partition);
    await retrying(() => (store?.hasPending(topic, pipe.partition) ? this.guarded(pipe, store.name, sync) : sync()), this.retryOptions(pipe, `${processor.name}-sync`));
  }

  /**
   * After a sync: the commit may go no further than where the processor still needs records
   * from, and only once the processor persisted what a restart from there needs. A failed
   * checkpoint leaves the commit where it was until the next flush or tick.
   */
  private async checkpoint(pipe: PartitionPipeline<T>, processor: PartitionProcessor<T>): Promise<void> {
    const { topic, metrics, logger } = this.options;
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

  /** Dead letters acknowledged, then the offset is durable. `stored`: the items now durable. */
  private async finish(pipe: PartitionPipeline<T>, flush: FlushState<T>, stored: Iterable<ReadonlyArray<ValidEntry<T>>>): Promise<void> {
    const { options } = this;
    const { topic, metrics } = options;
    const { letters, plan } = flush;
    if (letters.length > 0) {
      letters.sort((a, b) => (a.source.offset < b.source.offset ? -1 : 1));
      await retrying(() => this.guarded(pipe, DEAD_LETTER_STORE, () => this.deadLetters.send(letters)), this.retryOptions(pipe, 'dead-letter'));
      for (const l of letters) {
        if (l.outcome !== 'delivered') continue;
        metrics.deadLettered.inc({ topic, reason: l.error.errorClass });
        this.totals.deadLettered += 1;
      }
      options.logger.warn(
        { partition: pipe.partition, count: letters.length, first: { offset: letters[0]!.source.offset.toString(), reason: letters[0]!.error.errorClass, message: letters[0]!.error.message } },
        'records dead-lettered',
      );
    }
    pipe.offsets.markDurable(plan.lastOffset);
    // One observation per stored item (the metric's meaning), on the topic's series taken once
    // per flush; the items of one record share its timestamp, parsed once.
    const now = Date.now();
    const latency = metrics.endToEndLatency.series({ topic });
    let written = 0;
    let lastSource: SourceMessage | undefined;
    let seconds = 0;
    for (const entries of stored) {
      written += entries.length;
      for (const e of entries) {
        if (e.source !== lastSource) {
          lastSource = e.source;
          seconds = (now - Number(e.source.timestamp)) / 1000;
        }
        latency.observe(seconds);
      }
    }
    metrics.written.inc({ topic }, written);
    this.totals.written += written;
    metrics.batchRecords.observe({ topic }, plan.records);
    metrics.flushDuration.observe({ topic }, Number(process.hrtime.bigint() - flush.started) / 1e9);
  }

  /**
   * Commits the partition's offset without holding up the next flush. One commit per partition
   * is in flight at a time; requests meanwhile are folded into one more commit of the newest
   * offset, so commits never go backwards.
   */
  private requestCommit(pipe: PartitionPipeline<T>): void {
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
  private async settle(pipe: PartitionPipeline<T>): Promise<void> {
    await pipe.chain;
    while (pipe.committing) await pipe.committing;
  }

  private async commit(pipe: PartitionPipeline<T>): Promise<void> {
    const offset = pipe.offsets.pendingCommit();
    if (offset === undefined || pipe.closed) return;
    const { topic, metrics, logger } = this.options;
    const end = metrics.commitDuration.startTimer({ topic });
    try {
      await this.consumer.commitOffsets([{ topic, partition: pipe.partition, offset }]);
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

  /**
   * Graceful stop: stop taking records, flush and commit everything buffered, leave the group.
   * Resolves true when all of it finished within `timeoutMs`.
   */
  async stop(timeoutMs: number): Promise<boolean> {
    const { logger, topic } = this.options;
    if (this.stopping) return false;
    this.stopping = true;
    for (const wake of this.drainWaiters.splice(0)) wake();
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
      if (this.activeBatches > 0) await new Promise<void>((resolve) => this.batchesIdle.push(resolve));
      for (const pipe of this.pipelines.values()) {
        if (pipe.processing) clearImmediate(pipe.processing);
        pipe.processing = undefined;
        this.processIncoming(pipe, Number.POSITIVE_INFINITY);
      }
      // Decode threads' answers still on their way (none without threads).
      await Promise.all([...this.pipelines.values()].map((p) => p.decoded));
      for (const pipe of this.pipelines.values()) this.scheduleFlush(pipe, 'age');
      await Promise.all([...this.pipelines.values()].map((p) => this.settle(p)));
      const clean = !this.fatal;
      logger.info({ clean }, 'buffers flushed and offsets committed; leaving the group');
      await this.consumer.disconnect();
      return clean;
    })();
    const finished = await Promise.race([work, deadline]);
    clearTimeout(timer);
    for (const pipe of this.pipelines.values()) pipe.close();
    this.breakers.close();
    if (!finished) logger.error({ timeoutMs }, 'graceful stop did not finish in time');
    for (const sink of this.sinks) {
      await sink.close().catch((e: unknown) => logger.error({ err: e, sink: sink.name }, 'sink close failed'));
    }
    if (this.processor !== undefined) {
      for (const partition of this.pipelines.keys()) await this.releaseProcessorPartition(partition);
      const { processor } = this;
      await processor.close().catch((e: unknown) => logger.error({ err: e, processor: processor.name }, 'processor close failed'));
    }
    await this.deadLetters.close().catch((e: unknown) => logger.error({ err: e }, 'dead-letter producer close failed'));
    await this.options.decodePool?.close().catch((e: unknown) => logger.error({ err: e }, 'decode threads did not stop cleanly'));
    return finished;
  }
}

/** What holds a partition whose flush waits for `store`'s open breaker (FetchPauses). */
function breakerHold(store: string): string {
  return `breaker:${store}`;
}

function delay<T>(ms: number, value: T): Promise<T> {
  return new Promise((resolve) => setTimeout(() => resolve(value), ms).unref());
}
