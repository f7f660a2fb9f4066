import { RetriableError, capReason } from '../errors.js';
import type { DeadLetter, DeadLetterPort } from '../pipeline/consumer-port.js';
import type { HeaderList, KafkaFacade, OutgoingRecord, RecordProducer } from './facade.js';
import { kafkaFailure } from './kafka-errors.js';
import { orderedHeaders } from './ordered-headers.js';
import type { Quarantine } from './quarantine.js';

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

export interface DeadLetterIdentity {
  group: string;
  workerId: string;
}

/** Record batch overhead and per-record framing the size estimate adds (generous, never under). */
const BATCH_OVERHEAD = 128;
const RECORD_OVERHEAD = 32;
const HEADER_OVERHEAD = 10;

interface Outgoing {
  letter: DeadLetter;
  message: OutgoingRecord;
  bytes: number;
}

/**
 * Writes rejected records to a dead-letter topic with their original key, value and headers byte
 * for byte (headers in wire order, repeated keys and null values kept), plus the reason headers.
 * `send` resolves once every letter is safe: acknowledged by the broker (acks=all), or — when
 * the broker refuses it for good (too large, not authorized, topic gone) — quarantined durably
 * on disk. Only then may the caller commit past them. A transient failure rejects with a
 * RetriableError; letters already safe are not sent again on the retry.
 */
export class DeadLetterProducer implements DeadLetterPort {
  private readonly producer: RecordProducer;
  /** The topic's max.message.bytes: sends are split to stay under it. */
  private maxBatchBytes = 1_000_000;

  constructor(
    kafka: KafkaFacade,
    private readonly dlqTopic: string,
    private readonly identity: DeadLetterIdentity,
    private readonly quarantine: Quarantine,
  ) {
    // Not idempotent: that would demand unlimited internal retries, and a send must stay bounded
    // so that an unavailable dead-letter topic delays only its partitions and never a shutdown.
    // Dead letters are at-least-once anyway (a crash between ack and commit repeats them).
    // One request in flight: a partition's dead letters land in the order they were sent.
    this.producer = kafka.producer({ delivery: 'bounded', maxInFlightRequests: 1 });
  }

  /** Connects; `maxMessageBytes` is the dead-letter topic's limit (max.message.bytes). */
  async start(maxMessageBytes: number): Promise<void> {
    this.maxBatchBytes = maxMessageBytes;
    await this.producer.connect();
  }

  async send(letters: DeadLetter[]): Promise<void> {
    const pending = letters.filter((l) => l.outcome === undefined);
    if (pending.length === 0) return;
    const failedAt = new Date().toISOString();
    const outgoing = pending.map((l) => this.outgoing(l, failedAt));
    for (const o of outgoing) {
      if (o.bytes + BATCH_OVERHEAD <= this.maxBatchBytes) continue;
      await this.quarantine.add([o.letter], this.dlqTopic, `DeadLetterTooLarge: about ${o.bytes} bytes, over ${this.dlqTopic}'s max.message.bytes of ${this.maxBatchBytes}`);
      o.letter.outcome = 'quarantined';
    }
    for (const chunk of this.chunks(outgoing.filter((o) => o.letter.outcome === undefined))) await this.deliver(chunk);
  }

  /** Sends one chunk; a permanent refusal is narrowed down to the letters the broker refuses. */
  private async deliver(chunk: Outgoing[]): Promise<void> {
    try {
      await this.producer.send(this.dlqTopic, chunk.map((o) => o.message));
      for (const o of chunk) o.letter.outcome = 'delivered';
      return;
    } catch (e) {
      const failure = kafkaFailure(e);
      // Nothing is committed past a record whose dead letter was not acknowledged.
      if (failure.kind === 'retry') throw new RetriableError(`dead-letter topic ${this.dlqTopic} did not acknowledge: ${(e as Error).message}`, e);
      if (failure.kind === 'unknown') throw e;
      const { refusal } = failure;
      // A refusal of some records of the batch: the others may still be taken.
      if (chunk.length > 1 && failure.scope === 'records') {
        for (const o of chunk) await this.deliver([o]);
        return;
      }
      await this.quarantine.add(
        chunk.map((o) => o.letter),
        this.dlqTopic,
        capReason(`${refusal}: ${this.dlqTopic} refused the dead letter: ${(e as Error).message}`),
      );
      for (const o of chunk) o.letter.outcome = 'quarantined';
    }
  }

  /** Consecutive runs of letters whose estimated batch stays under the topic's limit. */
  private *chunks(outgoing: Outgoing[]): Generator<Outgoing[]> {
    let chunk: Outgoing[] = [];
    let bytes = BATCH_OVERHEAD;
    for (const o of outgoing) {
      if (chunk.length > 0 && bytes + o.bytes > this.maxBatchBytes) {
        yield chunk;
        chunk = [];
        bytes = BATCH_OVERHEAD;
      }
      chunk.push(o);
      bytes += o.bytes;
    }
    if (chunk.length > 0) yield chunk;
  }

  private outgoing(l: DeadLetter, failedAt: string): Outgoing {
    const list: HeaderList = [...orderedHeaders(l.source.headers)];
    list.push(
      [DLQ_HEADERS.topic, l.topic],
      [DLQ_HEADERS.partition, String(l.partition)],
      [DLQ_HEADERS.offset, l.source.offset.toString()],
      [DLQ_HEADERS.connector, this.identity.group],
      [DLQ_HEADERS.task, this.identity.workerId],
      [DLQ_HEADERS.stage, l.stage],
      [DLQ_HEADERS.errorClass, l.error.errorClass],
      [DLQ_HEADERS.message, capReason(l.error.message)],
      [DLQ_HEADERS.failedAt, failedAt],
      [DLQ_HEADERS.worker, this.identity.workerId],
      [DLQ_HEADERS.originalTimestamp, l.source.timestamp],
    );
    let bytes = RECORD_OVERHEAD + (l.source.key?.length ?? 0) + (l.source.value?.length ?? 0);
    for (const [k, v] of list) bytes += HEADER_OVERHEAD + Buffer.byteLength(k) + (v === null ? 0 : typeof v === 'string' ? Buffer.byteLength(v) : v.length);
    return { letter: l, message: { key: l.source.key, value: l.source.value, headers: list }, bytes };
  }

  detail(): string | undefined {
    return this.quarantine.detail();
  }

  close(): Promise<void> {
    return this.producer.disconnect();
  }
}
