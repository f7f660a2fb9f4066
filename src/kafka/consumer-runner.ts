import type { Consumer, EachBatchPayload, Kafka, KafkaMessage } from 'kafkajs';
import type { Logger } from 'pino';
import { PartitionBatch, mergePlans, type FlushLimits, type FlushPlan, type FlushReason, type SourceMessage, type ValidEntry } from '../batching/partition-batch.js';
import type { RecordDecoder } from '../model/decode.js';
import type { WorkerMetrics } from '../observability/metrics.js';
import type { TenantBatchSink } from '../sinks/types.js';
import { recordFootprint } from '../model/headers.js';
import { undecodableBatchReason } from './codecs.js';
import { DeadLetterProducer, type DeadLetter } from './dead-letter.js';
import { Quarantine } from './quarantine.js';
import { PartitionOffsets } from './offset-tracker.js';
import { retrying } from './retry.js';

export interface ConsumerRunnerOptions<T> {
  kafka: Kafka;
  topic: string;
  dlqTopic: string;
  group: string;
  workerId: string;
  decoder: RecordDecoder<T>;
  /** Applied in order to each tenant batch; a record one sink rejects is not given to the next. */
  sinks: TenantBatchSink<T>[];
  limits: FlushLimits;
  /** Flush as soon as a partition has caught up with its high watermark, not only on the limits. */
  flushWhenCaughtUp: boolean;
  maxInFlightBytes: number;
  partitionsConcurrency: number;
  sessionTimeoutMs: number;
  rebalanceTimeoutMs: number;
  heartbeatIntervalMs: number;
  retryMaxDelayMs: number;
  /** A revoked partition's flush under way gets this long before the partition is released anyway. */
  shutdownTimeoutMs: number;
  /** Where dead letters the dead-letter topic refuses for good are kept (see Quarantine). */
  quarantineDir: string;
  logger: Logger;
  metrics: WorkerMetrics;
  /** Called once when the worker cannot go on (a non-retriable failure that is not a record's fault). */
  onFatal: (error: Error) => void;
}

/** In-flight bytes each decoded item of a many-item record adds to the record's own bytes. */
const DECODED_ITEM_BYTES = 512;

/** Longest stretch of decoding before the event loop gets a turn. */
const PROCESS_SLICE_MS = 20;


/**
 * One assigned partition: records in custody, its buffer, its offsets, and the queues of its
 * flushes (one per sink stage, one for dead letters and commits) that keep offset order.
 */
class PartitionPipeline<T> {
  readonly batch = new PartitionBatch<T>();
  readonly offsets = new PartitionOffsets();
  /** Settles when the latest flush (and so every earlier one) has finished or failed. */
  chain: Promise<void> = Promise.resolve();
  /** The commit under way, if any: at most one per partition, coalescing later requests. */
  committing: Promise<void> | undefined;
  commitAgain = false;
  /** Records in custody, not decoded yet (in offset order). */
  incoming: Array<{ message: KafkaMessage; offset: bigint; bytes: number }> = [];
  processing: NodeJS.Immediate | undefined;
  /** The last fetched batch reached the partition's high watermark. */
  caughtUp = false;
  /** The next flush, waiting for the first stage; later batches are merged into it. */
  queued: FlushPlan<T> | undefined;
  /** Per sink: the stage of the latest flush (never rejects). */
  stageTails: Promise<void>[];
  /** The last stage (dead letters, offset) of the latest flush (never rejects). */
  commitTail: Promise<void> = Promise.resolve();
  timer: NodeJS.Timeout | undefined;
  closed = false;
  highWatermark: bigint | undefined;

  constructor(
    readonly partition: number,
    stages: number,
  ) {
    this.stageTails = Array.from({ length: Math.max(1, stages) }, () => Promise.resolve());
  }
}

/** One flush on its way through the stages. */
interface FlushState<T> {
  plan: FlushPlan<T>;
  letters: DeadLetter[];
  /** Tenant batches still to store (each stage drops what its sink refused). */
  current: Map<string, ValidEntry<T>[]>;
  started: bigint;
}

/**
 * Runs one consumer group member: takes records from kafkajs, decodes them, batches them per
 * partition and tenant, writes each flush to every sink (with retries for transient failures),
 * dead-letters what cannot be stored, and only then commits the partition's offset.
 *
 * Invariant: the committed offset of a partition never passes a record that is not durable in
 * all of its sinks or acknowledged by the dead-letter topic.
 */
