import { randomUUID } from 'node:crypto';
import { backOff } from 'exponential-backoff';
import type { Logger } from 'pino';
import type { ConsumedBatch, GroupConsumer } from '../pipeline/consumer-port.js';
import type { KafkaAdmin, KafkaFacade } from './facade.js';
import { ensureTopics, whileTopicIsNew } from './topics.js';
import { kafkaFailure } from './kafka-errors.js';

/** Where a record stands in the topic. `offset` is Kafka's 64-bit offset as a decimal string. */
export interface RecordMeta {
  partition: number;
  offset: string;
  /** The record's timestamp, ms since the epoch. */
  timestamp: number;
}

/**
 * Receives every record of the topic, in offset order per partition. `key` is the record key as
 * UTF-8 text, or '' when the record has no key, an empty one or one that is not valid UTF-8
 * (the table also logs a warning for those): a table key is never '', so '' means "no usable key"
 * and the callback decides what to do with the record (skip it, count it). `value` null is a
 * tombstone. The callback is synchronous and should not throw: if it does, the error is logged
 * and the record still counts as handed over.
 */
export type OnRecord = (key: string, value: Buffer | null, meta: RecordMeta) => void;

export interface CompactedTableOptions {
  kafka: KafkaFacade;
  topic: string;
  onRecord: OnRecord;
  logger: Logger;
  /** The throwaway consumer group is `<groupPrefix>-<random UUID>`. */
  groupPrefix?: string;
  /** start() fails if the topic cannot be read to its end within this time (ms). Default 30 s. */
  startTimeoutMs?: number;
  /** Create the topic, compacted, when it does not exist (else start() fails). */
  create?: { numPartitions: number; configEntries?: Array<{ name: string; value: string }> };
  /** Longest a fetch waits on the broker for new records (ms): bounds how late close() is. Default 500. */
  maxWaitTimeInMs?: number;
}

/** Longest each step of letting go of the table's clients may take (ms). */
const RELEASE_STEP_TIMEOUT_MS = 10_000;

/** The topic a table follows does not exist. */
export class TopicNotFoundError extends Error {
  constructor(readonly topic: string) {
    super(`topic ${topic} does not exist`);
    this.name = 'TopicNotFoundError';
  }
}

/** A partition's end offset (high watermark) and, if known, its start offset, as the admin's topicOffsets reports them. */
export interface PartitionEnd {
  partition: number;
  high: bigint;
  low?: bigint;
}

/**
 * Per partition, the offset of the next record to hand over. Pure: the caught-up logic of
 * CompactedTable, testable without a broker.
 */
export class PartitionPositions {
  private readonly next = new Map<number, bigint>();

  /** Whether the record at `offset` is yet to be handed over (a rebalance can deliver it again). */
  isNew(partition: number, offset: bigint): boolean {
    return offset >= (this.next.get(partition) ?? 0n);
  }

  /** Everything before `nextOffset` is handed over (never moves back). */
  advance(partition: number, nextOffset: bigint): void {
    if (nextOffset > (this.next.get(partition) ?? 0n)) this.next.set(partition, nextOffset);
  }

  /** Partitions still short of their end, with how far: empty when everything up to `ends` is handed over. */
  behind(ends: readonly PartitionEnd[]): Array<{ partition: number; at: bigint; end: bigint }> {
    const out: Array<{ partition: number; at: bigint; end: bigint }> = [];
    for (const { partition, high, low } of ends) {
      const at = this.next.get(partition) ?? 0n;
      const end = high;
      // A partition with no record left (start offset = end offset) has nothing to hand over.
      if (at < end && !(low !== undefined && low >= end)) out.push({ partition, at, end });
    }
    return out;
  }

  reached(ends: readonly PartitionEnd[]): boolean {
    return this.behind(ends).length === 0;
  }
}

