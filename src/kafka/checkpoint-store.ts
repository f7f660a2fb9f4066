import type { Logger } from 'pino';
import { RetriableError } from '../errors.js';
import { AckedProducer } from './acked-producer.js';
import { CompactedTable } from './compacted-table.js';
import type { KafkaFacade } from './facade.js';
import type { TopicNeed } from './topics.js';

/** A checkpoint lists up to MAX_OPEN_TRACES traces: the topic takes records far larger than the default 1 MB. */
export const CHECKPOINT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/** How long a newly assigned partition waits to see the previous owner's last checkpoint. */
const CATCH_UP_TIMEOUT_MS = 30_000;

export interface CheckpointStoreOptions {
  topic: string;
  /** Checkpoints are per consumer group: two rule-worker groups on one spans topic keep their own. */
  group: string;
  logger: Logger;
}

/** The checkpoint topic as the rule worker ensures it at start: compacted, taking large checkpoints. */
export function checkpointTopicNeed(topic: string, numPartitions: number): TopicNeed {
  return {
    topic,
    numPartitions,
    configEntries: [
      { name: 'cleanup.policy', value: 'compact' },
      { name: 'max.message.bytes', value: String(CHECKPOINT_MAX_MESSAGE_BYTES) },
    ],
  };
}

/**
 * Per-partition checkpoints of a consumer group in a compacted topic, key
 * `<group>/<source topic>/<partition>`. Every worker follows the whole topic (a global table of
 * its own group's keys) so that a partition it is given comes with the checkpoint its previous
 * owner wrote last: `load` first catches up with the topic's end.
 */
export class CheckpointStore {
  private readonly latest = new Map<string, Buffer>();
  private readonly table: CompactedTable;
  private readonly producer: AckedProducer;

  constructor(
    kafka: KafkaFacade,
    private readonly options: CheckpointStoreOptions,
  ) {
    const prefix = `${options.group}/`;
    this.table = new CompactedTable({
      kafka,
      topic: options.topic,
      logger: options.logger,
      groupPrefix: `${options.group}-checkpoints`,
      onRecord: (key, value) => {
        if (!key.startsWith(prefix)) return;
        if (value === null) this.latest.delete(key);
        else this.latest.set(key, value);
      },
    });
    // No compression by the client: values come compressed already (rules/checkpoint-compression.ts).
    this.producer = new AckedProducer(kafka, 'rule checkpoint');
  }

  async start(): Promise<void> {
    await this.producer.start();
    await this.table.start();
  }

  private key(topic: string, partition: number): string {
    return `${this.options.group}/${topic}/${partition}`;
  }

  /** The last checkpoint written for the partition by any worker of the group, if any. */
  async load(topic: string, partition: number): Promise<Buffer | undefined> {
    try {
      await this.table.catchUp(CATCH_UP_TIMEOUT_MS);
    } catch (e) {
      // The partition waits (retried with backoff, visible in spanledger_sink_retries_total)
      // rather than start without the checkpoint its previous owner may just have written.
      throw new RetriableError(`cannot read ${this.options.topic} to its end: ${(e as Error).message}`, e);
    }
    return this.latest.get(this.key(topic, partition));
  }

  /**
   * Resolves once the broker acknowledged the checkpoint (acks=all). A partition's checkpoints
   * are saved one after another (the pipeline awaits each in the partition's chain), so a retried
   * request can never land an older checkpoint after a newer one of the same key.
   */
  async save(topic: string, partition: number, value: Buffer): Promise<void> {
    const key = this.key(topic, partition);
    await this.producer.send(this.options.topic, [{ key, value }]);
    this.latest.set(key, value);
  }

  async close(): Promise<void> {
    await this.producer.close();
    await this.table.close();
  }
}