export class ConsumerRunner<T> {
  private readonly consumer: Consumer;
  private readonly deadLetters: DeadLetterProducer;
  private readonly quarantine: Quarantine;
  private readonly pipelines = new Map<number, PartitionPipeline<T>>();
  private inFlightBytes = 0;
  private inFlightRecords = 0;
  private inFlightBytesMax = 0;
  private drainWaiters: Array<() => void> = [];
  private paused = false;
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

  constructor(private readonly options: ConsumerRunnerOptions<T>) {
    this.consumer = options.kafka.consumer({
      groupId: options.group,
      sessionTimeout: options.sessionTimeoutMs,
      rebalanceTimeout: options.rebalanceTimeoutMs,
      heartbeatInterval: options.heartbeatIntervalMs,
      // A fetch response is at most a quarter of the in-flight budget, so that memory stays bounded.
      maxBytes: Math.max(1 << 20, Math.min(10 << 20, Math.floor(options.maxInFlightBytes / 4))),
      // Fewer, larger fetches under a backlog (kafkajs' default is 1 MiB per partition).
      maxBytesPerPartition: Math.max(1 << 20, Math.min(4 << 20, Math.floor(options.maxInFlightBytes / 16))),
      maxWaitTimeInMs: 500,
      allowAutoTopicCreation: false,
    });
    this.quarantine = new Quarantine(options.quarantineDir, (letters, refusal) => {
      for (const l of letters) options.metrics.quarantined.inc({ topic: options.topic, reason: l.error.errorClass });
      options.logger.error(
        { count: letters.length, refusal, dlqTopic: options.dlqTopic, dir: options.quarantineDir, first: { partition: letters[0]!.partition, offset: letters[0]!.source.offset.toString() } },
        'dead-letter topic refused dead letters for good; quarantined them on disk and going on',
      );
    });
    this.deadLetters = new DeadLetterProducer(options.kafka, options.dlqTopic, { group: options.group, workerId: options.workerId }, this.quarantine);
  }

  /** Ready: joined the group and consuming. */
  ready(): boolean {
    return this.joined && !this.stopping && !this.crashed;
  }

  healthy(): boolean {
    return !this.crashed && !this.fatal;
  }

  /** Conditions an operator should see on /readyz even while the worker is ready. */
  details(): string[] {
    const quarantined = this.quarantine.detail();
    return quarantined === undefined ? [] : [quarantined];
  }

  /** `dlqMaxMessageBytes`: the dead-letter topic's max.message.bytes (sends are split under it). */
  async start(dlqMaxMessageBytes: number): Promise<void> {
    const { consumer, options } = this;
    const { logger } = options;
    await this.deadLetters.start(dlqMaxMessageBytes);
    for (const sink of options.sinks) await sink.start();

    consumer.on(consumer.events.GROUP_JOIN, (event) => {
      const assigned = new Set<number>(event.payload.memberAssignment[options.topic] ?? []);
      this.onAssignment(assigned);
      this.joined = true;
      logger.info({ partitions: [...assigned], memberId: event.payload.memberId }, 'joined consumer group');
    });
    consumer.on(consumer.events.REBALANCING, () => {
      // Flush what is buffered now: the partitions may move to another worker.
      logger.info('group is rebalancing; flushing buffers');
      for (const pipe of this.pipelines.values()) this.scheduleFlush(pipe, 'age');
    });
    consumer.on(consumer.events.CRASH, (event) => {
      // kafkajs restarts the consumer after a retriable crash (e.g. a coordinator that moved).
      const log = event.payload.restart ? logger.warn.bind(logger) : logger.error.bind(logger);
      log({ err: event.payload.error, restart: event.payload.restart }, event.payload.restart ? 'kafka consumer crashed; kafkajs restarts it' : 'kafka consumer crashed');
      if (!event.payload.restart) {
        this.crashed = true;
        options.onFatal(event.payload.error);
      }
    });

    await consumer.connect();
    await consumer.subscribe({ topic: options.topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: options.partitionsConcurrency,
      eachBatch: (payload) => this.eachBatch(payload),
    });
  }

