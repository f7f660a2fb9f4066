import type { SignalPublisher, SignalRecord } from '../rules/rule-stage-ports.js';
import { AckedProducer, MAX_REQUEST_BYTES } from './acked-producer.js';
import type { KafkaFacade } from './facade.js';

/**
 * The rule stage's signal producer on Kafka: an AckedProducer (acks=all; its failures classified
 * by the Kafka classifier). The rule worker ensures the signals topic at start (kafka/topics.ts).
 */
export class KafkaSignalPublisher implements SignalPublisher {
  readonly maxRequestBytes = MAX_REQUEST_BYTES;
  private readonly producer: AckedProducer;

  constructor(kafka: KafkaFacade) {
    this.producer = new AckedProducer(kafka, 'signals');
  }

  start(): Promise<void> {
    return this.producer.start();
  }

  publish(topic: string, records: SignalRecord[]): Promise<void> {
    return this.producer.send(
      topic,
      records.map((r) => ({ key: r.key, value: r.value, headers: Object.entries(r.headers) })),
    );
  }

  close(): Promise<void> {
    return this.producer.close();
  }
}
