import type { Logger } from 'pino';
import type { KafkaAdmin, KafkaFacade } from './facade.js';
import { kafkaFailure } from './kafka-errors.js';

/** Room for the reason headers a dead letter adds to its record. */
export const DLQ_HEADER_ROOM_BYTES = 64 * 1024;

/** A topic something needs, with what it is created with when missing. */
export interface TopicNeed {
  topic: string;
  numPartitions: number;
  configEntries?: Array<{ name: string; value: string }>;
  /**
   * This is the dead-letter topic of that source topic: a dead letter is the source record plus
   * reason headers, so when created it takes records as large as the source topic does
   * (max.message.bytes) with room for the headers; one that takes less is warned about.
   */
  deadLettersOf?: string;
}

export interface EnsuredTopics {
  /** The topics this call created. */
  created: string[];
  /** Each needed topic's max.message.bytes (its override or the broker's default). */
  maxMessageBytes: Map<string, number>;
}

/**
 * The one place spanledger creates topics: a worker calls it once at start with every topic it
 * needs (its source and dead-letter topics, and what its stages read and write), and a CLI
 * command that needs a topic calls it too. Missing topics are created (partitions and settings
 * as given, replication as the broker's default); existing ones are left as they are. Resolves
 * once every partition of every topic has a leader.
 */
export async function ensureTopics(kafka: Pick<KafkaFacade, 'admin'>, needs: TopicNeed[], logger?: Logger): Promise<EnsuredTopics> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    // Every topic's metadata: see createTopics for why a topic being created may fail it for a moment.
    const existing = new Set(await whileTopicIsNew(() => admin.listTopics()));
    const missing = needs.filter((n) => !existing.has(n.topic));
    const sources = needs.filter((n) => n.deadLettersOf === undefined);
    const deadLetters = needs.filter((n) => n.deadLettersOf !== undefined);
    // Sources first: a missing dead-letter topic is sized from its source topic's limit.
    await createTopics(admin, missing.filter((n) => n.deadLettersOf === undefined));
    await waitForLeaders(admin, sources.map((n) => n.topic));
    const sourceBytes = await topicsMaxMessageBytes(admin, [...new Set(deadLetters.map((n) => n.deadLettersOf!))]);
    await createTopics(
      admin,
      missing.filter((n) => n.deadLettersOf !== undefined).map((n) => ({ ...n, configEntries: [...(n.configEntries ?? []), { name: 'max.message.bytes', value: String(sourceBytes.get(n.deadLettersOf!)! + DLQ_HEADER_ROOM_BYTES) }] })),
    );
    await waitForLeaders(admin, deadLetters.map((n) => n.topic));
    const maxMessageBytes = await topicsMaxMessageBytes(admin, needs.map((n) => n.topic));
    for (const n of deadLetters) {
      const dlqMaxMessageBytes = maxMessageBytes.get(n.topic)!;
      const sourceMaxMessageBytes = sourceBytes.get(n.deadLettersOf!)!;
      if (dlqMaxMessageBytes < sourceMaxMessageBytes) {
        logger?.warn(
          { dlqTopic: n.topic, dlqMaxMessageBytes, topic: n.deadLettersOf, sourceMaxMessageBytes },
          'the dead-letter topic takes smaller records than the source topic: dead letters of the largest records will be quarantined (raise its max.message.bytes)',
        );
      }
    }
    const created = missing.map((n) => n.topic);
    if (created.length > 0) {
      const counts = new Set(missing.map((n) => n.numPartitions));
      const partitions = counts.size === 1 ? missing[0]!.numPartitions : Object.fromEntries(missing.map((n) => [n.topic, n.numPartitions]));
      logger?.info({ topics: created, partitions }, 'created missing topics');
    }
    return { created, maxMessageBytes };
  } finally {
    await admin.disconnect();
  }
}

/**
 * Creates the topics without waiting for leaders (waitForLeaders does, bounded); one another
 * worker created at the same moment is fine. Tried again while a topic may be new (whileTopicIsNew):
 * kafkajs' createTopics first refreshes its metadata of every topic of the cluster (its admin
 * follows none), and its answer parser fails the whole call on an error for any one topic, such
 * as one a peer is creating at this moment; listTopics (below) reads the same answer.
 */
async function createTopics(admin: KafkaAdmin, topics: TopicNeed[]): Promise<void> {
  if (topics.length === 0) return;
  await whileTopicIsNew(() => admin.createTopics(topics.map(({ topic, numPartitions, configEntries }) => ({ topic, numPartitions, ...(configEntries === undefined ? {} : { configEntries }) }))));
}

/**
 * Resolves once every partition of every topic has a leader; bounded by `timeoutMs`. A topic
 * just created (here, or by another worker: listed, or "already exists") may not have its leaders
 * yet: reading or describing it then fails with "This server does not host this topic-partition",
 * which stopped a rule worker starting beside a span worker on fresh topics.
 */
export async function waitForLeaders(admin: Pick<KafkaAdmin, 'topicPartitions'>, topics: string[], timeoutMs = 30_000): Promise<void> {
  if (topics.length === 0) return;
  const deadline = Date.now() + timeoutMs;
  let why = 'no metadata yet';
  for (let delayMs = 50; ; delayMs = Math.min(delayMs * 2, 1000)) {
    try {
      const metadata = await admin.topicPartitions(topics);
      const leaderless = topics.filter((topic) => {
        const partitions = metadata.get(topic) ?? [];
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

/**
 * `call` on a topic just ensured, tried again (backoff, bounded by `timeoutMs`) while it fails as
 * Kafka's classifier calls `retry` for a topic that may be new: on a cluster of several brokers
 * a topic whose leaders one broker reports (waitForLeaders) can still be unknown to the broker
 * the next request goes to ("This server does not host this topic-partition"), for a moment.
 * That failed `spanledger rules put`'s first try on a fresh 3-broker cluster.
 */
export async function whileTopicIsNew<T>(call: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let delayMs = 50; ; delayMs = Math.min(delayMs * 2, 1000)) {
    try {
      return await call();
    } catch (e) {
      if (kafkaFailure(e, { topicMayBeNew: true }).kind !== 'retry' || Date.now() + delayMs > deadline) throw e;
    }
    await new Promise((resolve) => setTimeout(resolve, delayMs));
  }
}

/** The largest record batch each topic takes: its max.message.bytes (topic override or broker default). */
async function topicsMaxMessageBytes(admin: KafkaAdmin, topics: string[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  if (topics.length === 0) return out;
  const described = await whileTopicIsNew(() => admin.topicConfigs(topics, ['max.message.bytes']));
  for (const topic of topics) {
    const value = described.get(topic)?.get('max.message.bytes');
    const bytes = Number(value);
    if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new Error(`cannot read max.message.bytes of topic ${topic} (got ${JSON.stringify(value)})`);
    out.set(topic, bytes);
  }
  return out;
}