  private onAssignment(assigned: Set<number>): void {
    const { metrics, topic } = { metrics: this.options.metrics, topic: this.options.topic };
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
    }
    this.assignment = assigned;
    metrics.assignedPartitions.set({ topic }, assigned.size);
  }

  /**
   * A batch of this partition cannot be decompressed (codec missing or data corrupt). Skipping it
   * would lose records and crashing would loop, so only this partition is paused, at the batch:
   * nothing at or past it is taken or committed, the other partitions go on, and the partition
   * stays visible (log, spanledger_partition_stuck, /readyz) until a worker that can read it
   * takes over. kafkajs delivers the batch again after any resume, which pauses it again.
   */
  private stopAtUndecodableBatch(partition: number, reason: string): void {
    const { consumer, options } = this;
    const { topic } = options;
    consumer.pause([{ topic, partitions: [partition] }]);
    if (this.stuck.get(partition) === reason) return;
    this.stuck.set(partition, reason);
    options.metrics.partitionStuck.set(this.stuckLabels(partition, reason), 1);
    options.logger.error({ partition, reason }, 'partition paused: a batch cannot be decompressed; its records stay uncommitted until a worker that can read them takes over');
  }

  /** The reason label is short and stable (the codec), the full reason is in the log and /readyz. */
  private stuckLabels(partition: number, reason: string) {
    return { topic: this.options.topic, partition: String(partition), reason: `undecodable_batch:${reason.split(' ')[0]}` };
  }

  /** The partition went elsewhere; kafkajs keeps it paused across assignments, so if it comes back, read it again. */
  private forgetStuck(partition: number): void {
    const reason = this.stuck.get(partition);
    if (reason === undefined) return;
    this.stuck.delete(partition);
    this.options.metrics.partitionStuck.remove(this.stuckLabels(partition, reason));
    if (!this.paused) this.consumer.resume([{ topic: this.options.topic, partitions: [partition] }]);
  }

  /** One line per stuck partition, for /readyz. */
  stuckPartitions(): string[] {
    return [...this.stuck].map(([partition, reason]) => `partition ${this.options.topic}/${partition} stuck: ${reason}`);
  }

  /** The partition went to another worker: drop its buffer (the new owner re-reads it), then release it. */
  private async revoke(partition: number): Promise<void> {
    const pipe = this.pipelines.get(partition);
    this.pipelines.delete(partition);
    this.options.metrics.lag.remove({ topic: this.options.topic, partition: String(partition) });
    this.forgetStuck(partition);
    if (pipe !== undefined) {
      pipe.closed = true;
      if (pipe.timer) clearTimeout(pipe.timer);
      if (pipe.processing) clearImmediate(pipe.processing);
      pipe.processing = undefined;
      const undecoded = pipe.incoming.splice(0);
      this.release(undecoded.length, undecoded.reduce((n, r) => n + r.bytes, 0));
      const dropped = pipe.batch.drain();
      if (dropped) this.release(dropped.records, dropped.bytes);
      // Bounded: a store or dead-letter topic that does not answer must not hold the partition
      // (and its span log lock) forever. Nothing is committed after this (the pipe is closed).
      const settled = await Promise.race([this.settle(pipe).then(() => true), delay(this.options.shutdownTimeoutMs, false)]);
      if (!settled) this.options.logger.warn({ partition, timeoutMs: this.options.shutdownTimeoutMs }, 'revoked partition still had a flush under way; releasing it anyway (its records will be read again)');
    }
    for (const sink of this.options.sinks) {
      try {
        await sink.releasePartition?.(this.options.topic, partition);
      } catch (e) {
        this.options.logger.error({ err: e, partition }, `sink ${sink.name} failed to release partition`);
      }
    }
    this.options.logger.info({ partition }, 'partition revoked and released');
  }

  private pipeline(partition: number): PartitionPipeline<T> {
    let pipe = this.pipelines.get(partition);
    if (pipe === undefined) {
      pipe = new PartitionPipeline<T>(partition, this.options.sinks.length);
      this.pipelines.set(partition, pipe);
    }
    return pipe;
  }

  /**
   * Takes a fetched batch into custody and returns at once, so that kafkajs fetches the next one
   * while this one is decoded (`processIncoming`): the broker's work and ours overlap. Records
   * count against MAX_IN_FLIGHT_BYTES from this moment.
   */
  private async eachBatch(payload: EachBatchPayload): Promise<void> {
    const { batch, resolveOffset, heartbeat, isRunning, isStale } = payload;
    const { options } = this;
    const revoking = this.revoking.get(batch.partition);
    if (revoking !== undefined) await revoking;
    const pipe = this.pipeline(batch.partition);
    pipe.highWatermark = BigInt(batch.highWatermark);
    this.activeBatches += 1;
    try {
      let taken = 0;
      let skipped = 0;
      for (const message of batch.messages) {
        if (this.stopping || pipe.closed || !isRunning() || isStale()) break;
        const undecodable = undecodableBatchReason(message);
        if (undecodable !== undefined) {
          this.stopAtUndecodableBatch(batch.partition, undecodable);
          break;
        }
        const offset = BigInt(message.offset);
        if (!pipe.offsets.accept(offset)) {
          skipped += 1;
          resolveOffset(message.offset);
          continue;
        }
        const bytes = recordFootprint(message);
        pipe.incoming.push({ message, offset, bytes });
        this.account(1, bytes);
        taken += 1;
        // Tell kafkajs the record is in custody, so its next fetch starts after it. This is not a
        // commit: commits happen only after a flush made records durable.
        resolveOffset(message.offset);
        if (this.inFlightBytes > options.maxInFlightBytes) {
          this.processIncoming(pipe, Number.POSITIVE_INFINITY);
          await this.waitForRoom(pipe, heartbeat);
        }
      }
      if (taken > 0) options.metrics.consumed.inc({ topic: options.topic }, taken);
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
    const { options } = this;
    const deadline = performance.now() + sliceMs;
    let i = 0;
    for (; i < pipe.incoming.length; i += 1) {
      if (pipe.closed) break;
      const { message, offset, bytes } = pipe.incoming[i]!;
      this.take(pipe, message, offset, bytes);
      const reason = pipe.batch.flushReason(options.limits, Date.now());
      if (reason === 'records' || reason === 'bytes') this.scheduleFlush(pipe, reason);
      if ((i & 255) === 255 && performance.now() > deadline) {
        i += 1;
        break;
      }
    }
    pipe.incoming.splice(0, i);
    if (pipe.incoming.length > 0 || pipe.closed) return;
    // Nothing more waiting in Kafka for this partition (or fetching is paused): waiting for the
    // age limit would only add latency. Under a backlog this does not fire and batches fill up to
    // the limits; group commit merges the small flushes that come while one is being written.
    if ((options.flushWhenCaughtUp && pipe.caughtUp) || this.paused) {
      if (!this.stopping) this.scheduleFlush(pipe, 'caught_up');
    }
    this.armAgeTimer(pipe);
  }

  /** Decodes one record in custody into the partition's buffer (its `bytes` are already counted). */
  private take(pipe: PartitionPipeline<T>, message: KafkaMessage, offset: bigint, bytes: number): void {
    const source: SourceMessage = {
      offset,
      key: message.key,
      value: message.value,
      headers: (message.headers ?? {}) as SourceMessage['headers'],
      timestamp: message.timestamp,
    };
    const decoded = this.options.decoder.decode({ value: message.value, headers: source.headers });
    const now = Date.now();
    if (decoded.ok) {
      // A record of many items (an OTLP request) takes more memory decoded than on the wire.
      const expansion = decoded.items.length > 1 ? decoded.items.length * DECODED_ITEM_BYTES : 0;
      if (expansion > 0) this.account(0, expansion);
      pipe.batch.addValid(offset, decoded.items, bytes + expansion, source, now);
    } else {
      pipe.batch.addRejected(offset, decoded.error, bytes, source, now);
    }
  }

  private account(records: number, bytes: number): void {
    this.inFlightRecords += records;
    this.inFlightBytes += bytes;
    if (this.inFlightBytes > this.inFlightBytesMax) {
      this.inFlightBytesMax = this.inFlightBytes;
      this.options.metrics.inFlightBytesMax.set({ topic: this.options.topic }, this.inFlightBytesMax);
    }
    this.reportInFlight();
  }

  /** Backpressure: stop taking records (and pause fetching) until flushes have made room. */
  private async waitForRoom(pipe: PartitionPipeline<T>, heartbeat: () => Promise<void>): Promise<void> {
    const { options } = this;
    const overBudget = () => this.inFlightBytes > options.maxInFlightBytes / 2;
    if (!overBudget()) return;
    if (!this.paused) {
      this.paused = true;
      this.consumer.pause([{ topic: options.topic }]);
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
    if (this.paused && !overBudget()) {
      this.paused = false;
      this.consumer.resume([{ topic: options.topic }]);
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
    const { sinks } = this.options;
    const flush: FlushState<T> = { plan, letters: [], current: new Map(), started: 0n };

    // Each sink is a stage with its own chain per partition: flush N+1 can be in the first store
    // while flush N is in the second. A stage of a flush starts when the same stage of the previous
    // flush and the previous stage of this flush are done, so each store sees records in order.
    let previous: Promise<boolean> = pipe.stageTails[0]!.then(() => {
      flush.plan = pipe.queued!;
      pipe.queued = undefined;
      flush.current = flush.plan.tenants;
      flush.started = process.hrtime.bigint();
      flush.letters = flush.plan.rejected.map((r) => ({ topic: this.options.topic, partition: pipe.partition, source: r.source, error: r.error, stage: 'DECODE' }));
      // Revoked while it waited: the new owner reads these records again.
      return !pipe.closed;
    });
    sinks.forEach((sink, k) => {
      const ready = k === 0 ? previous : Promise.all([previous, pipe.stageTails[k]]).then(([ok]) => ok);
      const stage = ready.then(async (ok) => {
        if (!ok || pipe.closed) return false;
        await this.runStage(pipe, sink, flush);
        return true;
      });
      pipe.stageTails[k] = stage.then(
        () => undefined,
        () => undefined,
      );
      previous = stage;
    });
    const done = Promise.all([previous, pipe.commitTail]).then(async ([ok]) => {
      if (ok && !pipe.closed) await this.finish(pipe, flush);
    });
    pipe.commitTail = done.then(
      () => undefined,
      () => undefined,
    );
    pipe.chain = done
      .catch((e: unknown) => this.failFlush(pipe, e))
      .finally(() => this.release(flush.plan.records, flush.plan.bytes));
  }

  private failFlush(pipe: PartitionPipeline<T>, error: unknown): void {
    // No later flush of this partition may commit past the records this one did not store.
    const wasClosed = pipe.closed;
    pipe.closed = true;
    if (wasClosed || this.stopping) {
      this.options.logger.warn({ err: error, partition: pipe.partition }, 'flush abandoned (partition released or worker stopping); records will be re-read');
      return;
    }
    // A non-retriable failure that is not one record's fault (e.g. a store's configuration):
    // stop without committing rather than skip or dead-letter good records.
    this.fatal = true;
    pipe.closed = true;
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
  }

  private updateLag(pipe: PartitionPipeline<T>): void {
    const committed = pipe.offsets.committedOffset;
    if (pipe.highWatermark === undefined || committed === undefined) return;
    const lag = pipe.highWatermark - committed;
    this.options.metrics.lag.set({ topic: this.options.topic, partition: String(pipe.partition) }, Number(lag > 0n ? lag : 0n));
  }

  private retryOptions(pipe: PartitionPipeline<T>, what: string) {
    const { options } = this;
    return {
      maxDelayMs: options.retryMaxDelayMs,
      shouldStop: () => pipe.closed || this.fatal,
      onRetry: (error: unknown, attempt: number) => {
        options.metrics.retries.inc({ topic: options.topic, sink: what });
        options.logger.warn({ err: error, attempt, sink: what, partition: pipe.partition }, 'store write failed; retrying');
      },
    };
  }

  /**
   * One store's stage of a flush: every tenant batch still standing goes to the sink, then the
   * sink syncs once. If the sync fails, the stage is repeated: the sink forgets unsynced state and
   * idempotent writes make the repeat safe. Records the sink refuses are dead-lettered and not
   * given to the next stage.
   */
  private async runStage(pipe: PartitionPipeline<T>, sink: TenantBatchSink<T>, flush: FlushState<T>): Promise<void> {
    const { topic } = this.options;
    const attempt = async () => {
      const refused: DeadLetter[] = [];
      const kept = new Map<string, ValidEntry<T>[]>();
      await Promise.all(
        [...flush.current].map(async ([tenantId, entries]) => {
          if (entries.length === 0) return;
          const records = entries.map((e) => ({ value: e.value, source: { topic, partition: pipe.partition, offset: e.offset.toString(), index: e.index } }));
          const result = await retrying(() => sink.write(tenantId, records), this.retryOptions(pipe, sink.name));
          if (result.rejected.size === 0) {
            kept.set(tenantId, entries);
            return;
          }
          const stored: ValidEntry<T>[] = [];
          entries.forEach((entry, i) => {
            const error = result.rejected.get(i);
            if (error === undefined) stored.push(entry);
            // A record is dead-lettered once, even when a store refuses several of its items.
            else if (!refused.some((l) => l.source === entry.source)) refused.push({ topic, partition: pipe.partition, source: entry.source, error, stage: sink.name });
          });
          kept.set(tenantId, stored);
        }),
      );
      await sink.sync?.(topic, pipe.partition);
      return { kept, refused };
    };
    const { kept, refused } = await retrying(attempt, this.retryOptions(pipe, `${sink.name}-sync`));
    flush.current = kept;
    for (const l of refused) flush.letters.push(l);
  }

  /** Last stage: dead letters acknowledged, then the offset is durable and gets committed. */
  private async finish(pipe: PartitionPipeline<T>, flush: FlushState<T>): Promise<void> {
    const { options } = this;
    const { topic, metrics } = options;
    const { letters, plan } = flush;
    if (letters.length > 0) {
      letters.sort((a, b) => (a.source.offset < b.source.offset ? -1 : 1));
      await retrying(() => this.deadLetters.send(letters), this.retryOptions(pipe, 'dead-letter'));
      for (const l of letters) if (l.outcome === 'delivered') metrics.deadLettered.inc({ topic, reason: l.error.errorClass });
      options.logger.warn(
        { partition: pipe.partition, count: letters.length, first: { offset: letters[0]!.source.offset.toString(), reason: letters[0]!.error.errorClass, message: letters[0]!.error.message } },
        'records dead-lettered',
      );
    }
    pipe.offsets.markDurable(plan.lastOffset);
    const now = Date.now();
    let written = 0;
    for (const entries of flush.current.values()) {
      written += entries.length;
      for (const e of entries) metrics.endToEndLatency.observe({ topic }, (now - Number(e.source.timestamp)) / 1000);
    }
    metrics.written.inc({ topic }, written);
    metrics.batchRecords.observe({ topic }, plan.records);
    metrics.flushDuration.observe({ topic }, Number(process.hrtime.bigint() - flush.started) / 1e9);
    this.requestCommit(pipe);
  }

  /**
   * Commits the partition's durable offset without holding up the next flush. One commit per
   * partition is in flight at a time; requests meanwhile are folded into one more commit of the
   * newest durable offset, so commits never go backwards.
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
      await this.consumer.commitOffsets([{ topic, partition: pipe.partition, offset: offset.toString() }]);
      pipe.offsets.markCommitted(offset);
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
    const { logger } = this.options;
    if (this.stopping) return false;
    this.stopping = true;
    for (const wake of this.drainWaiters.splice(0)) wake();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const work = (async () => {
      try {
        this.consumer.pause([{ topic: this.options.topic }]);
      } catch {
        // not running yet: nothing to pause
      }
      if (this.activeBatches > 0) await new Promise<void>((resolve) => this.batchesIdle.push(resolve));
      for (const pipe of this.pipelines.values()) {
        if (pipe.processing) clearImmediate(pipe.processing);
        pipe.processing = undefined;
        this.processIncoming(pipe, Number.POSITIVE_INFINITY);
        this.scheduleFlush(pipe, 'age');
      }
      await Promise.all([...this.pipelines.values()].map((p) => this.settle(p)));
      const clean = !this.fatal;
      logger.info({ clean }, 'buffers flushed and offsets committed; leaving the group');
      await this.consumer.disconnect();
      return clean;
    })();
    const finished = await Promise.race([work, deadline]);
    clearTimeout(timer);
    for (const pipe of this.pipelines.values()) {
      pipe.closed = true;
      if (pipe.timer) clearTimeout(pipe.timer);
    }
    if (!finished) logger.error({ timeoutMs }, 'graceful stop did not finish in time');
    for (const sink of this.options.sinks) {
      await sink.close().catch((e: unknown) => logger.error({ err: e, sink: sink.name }, 'sink close failed'));
    }
    await this.deadLetters.close().catch((e: unknown) => logger.error({ err: e }, 'dead-letter producer close failed'));
    return finished;
  }
}

function delay<T>(ms: number, value: T): Promise<T> {
  return new Promise((resolve) => setTimeout(() => resolve(value), ms).unref());
}
