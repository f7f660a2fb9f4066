import { murmur2, ProduceAcks, Producer, ProtocolError, type MessageToProduce, type ProducerOptions as PlatformaticProducerOptions } from '@platformatic/kafka';
import type { HeaderValue } from '../../model/headers.js';
import type { HeaderList, KafkaFacadeOptions, OutgoingRecord, ProducerOptions, RecordProducer } from '../facade.js';
import { JavaCompatiblePartitioner } from '../partitioner.js';
import { logClientEvents, platformaticBaseOptions, retryDelay } from './options.js';

/** What this adapter hands to @platformatic/kafka: bytes only (no serializers), header values may be null. */
type Key = Buffer | undefined;
type Value = Buffer | null;
type HeaderKey = Buffer;
type PlatformaticHeaderValue = Buffer | null;
export type PlatformaticMessage = MessageToProduce<Key, Value, HeaderKey, PlatformaticHeaderValue>;
type BytesProducer = Producer<Key, Value, HeaderKey, PlatformaticHeaderValue>;

/**
 * Retries of one send. 'bounded': 5 tries within about 5 s (delays 250, 500, 1000, 2000 ms plus the
 * requests), then the send rejects and the pipeline's own retry loop takes over. 'idempotent':
 * about 30 s of delays (250, 500, 1000, then 2000 ms each), the idempotent producer keeping order.
 */
export const BOUNDED_RETRIES = 4;
export const IDEMPOTENT_RETRIES = 17;

/**
 * A RecordProducer on @platformatic/kafka: acks=all on every send (the client's default would be
 * the leader's ack only), the Java/kafkajs partitioner for keyed records, headers written in the
 * given order with repeated names and null values (see `headersInWireOrder`).
 */
export class PlatformaticProducer implements RecordProducer {
  private readonly producer: BytesProducer;
  private readonly partitioner = new JavaCompatiblePartitioner(murmur2);
  private closed = false;

  constructor(
    client: KafkaFacadeOptions,
    private readonly options: ProducerOptions,
  ) {
    const idempotent = options.delivery === 'idempotent';
    const producerOptions: PlatformaticProducerOptions<Key, Value, HeaderKey, PlatformaticHeaderValue> = {
      ...platformaticBaseOptions(client, idempotent ? 'idempotent-producer' : 'producer'),
      idempotent,
      acks: ProduceAcks.ALL,
      retries: idempotent ? IDEMPOTENT_RETRIES : BOUNDED_RETRIES,
      retryDelay,
      autocreateTopics: false,
      compression: options.compression ?? 'none',
      partitioner: (message, key) => this.partitioner.partition(message.topic, key),
    };
    // The idempotent producer keeps one request in flight itself (the client forces maxInflights 1).
    if (!idempotent && options.maxInFlightRequests !== undefined) producerOptions.maxInflights = options.maxInFlightRequests;
    this.producer = new Producer(producerOptions);
    logClientEvents(this.producer, client.logger);
  }

  async connect(): Promise<void> {
    // The client connects lazily; asking the broker now makes a wrong address fail here, not at the first send.
    if (this.options.delivery === 'idempotent') await this.producer.initIdempotentProducer({});
    else await this.producer.listApis();
  }

  async send(topic: string, records: OutgoingRecord[]): Promise<void> {
    if (records.length === 0) return;
    if (records.some((r) => r.partition !== undefined)) await this.checkPartitions(topic, records);
    await this.producer.send({ messages: records.map((r) => toPlatformaticMessage(topic, r)), acks: ProduceAcks.ALL });
  }

  /**
   * The client takes an explicit partition modulo the topic's partition count (Producer#performSend):
   * partition 4 of a 3-partition topic would silently land on partition 1. Refused here instead,
   * as the broker answers a produce to a partition it does not have.
   */
  private async checkPartitions(topic: string, records: OutgoingRecord[]): Promise<void> {
    const metadata = await this.producer.metadata({ topics: [topic] });
    const count = metadata.topics.get(topic)?.partitionsCount ?? 0;
    const outside = records.find((r) => r.partition !== undefined && (r.partition < 0 || r.partition >= count || !Number.isInteger(r.partition)));
    if (outside !== undefined) throw new ProtocolError('UNKNOWN_TOPIC_OR_PARTITION', `${topic} has no partition ${outside.partition} (it has ${count})`);
  }

  async disconnect(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.producer.close();
  }
}

/** One record as @platformatic/kafka writes it: strings become UTF-8 bytes, a null value stays null (a tombstone). */
export function toPlatformaticMessage(topic: string, record: OutgoingRecord): PlatformaticMessage {
  const message: PlatformaticMessage = { topic, key: bytesOrUndefined(record.key), value: record.value === null ? null : toBytes(record.value) };
  if (record.headers !== undefined && record.headers.length > 0) message.headers = headersInWireOrder(record.headers);
  if (record.partition !== undefined) message.partition = record.partition;
  if (record.timestamp !== undefined) message.timestamp = BigInt(record.timestamp);
  return message;
}

/**
 * Headers for @platformatic/kafka in wire order, repeated names and null values kept. The client
 * takes headers as a Map and copies them into a new Map keyed by the (serialized) header name
 * before writing them (Producer#send), which would fold repeated names into one. Its serializers
 * are the identity here, so a name that is a distinct Buffer object per header is a distinct Map
 * key: every header survives, in insertion order, and the record encoder writes each key as its
 * bytes and a null value as length -1 (protocol/records.js createRecord).
 */
export function headersInWireOrder(headers: HeaderList): Map<HeaderKey, PlatformaticHeaderValue> {
  const map = new Map<HeaderKey, PlatformaticHeaderValue>();
  for (const [name, value] of headers) map.set(Buffer.from(name, 'utf8'), headerBytes(value));
  return map;
}

function headerBytes(value: HeaderValue): Buffer | null {
  return value === null ? null : toBytes(value);
}

function toBytes(value: Buffer | string): Buffer {
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
}

function bytesOrUndefined(value: Buffer | string | null | undefined): Buffer | undefined {
  return value === null || value === undefined ? undefined : toBytes(value);
}
