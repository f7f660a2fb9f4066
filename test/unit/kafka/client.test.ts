import { describe, expect, it } from 'vitest';
import { waitForLeaders } from '../../../src/kafka/client.js';

// kafkajs' KafkaJSProtocolError for UNKNOWN_TOPIC_OR_PARTITION, as a broker answers for a topic another worker has just created.
const unknownTopic = () => Object.assign(new Error('This server does not host this topic-partition'), { type: 'UNKNOWN_TOPIC_OR_PARTITION', code: 3, retriable: true });
const metadata = (leader: number) => ({ topics: [{ name: 't', partitions: [{ partitionErrorCode: 0, partitionId: 0, leader, replicas: [1], isr: [1] }] }] });

describe('waitForLeaders', () => {
  it('waits through retriable errors and leaderless partitions until every partition has a leader', async () => {
    const answers = [() => { throw unknownTopic(); }, () => metadata(-1), () => metadata(1)];
    let calls = 0;
    const admin = { fetchTopicMetadata: async () => answers[calls++]!() };
    await expect(waitForLeaders(admin as never, ['t'])).resolves.toBeUndefined();
    expect(calls).toBe(3);
  });

  it('fails at once on an error that is not retriable, and within its bound when leaders never come', async () => {
    const refused = { fetchTopicMetadata: async () => { throw new Error('topic authorization failed'); } };
    await expect(waitForLeaders(refused as never, ['t'])).rejects.toThrow('topic authorization failed');
    const leaderless = { fetchTopicMetadata: async () => metadata(-1) };
    const started = Date.now();
    await expect(waitForLeaders(leaderless as never, ['t'], 300)).rejects.toThrow(/^topics t not ready within 300 ms: no leader yet for a partition of t$/);
    expect(Date.now() - started).toBeLessThan(1000);
  });
});
