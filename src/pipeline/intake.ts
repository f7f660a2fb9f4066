import type { SourceMessage } from './partition-batch.js';
import type { Decoded } from '../model/decode.js';
import { recordFootprint } from '../model/headers.js';
import type { Committer } from './committer.js';
import type { ConsumedBatch, ConsumedMessage } from './consumer-port.js';
import type { DecodePool } from './decode-pool.js';
import type { FetchPauses } from './fetch-pauses.js';
import type { FlushScheduler } from './flush-scheduler.js';
import type { InFlightBudget } from './in-flight-budget.js';
import type { PipelineLifecycle } from './lifecycle.js';
import type { PipelineOptions } from './options.js';
import type { PartitionPipeline } from './partition-pipeline.js';
import type { Partitions } from './partitions.js';
import type { PipelineTotals } from './status.js';
import type { StuckPartitions } from './stuck-partitions.js';

/** In-flight bytes each decoded item of a many-item record adds to the record's own bytes. */
const DECODED_ITEM_BYTES = 512;

/** Longest stretch of decoding before the event loop gets a turn. */
const PROCESS_SLICE_MS = 20;

/** Records per chunk sent to a decode thread (a few milliseconds of decoding). */
const DECODE_CHUNK_RECORDS = 512;

/** The pieces intake hands records to. */
export interface IntakeParts<T> {
  partitions: Partitions<T>;
  scheduler: FlushScheduler<T>;
  committer: Committer;
  budget: InFlightBudget;
  pauses: FetchPauses;
  stuck: StuckPartitions;
  lifecycle: PipelineLifecycle;
  totals: PipelineTotals;
}

type IntakeOptions<T> = Pick<PipelineOptions<T>, 'topic' | 'metrics' | 'logger' | 'decoder' | 'decodePool' | 'limits' | 'flushWhenCaughtUp' | 'caughtUpFlushIntervalMs'>;

/**
 * Takes fetched records into custody (each counted against the in-flight budget from then on,
 * with backpressure when it runs out), decodes them in slices of the event loop or on the decode
 * threads, in offset order per partition, and puts them in the partition's buffer, starting
 * flushes at the limits.
 */
export class Intake<T> {
  private activeBatches = 0;
  private batchesIdle: Array<() => void> = [];

  constructor(
    private readonly options: IntakeOptions<T>,
    private readonly parts: IntakeParts<T>,
  ) {}

