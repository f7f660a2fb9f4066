import kafkajs, { type CompressionTypes as KafkaJsCompression, type Kafka, type Message, type Producer } from 'kafkajs';
import type { Compression, OutgoingRecord, ProducerOptions, RecordProducer } from '../facade.js';
import { headersInOrder } from '../ordered-headers.js';

// kafkajs is CommonJS: its enums are not named exports for Node.
const { CompressionTypes } = kafkajs;

const COMPRESSION: Record<Compression, KafkaJsCompression> = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD,
};

/**
 * The facade's producer on kafkajs, acks=all always.
 *
 * - 'bounded': not idempotent (that would demand unlimited internal retries), 5 tries within about
 *   5 s: a send never hangs a flush or a shutdown; the pipeline's retry loop does the rest.
 * - 'idempotent': one request in flight, retries without a count limit within 30 s: the records
 *   land once, in order (dlq replay, rules put).
 */
export class KafkaJsRecordProducer implements RecordProducer {
  private readonly producer: Producer;
  private readonly compression: KafkaJsCompression | undefined;
  private connected = false;

  constructor(kafka: Kafka, options: ProducerOptions) {
    this.compression = options.compression === undefined || options.compression === 'none' ? undefined : COMPRESSION[options.compression];
    this.producer =
      options.delivery === 'idempotent'
        ? kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, retry: { retries: Number.MAX_SAFE_INTEGER, maxRetryTime: 30_000 } })
        : kafka.producer({
            idempotent: false,
            allowAutoTopicCreation: false,
            retry: { retries: 5, maxRetryTime: 5_000 },
            ...(options.maxInFlightRequests === undefined ? {} : { maxInFlightRequests: options.maxInFlightRequests }),
          });
  }

  async connect(): Promise<void> {
    await this.producer.connect();
    this.connected = true;
  }

  async send(topic: string, records: OutgoingRecord[]): Promise<void> {
    await this.producer.send({ topic, acks: -1, messages: records.map(toMessage), ...(this.compression === undefined ? {} : { compression: this.compression }) });
  }

  async disconnect(): Promise<void> {
    if (!this.connected) return;
    this.connected = false;
    await this.producer.disconnect();
  }
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
