import type { RecordRejectedError } from '../errors.js';
import type { SourceMessage } from './partition-batch.js';
import type { RecordHeaders } from '../model/headers.js';

/**
 * A record as the group consumer delivers it. Offsets are bigints from here to the commit: the
 * Kafka adapter converts its client's form once.
 */
export interface ConsumedMessage {
  offset: bigint;
  key: Buffer | null;
  value: Buffer | null;
  headers?: RecordHeaders;
  timestamp: string;
}

/** One fetched batch of one partition, with the calls that act on the fetch it came from. */
export interface ConsumedBatch {
  partition: number;
  highWatermark: bigint;
  /** In offset order. */
  messages: ConsumedMessage[];
  /**
   * Set when the partition's log holds, right after `messages`, a batch that cannot be
   * decompressed (codec missing, corrupt data): why. Nothing at or past it can be read here.
   */
  undecodable?: string;
  /** The record is in custody: the next fetch starts after it. Not a commit. */
  resolveOffset(offset: bigint): void;
  heartbeat(): Promise<void>;
  /** False once the consumer stops. */
  isRunning(): boolean;
  /** True once a rebalance made this batch's fetch obsolete. */
  isStale(): boolean;
}

export interface OffsetCommit {
  topic: string;
  partition: number;
  /** The next offset to read. */
  offset: bigint;
}

/**
 * What the pipeline needs from a consumer group member (kafkajs' Consumer in production, a
 * scripted fake in tests). Offsets are committed only through `commitOffsets`: no auto-commit.
 */
export interface GroupConsumer {
  connect(): Promise<void>;
  subscribe(topic: string, fromBeginning: boolean): Promise<void>;
  /** Starts fetching; `eachBatch` is called per partition batch, one at a time per partition. */
  run(eachBatch: (batch: ConsumedBatch) => Promise<void>): Promise<void>;
  /** Stops fetching the topic's `partitions` (all of them when omitted) until resumed, across assignments too. */
  pause(topic: string, partitions?: readonly number[]): void;
  resume(topic: string, partitions?: readonly number[]): void;
  commitOffsets(offsets: OffsetCommit[]): Promise<void>;
  disconnect(): Promise<void>;
  /** This member joined the group: its partitions per topic. */
  onGroupJoin(listener: (event: { memberId: string; assignment: Record<string, number[]> }) => void): void;
  /** The group started rebalancing: partitions may move to another member. */
  onRebalancing(listener: () => void): void;
  /** The consumer crashed; `restart`: it restarts by itself, otherwise it is gone. */
  onCrash(listener: (event: { error: Error; restart: boolean }) => void): void;
  /**
   * The partition's log was read through `nextOffset` (exclusive), control records (transaction
   * markers) included, even when no record of it reached `run`'s callback: how a reader of a
   * compacted topic knows it has caught up with the end offsets.
   */
  onFetchedThrough?(listener: (event: { topic: string; partition: number; nextOffset: bigint }) => void): void;
  /**
   * Bytes of records this consumer fetched ahead and holds, not yet given to `run`'s callback (a
   * footprint as recordFootprint counts it). The pipeline counts them against MAX_IN_FLIGHT_BYTES
   * with the records in its custody; pausing a partition must drop what is held for it. Absent:
   * the consumer holds nothing ahead.
   */
  heldBytes?(): number;
}

export interface DeadLetter {
  topic: string;
  partition: number;
  source: SourceMessage;
  error: RecordRejectedError;
  /** Where in the pipeline it failed: DECODE (bad input) or a sink's name. */
  stage: string;
  /** Set once the dead letter is safe: acknowledged by the topic, or quarantined on disk. */
  outcome?: 'delivered' | 'quarantined';
}

/** Where the pipeline sends records that can never be stored (DeadLetterProducer in production). */
export interface DeadLetterPort {
  /** `maxMessageBytes`: the dead-letter topic's max.message.bytes (sends are split under it). */
  start(maxMessageBytes: number): Promise<void>;
  /**
   * Resolves once every letter is safe (each gets its `outcome`); letters already safe are not
   * sent again. A transient failure rejects with a RetriableError.
   */
  send(letters: DeadLetter[]): Promise<void>;
  close(): Promise<void>;
  /** A condition an operator should see on /readyz (e.g. quarantined letters), if any. */
  detail(): string | undefined;
}
