import kafkajs, { Kafka, logLevel as KafkaLogLevel, type Admin, type LogEntry } from 'kafkajs';
// Registers the snappy, lz4 and zstd codecs with kafkajs before any client exists.
import './codecs.js';

// kafkajs is CommonJS and Node sees only some of its exports as named ones.
const { ConfigResourceTypes } = kafkajs;
import type { Logger } from 'pino';
import { kafkaFailure } from './kafka-errors.js';
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

/**
 * Creates the topics that do not exist yet (partitions and settings as given, replication as the
 * broker's default). Existing topics are left as they are.
 */
export async function ensureTopics(
  admin: Admin,
  topics: Array<{ topic: string; numPartitions: number; configEntries?: Array<{ name: string; value: string }> }>,
): Promise<string[]> {
  const existing = new Set(await admin.listTopics());
  const missing = topics.filter((t) => !existing.has(t.topic));
  if (missing.length > 0) {
    try {
      // Not kafkajs' waitForLeaders: on a broker that has just started it gave up with "This
      // server does not host this topic-partition" (make profile); the wait below is bounded.
      await admin.createTopics({ topics: missing, waitForLeaders: false });
    } catch (e) {
      // Another worker may have created it at the same moment.
      if (!String((e as Error).message).includes('exists')) throw e;
    }
  }
  // A topic just created (here, or by another worker: listed, or "already exists" above) may not
  // have its leaders yet: reading or describing it then fails with "This server does not host
  // this topic-partition", which stopped a rule worker starting beside a span worker on fresh topics.
  await waitForLeaders(admin, topics.map((t) => t.topic));
  return missing.map((t) => t.topic);
}

/** Resolves once every partition of every topic has a leader; bounded by `timeoutMs`. */
export async function waitForLeaders(admin: Pick<Admin, 'fetchTopicMetadata'>, topics: string[], timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let why = 'no metadata yet';
  for (let delayMs = 50; ; delayMs = Math.min(delayMs * 2, 1000)) {
    try {
      const metadata = (await admin.fetchTopicMetadata({ topics })).topics;
      const leaderless = topics.filter((topic) => {
        const partitions = metadata.find((m) => m.name === topic)?.partitions ?? [];
        return partitions.length === 0 || partitions.some((p) => p.leader < 0);
      });
      if (leaderless.length === 0) return;
      why = `no leader yet for a partition of ${leaderless.join(', ')}`;
    } catch (e) {
      if (kafkaFailure(e, { topicMayBeNew: true }).kind !== 'retry') throw e;
      why = (e as Error).message;
    }
    if (Date.now() + delayMs > deadline) throw new Error(`topics ${topics.join(', ')} not ready within ${timeoutMs} ms: ${why}`);
    await new Promise((resolve) => setTimeout(resolve, delayMs));
  }
}

/** The largest record batch a topic takes: its max.message.bytes (topic override or broker default). */
export async function topicMaxMessageBytes(admin: Admin, topic: string): Promise<number> {
  const described = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['max.message.bytes'] }],
    includeSynonyms: false,
  });
  const value = described.resources[0]?.configEntries.find((c) => c.configName === 'max.message.bytes')?.configValue;
  const bytes = Number(value);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new Error(`cannot read max.message.bytes of topic ${topic} (got ${JSON.stringify(value)})`);
  return bytes;
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
