import { Kafka, logLevel as KafkaLogLevel, type Admin, type LogEntry } from 'kafkajs';
// Registers the snappy, lz4 and zstd codecs with kafkajs before any client exists.
import './codecs.js';
import type { Logger } from 'pino';
import { kafkajsLogLevel } from './kafkajs-log.js';

/** A kafkajs client whose own logs go through pino (warnings and errors only; retried start-up errors as warnings). */
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
        log[kafkajsLogLevel(level, entry)](rest, message);
      },
  });
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
