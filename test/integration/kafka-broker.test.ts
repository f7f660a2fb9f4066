import { randomBytes } from 'node:crypto';
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import { afterAll, describe, expect, inject, it } from 'vitest';

// The broker picked by test/support/kafka.ts (globalSetup): KAFKA_BROKERS, testcontainers, or
// a local one from scripts/kafka.sh. This test only checks that it is a working Kafka.
const brokers = inject('kafkaBrokers');
const kafka = new Kafka({ clientId: 'kafka-broker-test', brokers: brokers.split(','), logLevel: logLevel.NOTHING });
const admin = kafka.admin();

afterAll(async () => {
  await admin.disconnect();
});

describe('the Kafka broker of the test run', () => {
  it('creates a topic, takes 10 messages and gives them back in order', async () => {
    const suffix = `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
    const topic = `broker-check-${suffix}`;
    await admin.connect();
    expect(await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true })).toBe(true);
    expect(await admin.listTopics()).toContain(topic);

    const sent = Array.from({ length: 10 }, (_, i) => ({ key: `k${i}`, value: `message ${i} of ${suffix}` }));
    const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, idempotent: true });
    await producer.connect();
    try {
      const acks = await producer.send({ topic, acks: -1, messages: sent });
      expect(acks).toHaveLength(1);
      expect(acks[0]?.errorCode).toBe(0);
    } finally {
      await producer.disconnect();
    }

    const received: { key: string; value: string; partition: number; offset: string }[] = [];
    const consumer = kafka.consumer({ groupId: `broker-check-group-${suffix}` });
    await consumer.connect();
    try {
      await consumer.subscribe({ topic, fromBeginning: true });
      let done!: () => void;
      const all = new Promise<void>((r) => (done = r));
      await consumer.run({
        eachMessage: async ({ partition, message }) => {
          received.push({
            key: message.key?.toString() ?? '',
            value: message.value?.toString() ?? '',
            partition,
            offset: message.offset,
          });
          if (received.length >= sent.length) done();
        },
      });
      await Promise.race([
        all,
        new Promise((_, reject) => setTimeout(() => reject(new Error(`got ${received.length} of 10 messages in 60 s`)), 60_000)),
      ]);
    } finally {
      await consumer.disconnect();
    }

    expect(received.map(({ key, value }) => ({ key, value }))).toEqual(sent);
    expect(received.map((m) => m.partition)).toEqual(Array(10).fill(0));
    expect(received.map((m) => m.offset)).toEqual(sent.map((_, i) => String(i)));
  });
});