  /**
   * Takes a fetched batch into custody and returns at once, so that the consumer fetches the next
   * one while this one is decoded (`processIncoming`): the broker's work and ours overlap. Records
   * count against MAX_IN_FLIGHT_BYTES from this moment.
   */
  async eachBatch(batch: ConsumedBatch): Promise<void> {
    const { resolveOffset, heartbeat, isRunning, isStale } = batch;
    const { options, parts } = this;
    const { budget, lifecycle } = parts;
    const revoking = parts.partitions.revoking.get(batch.partition);
    if (revoking !== undefined) await revoking;
    const pipe = parts.partitions.pipeline(batch.partition);
    pipe.highWatermark = batch.highWatermark;
    this.activeBatches += 1;
    const interrupted = () => !lifecycle.takesRecords || pipe.closed || !isRunning() || isStale();
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
        budget.take(1, bytes, false);
        taken += 1;
        if (budget.overPauseMark) {
          resolveOffset(offset);
          unresolved = undefined;
          budget.report();
          this.processIncoming(pipe, Number.POSITIVE_INFINITY);
          await budget.waitForRoom(heartbeat, {
            flushAll: () => {
              for (const other of parts.partitions.pipes.values()) parts.scheduler.scheduleFlush(other, 'bytes');
            },
            keepWaiting: () => lifecycle.takesRecords && !pipe.closed,
            mayResume: () => lifecycle.takesRecords,
          });
        }
      }
      // Tell the consumer the records are in custody, so its next fetch starts after them. This
      // is not a commit: commits happen only after a flush made records durable.
      if (unresolved !== undefined) resolveOffset(unresolved);
      if (taken > 0) budget.report();
      if (complete && batch.undecodable !== undefined && !interrupted()) parts.stuck.stopAt(batch.partition, batch.undecodable);
      if (taken > 0) {
        options.metrics.consumed.inc({ topic: options.topic }, taken);
        parts.totals.consumed += taken;
      }
      if (skipped > 0) options.metrics.skippedRedelivered.inc({ topic: options.topic }, skipped);
      const next = pipe.offsets.nextCustodyOffset;
      pipe.caughtUp = next !== undefined && pipe.highWatermark !== undefined && next >= pipe.highWatermark;
      this.scheduleProcessing(pipe);
      parts.committer.updateLag(pipe);
    } finally {
      this.activeBatches -= 1;
      if (this.activeBatches === 0) for (const wake of this.batchesIdle.splice(0)) wake();
    }
  }

  /** Stopping: waits for the batches being taken in, then decodes everything in custody now. */
  async drain(): Promise<void> {
    if (this.activeBatches > 0) await new Promise<void>((resolve) => this.batchesIdle.push(resolve));
    const pipes = [...this.parts.partitions.pipes.values()];
    for (const pipe of pipes) {
      if (pipe.processing) clearImmediate(pipe.processing);
      pipe.processing = undefined;
      this.processIncoming(pipe, Number.POSITIVE_INFINITY);
    }
    // Decode threads' answers still on their way (none without threads).
    await Promise.all(pipes.map((p) => p.decoded));
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
    const { decodePool, decoder } = this.options;
    if (decodePool !== undefined) {
      this.dispatchDecoding(pipe, decodePool);
      return;
    }
    const deadline = performance.now() + sliceMs;
    let i = 0;
    for (; i < pipe.incoming.length; i += 1) {
      if (pipe.closed) break;
      const { message, offset, bytes } = pipe.incoming[i]!;
      this.take(pipe, message, offset, bytes, decoder.decode({ value: message.value, headers: message.headers ?? {} }));
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
   * come while one is being written. With caughtUpFlushIntervalMs, only when no flush at the age
   * limit or on catching up came within the interval.
   */
  private caughtUpWithIncoming(pipe: PartitionPipeline<T>): void {
    const { scheduler, pauses, lifecycle } = this.parts;
    const onCatchingUp = pipe.caughtUp && this.flushesWhenCaughtUp(pipe);
    if (onCatchingUp || pauses.allPaused) {
      if (lifecycle.takesRecords) {
        if (onCatchingUp) pipe.lastTimedFlushAt = Date.now();
        scheduler.scheduleFlush(pipe, onCatchingUp ? 'caught_up' : 'paused');
      }
    }
    scheduler.armAgeTimer(pipe);
  }

  private flushesWhenCaughtUp(pipe: PartitionPipeline<T>): boolean {
    const { flushWhenCaughtUp, caughtUpFlushIntervalMs } = this.options;
    if (flushWhenCaughtUp) return true;
    if (caughtUpFlushIntervalMs === undefined || pipe.batch.isEmpty) return false;
    return pipe.lastTimedFlushAt === undefined || Date.now() - pipe.lastTimedFlushAt >= caughtUpFlushIntervalMs;
  }

  /**
   * DECODE_THREADS: sends the records in custody to the decode threads in chunks (all at once:
   * they are already counted against MAX_IN_FLIGHT_BYTES) and applies the answers in the order
   * the chunks were sent, so the partition's buffer sees its records in offset order as without
   * threads. A revoked partition's answers only give their bytes back.
   */
  private dispatchDecoding(pipe: PartitionPipeline<T>, pool: DecodePool<T>): void {
    const { options, parts } = this;
    while (pipe.incoming.length > 0 && !pipe.closed) {
      const chunk = pipe.incoming.splice(0, DECODE_CHUNK_RECORDS);
      pipe.decodingChunks += 1;
      const answers = pool.decode(chunk.map((c) => ({ value: c.message.value, headers: c.message.headers ?? {} }))).catch((e: unknown) => {
        options.logger.warn({ err: e, partition: pipe.partition, records: chunk.length }, 'decode thread failed; decoding the chunk on the main thread');
        return undefined;
      });
      pipe.decoded = pipe.decoded
        .then(async () => {
          const decoded = await answers;
          pipe.decodingChunks -= 1;
          if (pipe.closed) {
            parts.budget.release(chunk.length, chunk.reduce((n, c) => n + c.bytes, 0));
            return;
          }
          chunk.forEach((c, i) => {
            this.take(pipe, c.message, c.offset, c.bytes, decoded?.[i] ?? options.decoder.decode({ value: c.message.value, headers: c.message.headers ?? {} }));
          });
          if (pipe.incoming.length === 0 && pipe.decodingChunks === 0) this.caughtUpWithIncoming(pipe);
        })
        .catch((e: unknown) => parts.scheduler.failFlush(pipe, e));
    }
  }

  /** Puts one decoded record in custody into the partition's buffer (its `bytes` are already counted); flushes at the limits. */
  private take(pipe: PartitionPipeline<T>, message: ConsumedMessage, offset: bigint, bytes: number, decoded: Decoded<T>): void {
    // The message itself when it has all a SourceMessage holds: one object less per record held until its commit.
    const source: SourceMessage =
      message.headers !== undefined && message.offset === offset ? (message as SourceMessage) : { offset, key: message.key, value: message.value, headers: message.headers ?? {}, timestamp: message.timestamp };
    const now = Date.now();
    if (decoded.ok) {
      // A record of many items (an OTLP request) takes more memory decoded than on the wire.
      const expansion = decoded.items.length > 1 ? decoded.items.length * DECODED_ITEM_BYTES : 0;
      if (expansion > 0) this.parts.budget.take(0, expansion);
      pipe.batch.addValid(offset, decoded.items, bytes + expansion, source, now);
    } else {
      pipe.batch.addRejected(offset, decoded.error, bytes, source, now);
    }
    const reason = pipe.batch.flushReason(this.options.limits, now);
    if (reason === 'records' || reason === 'bytes') this.parts.scheduler.scheduleFlush(pipe, reason);
  }
}