/** '' for a key that is missing, empty or not valid UTF-8 (see OnRecord). */
export function tableKey(key: Buffer | null): string {
  if (key === null || key.length === 0) return '';
  try {
    return strictUtf8.decode(key);
  } catch {
    return '';
  }
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

interface Waiter {
  ends: PartitionEnd[];
  resolve: () => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * Follows a compacted topic as a table (a Kafka Streams GlobalKTable): every partition from the
 * beginning, then live, each record handed to `onRecord`. Lifecycle:
 *
 * - `start()` reads every partition up to its end offset at start, then resolves; it fails
 *   (naming the topic) if that takes longer than `startTimeoutMs` or the topic is missing.
 * - the table keeps following the topic until `close()`;
 * - `catchUp(timeoutMs)` resolves once every record up to the topic's end offsets at the time of
 *   the call is handed over (for a caller that must see a record it has just written);
 * - `close()` stops the consumer and deletes its consumer group.
 *
 * The facade has no manual partition assignment, so the table is the only member of a consumer
 * group of its own (a throwaway id), reads from the beginning and never commits. A rebalance
 * (say, a partition added) makes the consumer read from the beginning again: records already
 * handed over are skipped by offset, so each is handed over once, in order. The consumer's
 * onFetchedThrough tells how far a partition was read, control records (transaction markers)
 * and compacted-away offsets included: what the end offsets count.
 */
export class CompactedTable {
  readonly topic: string;
  readonly groupId: string;
  private readonly kafka: KafkaFacade;
  private readonly onRecord: OnRecord;
  private readonly logger: Logger;
  private readonly options: CompactedTableOptions;
  private readonly positions = new PartitionPositions();
  private waiters: Waiter[] = [];
  private admin: KafkaAdmin | undefined;
  private consumer: GroupConsumer | undefined;
  private state: 'new' | 'starting' | 'running' | 'closed' = 'new';
  private failure: Error | undefined;

  constructor(options: CompactedTableOptions) {
    this.options = options;
    this.kafka = options.kafka;
    this.topic = options.topic;
    this.onRecord = options.onRecord;
    this.logger = options.logger.child({ component: 'compacted-table', topic: options.topic });
    this.groupId = `${options.groupPrefix ?? 'spanledger-table'}-${randomUUID()}`;
  }

  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error(`compacted table of ${this.topic}: start() may be called once`);
    this.state = 'starting';
    const timeoutMs = this.options.startTimeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    try {
      await withDeadline(this.connect(), deadline, () => `cannot connect to read topic ${this.topic} within ${timeoutMs} ms`);
      await this.catchUp(Math.max(1, deadline - Date.now()), `cannot read topic ${this.topic} to its end within ${timeoutMs} ms`);
      this.state = 'running';
    } catch (e) {
      await this.close();
      throw e;
    }
  }

  private async connect(): Promise<void> {
    const admin = this.kafka.admin();
    this.admin = admin;
    // close() may come while this is under way (start() timed out): then what is connected by
    // now is let go here, since close() could not.
    const closed = async (consumer?: GroupConsumer): Promise<boolean> => {
      if (this.state !== 'closed') return false;
      await this.release(admin, consumer);
      return true;
    };
    await admin.connect();
    if (await closed()) return;
    if (this.options.create) {
      await ensureTopics(this.kafka, [{ topic: this.topic, ...this.options.create }]);
    } else if (!(await whileTopicIsNew(() => admin.listTopics())).includes(this.topic)) {
      throw new TopicNotFoundError(this.topic);
    }
    if (await closed()) return;
    const consumer = this.kafka.groupConsumer({
      group: this.groupId,
      // The client's usual group timings: the table is its group's only member.
      sessionTimeoutMs: 30_000,
      rebalanceTimeoutMs: 60_000,
      heartbeatIntervalMs: 3_000,
      // Fetches of up to 10 MiB, 2.5 MiB a partition (a larger record still comes, alone).
      maxInFlightBytes: 40 << 20,
      partitionsConcurrency: 1,
      maxWaitTimeMs: this.options.maxWaitTimeInMs ?? 500,
    });
    this.consumer = consumer;
    consumer.onCrash(({ error, restart }) => {
      if (restart) {
        this.logger.warn({ err: error }, 'compacted table consumer crashed; the client restarts it');
        return;
      }
      this.fail(error);
    });
    // A batch of control records only (transaction markers) never reaches run's callback: its end still counts.
    consumer.onFetchedThrough?.(({ topic, partition, nextOffset }) => {
      if (topic === this.topic) this.advance(partition, nextOffset);
    });
    await consumer.connect();
    if (await closed(consumer)) return;
    // Just created (by us or a peer): another broker may not know it yet.
    await whileTopicIsNew(() => consumer.subscribe(this.topic, true), Math.max(1, (this.options.startTimeoutMs ?? 30_000) / 2));
    await consumer.run(async (batch) => this.handBatch(batch));
    await closed(consumer);
  }

  private handBatch(batch: ConsumedBatch): void {
    const { partition } = batch;
    for (const message of batch.messages) {
      // The next fetch starts after it: nothing is ever committed.
      batch.resolveOffset(message.offset);
      if (!this.positions.isNew(partition, message.offset)) continue;
      const key = tableKey(message.key);
      const offset = message.offset.toString();
      if (key === '') this.logger.warn({ partition, offset }, 'record without a usable key (missing, empty or not UTF-8)');
      try {
        this.onRecord(key, message.value, { partition, offset, timestamp: Number(message.timestamp) });
      } catch (e) {
        this.logger.error({ err: e, partition, offset }, 'compacted table callback failed on a record; the record is passed over');
      }
      this.positions.advance(partition, message.offset + 1n);
    }
    // Nothing at or past a batch that cannot be decompressed can be read: the table cannot be whole.
    if (batch.undecodable !== undefined) this.fail(new Error(`partition ${partition}: ${batch.undecodable}`));
    const last = batch.messages.at(-1);
    if (last !== undefined) this.advance(partition, last.offset + 1n);
  }

  private advance(partition: number, next: bigint): void {
    this.positions.advance(partition, next);
    if (this.waiters.length === 0) return;
    const done = this.waiters.filter((w) => this.positions.reached(w.ends));
    if (done.length === 0) return;
    this.waiters = this.waiters.filter((w) => !done.includes(w));
    for (const w of done) {
      clearTimeout(w.timer);
      w.resolve();
    }
  }

  private fail(error: Error): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    this.logger.error({ err: error }, 'compacted table consumer stopped for good');
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.reject(new Error(`reading topic ${this.topic} failed: ${error.message}`, { cause: error }));
    }
  }

  /**
   * Resolves once every record up to the topic's current end offsets is handed over to onRecord;
   * rejects after `timeoutMs`, naming the topic and the partitions still behind.
   */
  async catchUp(timeoutMs: number, timeoutMessage = `cannot catch up with topic ${this.topic} within ${timeoutMs} ms`): Promise<void> {
    if (this.failure) throw new Error(`reading topic ${this.topic} failed: ${this.failure.message}`, { cause: this.failure });
    if (this.state === 'closed' || this.state === 'new' || !this.admin) throw new Error(`compacted table of ${this.topic} is not running`);
    const deadline = Date.now() + timeoutMs;
    const admin = this.admin;
    const ends = await withDeadline(
      endOffsets(admin, this.topic, () => Date.now() < deadline && this.state !== 'closed'),
      deadline,
      () => `${timeoutMessage} (end offsets not fetched)`,
    );
    if (this.positions.reached(ends)) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        const behind = this.positions.behind(ends).map((b) => `partition ${b.partition} at offset ${b.at} of ${b.end}`);
        reject(new Error(`${timeoutMessage}: ${behind.join(', ')}`));
      }, Math.max(0, deadline - Date.now()));
      const waiter: Waiter = { ends, resolve, reject, timer };
      this.waiters.push(waiter);
    });
  }

  /** Stops following the topic and deletes the throwaway consumer group. Safe to call twice. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.reject(new Error(`compacted table of ${this.topic} closed`));
    }
    const { consumer, admin } = this;
    this.consumer = undefined;
    this.admin = undefined;
    if (admin) await this.release(admin, consumer);
  }

  /** Disconnects the consumer, deletes its group (it held no offsets), disconnects the admin client. */
  private async release(admin: KafkaAdmin, consumer: GroupConsumer | undefined): Promise<void> {
    // Each step bounded: a kafkajs consumer caught in a crash-and-restart loop (NOT_COORDINATOR
    // on a fresh cluster) never finished disconnecting, and `rules put` hung after its start
    // timeout instead of failing.
    const bounded = (what: string, step: Promise<unknown>) => withDeadline(step, Date.now() + RELEASE_STEP_TIMEOUT_MS, () => `${what} took over ${RELEASE_STEP_TIMEOUT_MS} ms`);
    if (consumer) {
      await bounded('consumer disconnect', consumer.disconnect()).catch((e: unknown) => this.logger.warn({ err: e }, 'compacted table consumer did not disconnect cleanly'));
      await bounded('group deletion', admin.deleteGroups([this.groupId])).catch((e: unknown) => this.logger.debug({ err: e }, 'throwaway consumer group not deleted'));
    }
    await bounded('admin disconnect', admin.disconnect()).catch(() => undefined);
  }
}

/**
 * The topic's end offsets. Right after a topic is created (by this worker's start or another's)
 * the broker may answer "not the leader" or "topic unknown" for a moment: what Kafka's classifier
 * (kafka-errors.ts) calls `retry` is retried with backoff while `mayRetry()`; anything else fails at once.
 */
export function endOffsets(admin: Pick<KafkaAdmin, 'topicOffsets'>, topic: string, mayRetry: () => boolean): Promise<PartitionEnd[]> {
  return backOff(() => admin.topicOffsets(topic), {
    numOfAttempts: Number.MAX_SAFE_INTEGER,
    startingDelay: 50,
    maxDelay: 1_000,
    jitter: 'full',
    retry: (e: unknown) => kafkaFailure(e, { topicMayBeNew: true }).kind === 'retry' && mayRetry(),
  }).then((offsets) => offsets.map(({ partition, high, low }) => ({ partition, high, low })));
}

/** `promise`, or a rejection with `message()` once `deadline` (ms since the epoch) passes. */
async function withDeadline<T>(promise: Promise<T>, deadline: number, message: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message())), Math.max(0, deadline - Date.now()));
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
