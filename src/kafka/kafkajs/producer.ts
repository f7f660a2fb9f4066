import kafkajsMurmur2 from 'kafkajs/src/producer/partitioners/default/murmur2.js';
import kafkajs, { type Admin, type CompressionTypes as KafkaJsCompression, type Kafka, type Message, type Producer, type RetryOptions } from 'kafkajs';
import { CodecError } from '../codecs.js';
import type { Compression, OutgoingRecord, ProducerOptions, RecordProducer } from '../facade.js';
import { headersInOrder } from '../ordered-headers.js';
import { JavaCompatiblePartitioner, PartitionCounts, PartitionOutOfRange, recordsByPartition, sendPerPartition } from '../partitioner.js';

// kafkajs is CommonJS: its enums and error classes are not named exports for Node.
const { CompressionTypes, KafkaJSProtocolError } = kafkajs;

const COMPRESSION: Record<Compression, KafkaJsCompression> = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD,
};

/**
 * The facade's producer on kafkajs, acks=all always, one kafkajs send() per partition: kafkajs
 * 2.2.4 loses acknowledged records when one send() spans several brokers and a leader dies during
 * it (tulios/kafkajs#1303; see `sendPerPartition`). So the adapter picks each record's partition
 * itself, as kafkajs' DefaultPartitioner would (murmur2 of the key, Java-compatible), from the
 * topic's partition count (fetched by an admin client of its own, kept a while, asked again after
 * a failed send), and sends every partition's records as a send() of its own, side by side.
 *
 * - 'bounded': not idempotent (that would demand unlimited internal retries), 5 tries within about
 *   5 s: a send never hangs a flush or a shutdown; the pipeline's retry loop does the rest.
 * - 'idempotent': one request in flight, 10 tries after the first, about 26 s of delays (0.1 s
 *   doubling to 5 s): the records land once, in order (dlq replay, rules put). kafkajs' own
 *   default for an idempotent producer retries without end (the wait between tries capped, not
 *   the count), so a command sending to a cluster that stays unreachable never finished.
 */
export class KafkaJsRecordProducer implements RecordProducer {
  private readonly producer: Producer;
  private readonly compression: KafkaJsCompression | undefined;
  private readonly metadataAdmin: Admin;
  private readonly partitionCounts: PartitionCounts;
  private readonly unkeyed = new JavaCompatiblePartitioner(kafkajsMurmur2);
  private readonly metadataRetryMs: number;
  private adminConnecting: Promise<void> | undefined;
  private connected = false;

