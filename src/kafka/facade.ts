import type { Logger } from 'pino';
import type { HeaderValue } from '../model/headers.js';
import type { GroupConsumer } from '../pipeline/consumer-port.js';

/**
 * The one small Kafka facade spanledger talks through: a group consumer (the pipeline's port), a
 * producer and an admin client. Two thin adapters implement it: @platformatic/kafka (the default)
 * and kafkajs (KAFKA_CLIENT=kafkajs). Nothing outside src/kafka knows which one runs; code outside
 * src/kafka gets a KafkaFacade from `createKafkaFacade` (kafka/client.ts) and nothing else.
 */
export const KAFKA_CLIENTS = ['platformatic', 'kafkajs'] as const;
export type KafkaClientKind = (typeof KAFKA_CLIENTS)[number];

/** How a group rebalances: KIP-429 cooperative-sticky (partitions that stay keep flowing) or eager (every partition stops). */
export const REBALANCE_PROTOCOLS = ['cooperative', 'eager'] as const;
export type RebalanceProtocol = (typeof REBALANCE_PROTOCOLS)[number];

export interface KafkaFacadeOptions {
  brokers: string[];
  clientId: string;
  logger: Logger;
}

export interface KafkaFacade {
  readonly kind: KafkaClientKind;
  /** A consumer group member: manual commits only (no auto-commit), per-partition pause/resume. */
  groupConsumer(options: GroupConsumerOptions): GroupConsumer;
  producer(options: ProducerOptions): RecordProducer;
  admin(): KafkaAdmin;
}

export interface GroupConsumerOptions {
  group: string;
  sessionTimeoutMs: number;
  rebalanceTimeoutMs: number;
  heartbeatIntervalMs: number;
  /** The reader's memory budget: fetch sizes are derived from it (a fetch response is at most a quarter). */
  maxInFlightBytes: number;
  /** How many partitions' batches may be handled at once. */
  partitionsConcurrency: number;
  /** Longest a fetch waits on the broker for new records (ms). Default 500. */
  maxWaitTimeMs?: number;
  /** KIP-345 static membership: a restart under the same id keeps its partitions within the session timeout. */
  groupInstanceId?: string;
  /** Default 'cooperative' where the client has it (kafkajs knows only 'eager'). */
  rebalanceProtocol?: RebalanceProtocol;
}

/** A header list in wire order: repeated keys, their order and null values are kept. */
export type HeaderList = Array<[string, HeaderValue]>;

export interface OutgoingRecord {
  key?: Buffer | string | null;
  value: Buffer | string | null;
  headers?: HeaderList;
  /** When set, the record goes to this partition; else the client's partitioner picks one by key. */
  partition?: number;
  /** The record's timestamp, ms since the epoch (decimal string); else the time of sending. */
  timestamp?: string;
}

/** 'zstd' only with @platformatic/kafka: the kafkajs adapter reads zstd but refuses a zstd producer (codecs.ts). */
export type Compression = 'none' | 'gzip' | 'snappy' | 'lz4' | 'zstd';

export interface ProducerOptions {
  /**
   * 'bounded': a send gives up after a few tries within about 5 s (the pipeline's retry loop,
   * with backoff and metrics, does the rest; a send never hangs a flush or a shutdown).
   * 'idempotent': an idempotent producer, one request in flight, retrying for up to 30 s: what
   * CLI commands use to land records once, in order (dlq replay, rules put, produce --ordered).
   */
  delivery: 'bounded' | 'idempotent';
  compression?: Compression;
  /** Requests in flight at once for 'bounded' (default: no limit). */
  maxInFlightRequests?: number;
}

export interface RecordProducer {
  connect(): Promise<void>;
  /** acks=all: resolves once every replica in sync has the records. Rejects with the client's own error (classified by kafka-errors.ts). */
  send(topic: string, records: OutgoingRecord[]): Promise<void>;
  /** Idempotent. */
  disconnect(): Promise<void>;
}

export interface TopicSpec {
  topic: string;
  numPartitions: number;
  /** Default: the broker's default.replication.factor. */
  replicationFactor?: number;
  configEntries?: Array<{ name: string; value: string }>;
}

export interface PartitionOffsets {
  partition: number;
  /** The log start offset. */
  low: bigint;
  /** The high watermark (the next offset to be written). */
  high: bigint;
}

export interface CommittedOffset {
  topic: string;
  partition: number;
  /** The next offset to read; null when the group committed none for the partition. */
  offset: bigint | null;
}

export interface GroupMember {
  memberId: string;
  clientId: string;
  clientHost: string;
  /**
   * Static membership id (KIP-345), when the member has one; also null when the client cannot
   * tell (kafkajs' DescribeGroups v2 does not carry it).
   */
  groupInstanceId: string | null;
  /** Partitions per topic. */
  assignment: Record<string, number[]>;
}

export interface GroupDescription {
  group: string;
  /** As the broker says it: Stable, PreparingRebalance, CompletingRebalance, Empty, Dead, Unknown. */
  state: string;
  members: GroupMember[];
}

export interface KafkaAdmin {
  connect(): Promise<void>;
  /** Idempotent. */
  disconnect(): Promise<void>;
  listTopics(): Promise<string[]>;
  /** Creates the topics; one that already exists (made by someone else at the same moment) is not an error. */
  createTopics(topics: TopicSpec[]): Promise<void>;
  /** Each topic's partitions with their leader broker id (-1 while leaderless); a topic unknown to the broker is absent. */
  topicPartitions(topics: string[]): Promise<Map<string, Array<{ partition: number; leader: number }>>>;
  /** The named configs of each topic (its override, else the broker's default). */
  topicConfigs(topics: string[], names: string[]): Promise<Map<string, Map<string, string>>>;
  /** Start and end offsets of every partition of the topic, by partition. */
  topicOffsets(topic: string): Promise<PartitionOffsets[]>;
  /** The group's committed offsets: of `topics`, or of every topic it committed to when omitted. */
  committedOffsets(group: string, topics?: string[]): Promise<CommittedOffset[]>;
  describeGroups(groups: string[]): Promise<GroupDescription[]>;
  /** Groups that do not exist are not an error. */
  deleteGroups(groups: string[]): Promise<void>;
}
