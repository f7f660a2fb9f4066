import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { DLQ_HEADER_ROOM_BYTES, ensureTopics, waitForLeaders, whileTopicIsNew } from '../../../src/kafka/topics.js';

// kafkajs' KafkaJSProtocolError for UNKNOWN_TOPIC_OR_PARTITION, as a broker answers for a topic another worker has just created.
const unknownTopic = () => Object.assign(new Error('This server does not host this topic-partition'), { type: 'UNKNOWN_TOPIC_OR_PARTITION', code: 3, retriable: true });
const metadata = (leader: number) => new Map([['t', [{ partition: 0, leader }]]]);

describe('waitForLeaders', () => {
  it('waits through retriable errors and leaderless partitions until every partition has a leader', async () => {
    const answers = [() => { throw unknownTopic(); }, () => metadata(-1), () => metadata(1)];
    let calls = 0;
    const admin = { topicPartitions: async () => answers[calls++]!() };
    await expect(waitForLeaders(admin, ['t'])).resolves.toBeUndefined();
    expect(calls).toBe(3);
  });

  it('fails at once on an error that is not retriable, and within its bound when leaders never come', async () => {
    const refused = { topicPartitions: async (): Promise<ReturnType<typeof metadata>> => { throw new Error('topic authorization failed'); } };
    await expect(waitForLeaders(refused, ['t'])).rejects.toThrow('topic authorization failed');
    const leaderless = { topicPartitions: async () => metadata(-1) };
    const started = Date.now();
    await expect(waitForLeaders(leaderless, ['t'], 300)).rejects.toThrow(/^topics t not ready within 300 ms: no leader yet for a partition of t$/);
    expect(Date.now() - started).toBeLessThan(1000);
  });
});

/** A broker's admin API (the facade's KafkaAdmin) as ensureTopics uses it: topics with their max.message.bytes. */
class FakeAdmin {
  readonly topics = new Map<string, number>();
  readonly created: Array<{ topic: string; numPartitions: number; configEntries?: Array<{ name: string; value: string }> }> = [];
  connected = 0;
  /** Another worker creates these between our listTopics and createTopics. */
  racing: string[] = [];
  /** listTopics and createTopics calls that fail (before creating anything), as kafkajs' do when the metadata of all topics they read carries an error for a topic a peer is creating. */
  refreshFailures = 0;
  listFailures = 0;
  createCalls = 0;

  constructor(existing: Record<string, number>) {
    for (const [t, bytes] of Object.entries(existing)) this.topics.set(t, bytes);
  }
  async connect() { this.connected++; }
  async disconnect() { this.connected--; }
  async listTopics() {
    if (this.listFailures > 0) {
      this.listFailures--;
      throw unknownTopic();
    }
    return [...this.topics.keys()];
  }
  /** As KafkaAdmin.createTopics: one that exists already (a peer created it) is not an error, and keeps its settings. */
  async createTopics(topics: FakeAdmin['created']) {
    this.createCalls++;
    if (this.refreshFailures > 0) {
      this.refreshFailures--;
      throw unknownTopic();
    }
    for (const t of this.racing) this.topics.set(t, 1_048_588);
    this.created.push(...topics);
    for (const t of topics) if (!this.topics.has(t.topic)) this.topics.set(t.topic, Number(t.configEntries?.find((c) => c.name === 'max.message.bytes')?.value ?? 1_048_588));
  }
  async topicPartitions(topics: string[]) {
    return new Map(topics.filter((t) => this.topics.has(t)).map((name) => [name, [{ partition: 0, leader: 1 }]]));
  }
  async topicConfigs(topics: string[]) {
    return new Map(topics.map((name) => [name, new Map([['max.message.bytes', String(this.topics.get(name))]])]));
  }
}

function quietLogger() {
  const lines: Array<Record<string, unknown>> = [];
  return { lines, logger: pino({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) }) };
}

