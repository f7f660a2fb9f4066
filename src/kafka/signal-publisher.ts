import type { Kafka } from 'kafkajs';
import type { Logger } from 'pino';
import type { SignalPublisher, SignalRecord } from '../rules/rule-stage-ports.js';
import { AckedProducer, MAX_REQUEST_BYTES } from './acked-producer.js';
import { ensureTopics } from './client.js';

export interface KafkaSignalPublisherOptions {
  /** The signals topic, created at start when missing. */
  topic: string;
  /** Partitions of the signals topic when spanledger creates it. */
  partitions: number;
  logger: Logger;
}

/**
 * The rule stage's signal producer on Kafka: an AckedProducer (acks=all; its failures classified
 * there), after making sure the signals topic exists.
 */
export class KafkaSignalPublisher implements SignalPublisher {
  readonly maxRequestBytes = MAX_REQUEST_BYTES;
  private readonly producer: AckedProducer;

  constructor(
    private readonly kafka: Kafka,
    private readonly options: KafkaSignalPublisherOptions,
  ) {
    this.producer = new AckedProducer(kafka, 'signals');
  }

  async start(): Promise<void> {
    const { options } = this;
    const admin = this.kafka.admin();
    await admin.connect();
    try {
      const created = await ensureTopics(admin, [{ topic: options.topic, numPartitions: options.partitions }]);
      if (created.length > 0) options.logger.info({ topics: created }, 'created missing topics');
    } finally {
      await admin.disconnect();
    }
    await this.producer.start();
  }

  publish(topic: string, records: SignalRecord[]): Promise<void> {
    return this.producer.send(topic, records);
  }

  close(): Promise<void> {
    return this.producer.close();
  }
}
