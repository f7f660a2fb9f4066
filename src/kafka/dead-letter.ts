import type { Kafka, Producer, IHeaders } from 'kafkajs';
import type { RecordRejectedError } from '../errors.js';
import { RetriableError } from '../errors.js';
import type { SourceMessage } from '../batching/partition-batch.js';

/**
 * Header names follow Kafka Connect's dead-letter convention (`__connect.errors.*`), which
 * users' tools already know how to show; spanledger adds its own under `spanledger.dlq.*`.
 */
export const DLQ_HEADERS = {
  topic: '__connect.errors.topic',
  partition: '__connect.errors.partition',
  offset: '__connect.errors.offset',
  connector: '__connect.errors.connector.name',
  task: '__connect.errors.task.id',
  stage: '__connect.errors.stage',
  errorClass: '__connect.errors.class.name',
  message: '__connect.errors.exception.message',
  failedAt: 'spanledger.dlq.failed.at',
  worker: 'spanledger.dlq.worker',
  originalTimestamp: 'spanledger.dlq.original.timestamp',
} as const;

export interface DeadLetter {
  topic: string;
  partition: number;
  source: SourceMessage;
  error: RecordRejectedError;
  /** Where in the pipeline it failed: DECODE (bad input) or a sink's name. */
  stage: string;
}

/**
 * Writes rejected records to a dead-letter topic with their original key, value and headers.
 * `send` resolves only once the broker has acknowledged every record (acks=all, idempotent
 * producer), so the caller may then commit the source offsets.
 */
export class DeadLetterProducer {
  private readonly producer: Producer;
  private connected = false;

  constructor(
    kafka: Kafka,
    private readonly dlqTopic: string,
    private readonly identity: { group: string; workerId: string },
  ) {
    // Idempotent, acks=all: kafkajs wants unlimited retries for that; a send that keeps failing is
    // still bounded by the worker's graceful-stop timeout.
    this.producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: true,
      retry: { retries: Number.MAX_SAFE_INTEGER, maxRetryTime: 30_000 },
    });
  }

  async start(): Promise<void> {
    await this.producer.connect();
    this.connected = true;
  }

  async send(letters: DeadLetter[]): Promise<void> {
    if (letters.length === 0) return;
    const failedAt = new Date().toISOString();
    const messages = letters.map((l) => {
      const headers: IHeaders = { ...l.source.headers };
      headers[DLQ_HEADERS.topic] = l.topic;
      headers[DLQ_HEADERS.partition] = String(l.partition);
      headers[DLQ_HEADERS.offset] = l.source.offset.toString();
      headers[DLQ_HEADERS.connector] = this.identity.group;
      headers[DLQ_HEADERS.task] = this.identity.workerId;
      headers[DLQ_HEADERS.stage] = l.stage;
      headers[DLQ_HEADERS.errorClass] = l.error.errorClass;
      headers[DLQ_HEADERS.message] = l.error.message;
      headers[DLQ_HEADERS.failedAt] = failedAt;
      headers[DLQ_HEADERS.worker] = this.identity.workerId;
      headers[DLQ_HEADERS.originalTimestamp] = l.source.timestamp;
      return { key: l.source.key, value: l.source.value, headers };
    });
    try {
      await this.producer.send({ topic: this.dlqTopic, messages, acks: -1 });
    } catch (e) {
      // Nothing is committed past a record whose dead letter was not acknowledged.
      throw new RetriableError(`dead-letter topic ${this.dlqTopic} did not acknowledge: ${(e as Error).message}`, e);
    }
  }

  async close(): Promise<void> {
    if (!this.connected) return;
    this.connected = false;
    await this.producer.disconnect();
  }
}