  constructor(kafka: Kafka, options: ProducerOptions) {
    // codecs.ts has no zstd compressor for kafkajs (fzstd only decompresses): refused here, at
    // once, rather than failing every send (kafkajs would retry the codec's error) or silently
    // writing uncompressed batches.
    if (options.compression === 'zstd') throw new CodecError('zstd compression needs KAFKA_CLIENT=platformatic: the kafkajs client here can read zstd batches but not write them');
    this.compression = options.compression === undefined || options.compression === 'none' ? undefined : COMPRESSION[options.compression];
    // Over the client's retry settings (kafka.ts): 0.1 s doubling.
    const retry: RetryOptions = options.delivery === 'idempotent' ? { retries: 10, maxRetryTime: 5_000 } : { retries: 5, maxRetryTime: 5_000 };
    this.producer =
      options.delivery === 'idempotent'
        ? kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, retry })
        : kafka.producer({
            idempotent: false,
            allowAutoTopicCreation: false,
            retry,
            ...(options.maxInFlightRequests === undefined ? {} : { maxInFlightRequests: options.maxInFlightRequests }),
          });
    this.metadataAdmin = kafka.admin({ retry: { retries: 5, maxRetryTime: 5_000 } });
    this.metadataRetryMs = options.delivery === 'idempotent' ? 30_000 : 5_000;
    this.partitionCounts = new PartitionCounts((topic) => this.fetchPartitionCount(topic));
  }

  async connect(): Promise<void> {
    this.connected = true;
    await this.producer.connect();
    await this.adminConnected();
  }

  async send(topic: string, records: OutgoingRecord[]): Promise<void> {
    if (records.length === 0) return;
    try {
      const partitionCount = await this.partitionCounts.get(topic);
      let byPartition: Map<number, OutgoingRecord[]>;
      try {
        byPartition = recordsByPartition(topic, records, partitionCount, () => this.unkeyed.nextTurn(topic), kafkajsMurmur2);
      } catch (e) {
        // As the broker answers a produce to a partition it does not have (kafkajs itself would
        // find no leader for it and fail with "Producing to topic without metadata").
        if (e instanceof PartitionOutOfRange) throw new KafkaJSProtocolError({ message: e.message, type: 'UNKNOWN_TOPIC_OR_PARTITION', code: 3, retriable: false } as unknown as Error);
        throw e;
      }
      await sendPerPartition(byPartition, (_partition, partitionRecords) =>
        this.producer.send({ topic, acks: -1, messages: partitionRecords.map(toMessage), ...(this.compression === undefined ? {} : { compression: this.compression }) }).then(() => undefined),
      );
    } catch (e) {
      // The topic may have been recreated or grown: the next send asks again.
      this.partitionCounts.forget(topic);
      throw e;
    }
  }

  async disconnect(): Promise<void> {
    if (!this.connected) return;
    this.connected = false;
    this.adminConnecting = undefined;
    await Promise.all([this.producer.disconnect(), this.metadataAdmin.disconnect()]);
  }

  private adminConnected(): Promise<void> {
    this.connected = true;
    this.adminConnecting ??= this.metadataAdmin.connect().catch((e: unknown) => {
      this.adminConnecting = undefined;
      throw e;
    });
    return this.adminConnecting;
  }

  /**
   * The topic's partition count. Right after a topic is created the broker may not know it yet
   * (UNKNOWN_TOPIC_OR_PARTITION, which kafkajs' metadata call does not retry) or have no leader
   * for a partition (LEADER_NOT_AVAILABLE: kafkajs' answer parser then drops the whole answer):
   * asked again with backoff within the time a send retries (5 s 'bounded', 30 s 'idempotent'),
   * as kafkajs' own send did; then the last error stands (a topic that does not exist is refused
   * as UNKNOWN_TOPIC_OR_PARTITION, see kafka-errors.ts).
   */
  private async fetchPartitionCount(topic: string): Promise<number> {
    await this.adminConnected();
    const deadline = Date.now() + this.metadataRetryMs;
    for (let delayMs = 50; ; delayMs = Math.min(delayMs * 2, 1_000)) {
      try {
        const metadata = await this.metadataAdmin.fetchTopicMetadata({ topics: [topic] });
        const count = metadata.topics.find((t) => t.name === topic)?.partitions.length ?? 0;
        if (count === 0) throw new KafkaJSProtocolError({ message: `no metadata for topic ${topic}`, type: 'UNKNOWN_TOPIC_OR_PARTITION', code: 3, retriable: true } as unknown as Error);
        return count;
      } catch (e) {
        if (!metadataMayCome(e) || Date.now() + delayMs > deadline) throw e;
      }
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}

/** A metadata answer that a new topic or a leader election explains: worth asking again. */
function metadataMayCome(error: unknown): boolean {
  for (let e = error, depth = 0; typeof e === 'object' && e !== null && depth < 5; depth += 1) {
    const { type, originalError, cause } = e as { type?: unknown; originalError?: unknown; cause?: unknown };
    if (type === 'UNKNOWN_TOPIC_OR_PARTITION' || type === 'LEADER_NOT_AVAILABLE') return true;
    e = originalError ?? cause;
  }
  return false;
}

/** A record as kafkajs takes it: headers through our patch (ordered-headers.ts), written in this order. */
function toMessage(r: OutgoingRecord): Message {
  return {
    key: r.key ?? null,
    value: r.value,
    ...(r.headers === undefined ? {} : { headers: headersInOrder(r.headers) }),
    ...(r.partition === undefined ? {} : { partition: r.partition }),
    ...(r.timestamp === undefined ? {} : { timestamp: r.timestamp }),
  };
}
