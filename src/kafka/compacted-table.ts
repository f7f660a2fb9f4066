import { randomUUID } from 'node:crypto';
import type { Admin, Batch, Consumer, Kafka } from 'kafkajs';
import { backOff } from 'exponential-backoff';
import type { Logger } from 'pino';
import { ensureTopics } from './topics.js';
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
  kafka: Kafka;
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

/** The topic a table follows does not exist. */
export class TopicNotFoundError extends Error {
  constructor(readonly topic: string) {
    super(`topic ${topic} does not exist`);
    this.name = 'TopicNotFoundError';
  }
}

/** A partition's end offset (high watermark) and, if known, its start offset, as admin.fetchTopicOffsets reports them. */
export interface PartitionEnd {
  partition: number;
  high: string;
  low?: string;
}

/**
 * Per partition, the offset of the next record to hand over. Pure: the caught-up logic of
 * CompactedTable, testable without a broker.
 */
export class PartitionPositions {
  private readonly next = new Map<number, bigint>();

  /** Whether the record at `offset` is yet to be handed over (a rebalance can deliver it again). */
  isNew(partition: number, offset: string): boolean {
    return BigInt(offset) >= (this.next.get(partition) ?? 0n);
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
      const end = BigInt(high);
      // A partition with no record left (start offset = end offset) has nothing to hand over.
      if (at < end && !(low !== undefined && BigInt(low) >= end)) out.push({ partition, at, end });
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
 * kafkajs cannot assign partitions by hand, so the table is the only member of a consumer group
 * of its own (a throwaway id), reads from the beginning and never commits. A rebalance (say, a
 * partition added) makes kafkajs read from the beginning again: records already handed over are
 * skipped by offset, so each is handed over once, in order.
 */
export class CompactedTable {
  readonly topic: string;
  readonly groupId: string;
  private readonly kafka: Kafka;
  private readonly onRecord: OnRecord;
  private readonly logger: Logger;
  private readonly options: CompactedTableOptions;
  private readonly positions = new PartitionPositions();
  private waiters: Waiter[] = [];
  private admin: Admin | undefined;
  private consumer: Consumer | undefined;
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
    const closed = async (consumer?: Consumer): Promise<boolean> => {
      if (this.state !== 'closed') return false;
      await this.release(admin, consumer);
      return true;
    };
    await admin.connect();
    if (await closed()) return;
    if (this.options.create) {
      await ensureTopics(this.kafka, [{ topic: this.topic, ...this.options.create }]);
    } else if (!(await admin.listTopics()).includes(this.topic)) {
      throw new TopicNotFoundError(this.topic);
    }
    if (await closed()) return;
    const consumer = this.kafka.consumer({ groupId: this.groupId, allowAutoTopicCreation: false, maxWaitTimeInMs: this.options.maxWaitTimeInMs ?? 500 });
    this.consumer = consumer;
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      if (payload.restart) {
        this.logger.warn({ err: payload.error }, 'compacted table consumer crashed; kafkajs restarts it');
        return;
      }
      this.fail(payload.error);
    });
    // A batch of control records only (transaction markers) never reaches eachBatch: its end still counts.
    consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
      if (payload.topic === this.topic) this.advance(payload.partition, BigInt(payload.lastOffset) + 1n);
    });
    await consumer.connect();
    if (await closed(consumer)) return;
    await consumer.subscribe({ topic: this.topic, fromBeginning: true });
    await consumer.run({ autoCommit: false, eachBatch: async ({ batch }) => this.handBatch(batch) });
    await closed(consumer);
  }

  private handBatch(batch: Batch): void {
    const { partition } = batch;
    for (const message of batch.messages) {
      if (!this.positions.isNew(partition, message.offset)) continue;
      const key = tableKey(message.key);
      if (key === '') this.logger.warn({ partition, offset: message.offset }, 'record without a usable key (missing, empty or not UTF-8)');
      try {
        this.onRecord(key, message.value, { partition, offset: message.offset, timestamp: Number(message.timestamp) });
      } catch (e) {
        this.logger.error({ err: e, partition, offset: message.offset }, 'compacted table callback failed on a record; the record is passed over');
      }
      this.positions.advance(partition, BigInt(message.offset) + 1n);
    }
    this.advance(partition, BigInt(batch.lastOffset()) + 1n);
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
  private async release(admin: Admin, consumer: Consumer | undefined): Promise<void> {
    if (consumer) {
      await consumer.disconnect().catch((e: unknown) => this.logger.warn({ err: e }, 'compacted table consumer did not disconnect cleanly'));
      await admin.deleteGroups([this.groupId]).catch((e: unknown) => this.logger.debug({ err: e }, 'throwaway consumer group not deleted'));
    }
    await admin.disconnect().catch(() => undefined);
  }
}

/** `promise`, or a rejection with `message()` once `deadline` (ms since the epoch) passes. */
/**
 * The topic's end offsets. Right after a topic is created (by this worker's start or another's)
 * the broker may answer "not the leader" or "topic unknown" for a moment: what Kafka's classifier
 * (kafka-errors.ts) calls `retry` is retried with backoff while `mayRetry()`; anything else fails at once.
 */
export function endOffsets(admin: Pick<Admin, 'fetchTopicOffsets'>, topic: string, mayRetry: () => boolean): Promise<PartitionEnd[]> {
  return backOff(() => admin.fetchTopicOffsets(topic), {
    numOfAttempts: Number.MAX_SAFE_INTEGER,
    startingDelay: 50,
    maxDelay: 1_000,
    jitter: 'full',
    retry: (e: unknown) => kafkaFailure(e, { topicMayBeNew: true }).kind === 'retry' && mayRetry(),
  }).then((offsets) => offsets.map(({ partition, high, low }) => ({ partition, high, low })));
}


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
