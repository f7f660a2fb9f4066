import { Kafka, logLevel as KafkaLogLevel, type Admin, type LogEntry } from 'kafkajs';
import type { Logger } from 'pino';
// Registers the snappy, lz4 and zstd codecs with kafkajs before any client exists.
import './codecs.js';

/** A kafkajs client whose own logs go through pino (warnings and errors only). */
export function createKafka(options: { brokers: string[]; clientId: string; logger: Logger }): Kafka {
  const log = options.logger.child({ component: 'kafkajs' });
  return new Kafka({
    clientId: options.clientId,
    brokers: options.brokers,
    logLevel: KafkaLogLevel.WARN,
    retry: { initialRetryTime: 100, retries: 8 },
    logCreator:
      () =>
      ({ level, log: entry }: LogEntry) => {
        const { message, ...rest } = entry;
        if (level <= KafkaLogLevel.ERROR) log.error(rest, message);
        else if (level === KafkaLogLevel.WARN) log.warn(rest, message);
        else log.debug(rest, message);
      },
  });
}

/**
 * Creates the topics that do not exist yet (partitions as given, replication as the broker's
 * default). Existing topics are left as they are.
 */
export async function ensureTopics(admin: Admin, topics: Array<{ topic: string; numPartitions: number }>): Promise<string[]> {
  const existing = new Set(await admin.listTopics());
  const missing = topics.filter((t) => !existing.has(t.topic));
  if (missing.length === 0) return [];
  try {
    await admin.createTopics({ topics: missing.map((t) => ({ topic: t.topic, numPartitions: t.numPartitions })), waitForLeaders: true });
  } catch (e) {
    // Another worker may have created it at the same moment.
    if (!String((e as Error).message).includes('exists')) throw e;
  }
  return missing.map((t) => t.topic);
}

/** Committed offset vs. end offset per partition of a topic for a group (lag = end - committed). */
export async function groupLag(admin: Admin, group: string, topic: string): Promise<Array<{ partition: number; committed: bigint; end: bigint; lag: bigint }>> {
  const ends = await admin.fetchTopicOffsets(topic);
  const committed = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  const byPartition = new Map<number, bigint>();
  for (const t of committed) for (const p of t.partitions) byPartition.set(p.partition, BigInt(p.offset === '-1' ? '0' : p.offset));
  return ends
    .map((e) => {
      const end = BigInt(e.high);
      const c = byPartition.get(e.partition) ?? 0n;
      return { partition: e.partition, committed: c, end, lag: end - c };
    })
    .sort((a, b) => a.partition - b.partition);
}
