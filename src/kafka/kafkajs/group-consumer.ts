import type { Consumer, EachBatchPayload, Kafka } from 'kafkajs';
import type { RecordHeaders } from '../../model/headers.js';
import type { ConsumedBatch, ConsumedMessage, GroupConsumer, OffsetCommit } from '../../pipeline/consumer-port.js';
import { undecodableBatchReason } from '../codecs.js';
import type { GroupConsumerOptions } from '../facade.js';
import { whileTopicIsNew } from '../topics.js';
// Commits and leaves that follow the group coordinator when it moves (kafkajs' own do not).
import './coordinator-fixes.js';
import { CONSUMER_RETRY } from './kafka.js';

/** How long subscribe() asks again while its topic may be too new for the broker asked (see whileTopicIsNew). */
const SUBSCRIBE_NEW_TOPIC_MS = 15_000;

/**
 * The pipeline's group consumer on kafkajs: manual commits, fetches sized to the in-flight budget.
 * kafkajs knows only the eager rebalance protocol and no static membership: the facade
 * (kafkajs/facade.ts) warns about the one and refuses the other before this is made.
 */
export class KafkaJsGroupConsumer implements GroupConsumer {
  private readonly consumer: Consumer;
  /** disconnect() was called: the consumer is not restarted any more. */
  private disconnecting = false;
  /** The last kafkajs run(): settles once the consumer has joined its group (or crashed trying). */
  private started: Promise<void> | undefined;
  private eachBatch: ((batch: ConsumedBatch) => Promise<void>) | undefined;
  private restartTimer: NodeJS.Timeout | undefined;

  constructor(
    kafka: Kafka,
    private readonly options: GroupConsumerOptions,
  ) {
    this.consumer = kafka.consumer({
      groupId: options.group,
      sessionTimeout: options.sessionTimeoutMs,
      rebalanceTimeout: options.rebalanceTimeoutMs,
      heartbeatInterval: options.heartbeatIntervalMs,
      // A fetch response is at most a quarter of the in-flight budget, so that memory stays bounded.
      maxBytes: Math.max(1 << 20, Math.min(10 << 20, Math.floor(options.maxInFlightBytes / 4))),
      // Fewer, larger fetches under a backlog (kafkajs' default is 1 MiB per partition).
      maxBytesPerPartition: Math.max(1 << 20, Math.min(4 << 20, Math.floor(options.maxInFlightBytes / 16))),
      maxWaitTimeInMs: options.maxWaitTimeMs ?? 500,
      allowAutoTopicCreation: false,
      // A crashed consumer is restarted here (see restartAfter), never by kafkajs itself.
      retry: { ...CONSUMER_RETRY, restartOnFailure: async () => false },
    });
    this.consumer.on(this.consumer.events.CRASH, ({ payload }) => {
      if (this.restarts(payload.error)) this.restartAfter(payload.error);
    });
  }

  /** A crash kafkajs would restart after (retries ran out, or a retriable error), unless disconnect() was called. */
  private restarts(error: Error): boolean {
    return !this.disconnecting && restartable(error);
  }