describe('ensureTopics', () => {
  it("creates what is missing in one call, a dead-letter topic sized from its source topic's limit, and reads every topic's limit", async () => {
    const admin = new FakeAdmin({ spans: 2_000_000 });
    const { lines, logger } = quietLogger();
    const ensured = await ensureTopics({ admin: () => admin as never }, [
      { topic: 'spans', numPartitions: 6 },
      { topic: 'spans.dlq', numPartitions: 6, deadLettersOf: 'spans' },
      { topic: 'rules', numPartitions: 1, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] },
    ], logger);
    expect(admin.created).toEqual([
      { topic: 'rules', numPartitions: 1, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] },
      { topic: 'spans.dlq', numPartitions: 6, configEntries: [{ name: 'max.message.bytes', value: String(2_000_000 + DLQ_HEADER_ROOM_BYTES) }] },
    ]);
    expect(ensured.created).toEqual(['spans.dlq', 'rules']);
    expect(Object.fromEntries(ensured.maxMessageBytes)).toEqual({ spans: 2_000_000, 'spans.dlq': 2_000_000 + DLQ_HEADER_ROOM_BYTES, rules: 1_048_588 });
    expect(lines.map((l) => [l.msg, l.topics, l.partitions])).toEqual([['created missing topics', ['spans.dlq', 'rules'], { 'spans.dlq': 6, rules: 1 }]]);
    expect(admin.connected).toBe(0);
  });

  it('leaves existing topics as they are, warns about a dead-letter topic that takes smaller records than its source, and takes a race with a peer', async () => {
    const admin = new FakeAdmin({ spans: 2_000_000, 'spans.dlq': 1_000_000 });
    admin.racing = ['signals'];
    const { lines, logger } = quietLogger();
    const ensured = await ensureTopics({ admin: () => admin as never }, [
      { topic: 'spans', numPartitions: 6 },
      { topic: 'spans.dlq', numPartitions: 6, deadLettersOf: 'spans' },
      { topic: 'signals', numPartitions: 3 },
    ], logger);
    expect(admin.created.map((c) => c.topic)).toEqual(['signals']);
    expect(ensured.maxMessageBytes.get('spans.dlq')).toBe(1_000_000);
    expect(lines.find((l) => String(l.msg).startsWith('the dead-letter topic takes smaller records'))).toMatchObject({ dlqTopic: 'spans.dlq', dlqMaxMessageBytes: 1_000_000, topic: 'spans', sourceMaxMessageBytes: 2_000_000 });
    expect(admin.connected).toBe(0);
  });
});

describe('ensureTopics on a cluster whose brokers do not all know a new topic yet', () => {
  it('tries the listing and the creation again (bounded) while they fail with "does not host this topic-partition", and creates each topic once', async () => {
    const admin = new FakeAdmin({ spans: 2_000_000 });
    admin.listFailures = 1;
    admin.refreshFailures = 2;
    const ensured = await ensureTopics({ admin: () => admin as never }, [
      { topic: 'spans', numPartitions: 6 },
      { topic: 'spans.dlq', numPartitions: 6, deadLettersOf: 'spans' },
      { topic: 'checkpoints', numPartitions: 6 },
    ]);
    expect(ensured.created).toEqual(['spans.dlq', 'checkpoints']);
    expect(admin.created.map((c) => c.topic)).toEqual(['checkpoints', 'spans.dlq']);
    expect(admin.createCalls).toBe(4);
    expect(admin.listFailures).toBe(0);
    expect(admin.connected).toBe(0);
  });

  it('still fails at once when the creation is refused for good', async () => {
    const admin = new FakeAdmin({});
    admin.createTopics = async () => {
      admin.createCalls++;
      throw Object.assign(new Error('not authorized'), { type: 'TOPIC_AUTHORIZATION_FAILED' });
    };
    await expect(ensureTopics({ admin: () => admin as never }, [{ topic: 'spans', numPartitions: 6 }])).rejects.toThrow('not authorized');
    expect(admin.createCalls).toBe(1);
    expect(admin.connected).toBe(0);
  });
});

describe('whileTopicIsNew', () => {
  it('tries again while the topic may be new to the broker asked, then gives its answer', async () => {
    let calls = 0;
    const answer = await whileTopicIsNew(async () => {
      calls += 1;
      if (calls < 3) throw unknownTopic();
      return 'read';
    });
    expect(answer).toBe('read');
    expect(calls).toBe(3);
  });

  it('fails at once on what no retry changes, and with the last error once its time is up', async () => {
    let calls = 0;
    const refused = Object.assign(new Error('not authorized'), { type: 'TOPIC_AUTHORIZATION_FAILED' });
    await expect(
      whileTopicIsNew(async () => {
        calls += 1;
        throw refused;
      }),
    ).rejects.toBe(refused);
    expect(calls).toBe(1);
    await expect(whileTopicIsNew(() => Promise.reject(unknownTopic()), 120)).rejects.toThrow('does not host this topic-partition');
  });
});