  /**
   * kafkajs restarts a crashed consumer from a timer of its own, and its disconnect() stops
   * neither a restart whose timer has fired (its join goes on after the disconnect, reconnects to
   * the coordinator and leaves that connection open) nor, when a crash comes during disconnect(),
   * the restart it then schedules (a consumer that runs on, unowned). Both kept a `rules put`
   * that had done its work from exiting. Restarted here, the restart's run() is the one
   * disconnect() waits for, and there is none once disconnect() was called.
   */
  private restartAfter(error: Error): void {
    const delayMs = (error as { retryTime?: number }).retryTime ?? CONSUMER_RETRY.initialRetryTime;
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (!this.disconnecting) void this.start().catch(() => undefined);
    }, delayMs);
  }

  connect(): Promise<void> {
    return this.consumer.connect();
  }

  /**
   * kafkajs' subscribe reads the topic's metadata; right after the topic was created (by this
   * worker's start or a peer's) the broker asked may not know it yet, so it is asked again
   * (bounded), as every other first call on a new topic is.
   */
  subscribe(topic: string, fromBeginning: boolean): Promise<void> {
    return whileTopicIsNew(() => this.consumer.subscribe({ topic, fromBeginning }), SUBSCRIBE_NEW_TOPIC_MS);
  }

  run(eachBatch: (batch: ConsumedBatch) => Promise<void>): Promise<void> {
    this.eachBatch = eachBatch;
    return this.start();
  }

  /** kafkajs' run() (again after a crash: kafkajs' own crash handling has disconnected it by then). */
  private start(): Promise<void> {
    const eachBatch = this.eachBatch!;
    this.started = this.consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.options.partitionsConcurrency,
      eachBatch: (payload) => eachBatch(consumedBatch(payload)),
    });
    return this.started;
  }

  pause(topic: string, partitions?: readonly number[]): void {
    this.consumer.pause([partitions === undefined ? { topic } : { topic, partitions: [...partitions] }]);
  }

  resume(topic: string, partitions?: readonly number[]): void {
    this.consumer.resume([partitions === undefined ? { topic } : { topic, partitions: [...partitions] }]);
  }

  commitOffsets(offsets: OffsetCommit[]): Promise<void> {
    return this.consumer.commitOffsets(offsets.map((c) => ({ topic: c.topic, partition: c.partition, offset: c.offset.toString() })));
  }

  /**
   * kafkajs' disconnect does not stop a consumer still joining its group (its run() not settled):
   * the join went on after it and reconnected (see restartAfter). So a join under way is let
   * finish, or fail, first; then the consumer leaves the group and disconnects.
   */
  async disconnect(): Promise<void> {
    this.disconnecting = true;
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    await this.started?.catch(() => undefined);
    await this.consumer.disconnect();
  }

  onGroupJoin(listener: (event: { memberId: string; assignment: Record<string, number[]> }) => void): void {
    this.consumer.on(this.consumer.events.GROUP_JOIN, (event) => listener({ memberId: event.payload.memberId, assignment: event.payload.memberAssignment }));
  }

  onRebalancing(listener: () => void): void {
    this.consumer.on(this.consumer.events.REBALANCING, () => listener());
  }

  onCrash(listener: (event: { error: Error; restart: boolean }) => void): void {
    this.consumer.on(this.consumer.events.CRASH, ({ payload }) => listener({ error: payload.error, restart: this.restarts(payload.error) }));
  }

  /**
   * kafkajs emits END_BATCH_PROCESS for every fetched batch, also one of control records only
   * (transaction markers) that never reaches eachBatch; its lastOffset is the batch's last offset.
   */
  onFetchedThrough(listener: (event: { topic: string; partition: number; nextOffset: bigint }) => void): void {
    this.consumer.on(this.consumer.events.END_BATCH_PROCESS, ({ payload }) =>
      listener({ topic: payload.topic, partition: payload.partition, nextOffset: BigInt(payload.lastOffset) + 1n }),
    );
  }
}

/** What kafkajs itself restarts after: its retries ran out, or the error at the root is retriable. */
function restartable(error: Error): boolean {
  let root: unknown = error;
  while (typeof root === 'object' && root !== null && (root as { cause?: unknown }).cause) root = (root as { cause?: unknown }).cause;
  return error.name === 'KafkaJSNumberOfRetriesExceeded' || (root as { retriable?: unknown }).retriable === true;
}

/**
 * The batch as the pipeline sees it. Our codec wrapper turns a batch that cannot be decompressed
 * into marker records (see codecs.ts): the records before the first marker are delivered, the
 * marker becomes `undecodable`.
 */
function consumedBatch(payload: EachBatchPayload): ConsumedBatch {
  const { batch, resolveOffset, heartbeat, isRunning, isStale } = payload;
  const messages: ConsumedMessage[] = [];
  let undecodable: string | undefined;
  for (const m of batch.messages) {
    undecodable = undecodableBatchReason(m);
    if (undecodable !== undefined) break;
    messages.push({ offset: BigInt(m.offset), key: m.key, value: m.value, headers: m.headers as RecordHeaders | undefined, timestamp: m.timestamp });
  }
  return {
    partition: batch.partition,
    highWatermark: BigInt(batch.highWatermark),
    messages,
    undecodable,
    resolveOffset: (offset) => resolveOffset(offset.toString()),
    heartbeat,
    isRunning,
    isStale,
  };
}
