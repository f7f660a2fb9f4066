import kafkajs, { type Kafka, type ProducerConfig, type ProducerRecord } from 'kafkajs';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { decodeAssignment, KafkaJsAdmin } from '../../../src/kafka/kafkajs/admin.js';
import { createKafkaJsFacade } from '../../../src/kafka/kafkajs/facade.js';
import { KafkaJsRecordProducer } from '../../../src/kafka/kafkajs/producer.js';
import { kafkaFailure } from '../../../src/kafka/kafka-errors.js';
import { ORDERED_HEADERS } from '../../../src/kafka/ordered-headers.js';
import kafkajsMurmur2 from 'kafkajs/src/producer/partitioners/default/murmur2.js';
import { keyedPartition } from '../../../src/kafka/partitioner.js';

const { AssignerProtocol, CompressionTypes } = kafkajs;

describe('kafkajs adapter: admin', () => {
  it('decodes a member assignment (empty while the group rebalances)', () => {
    const buffer = AssignerProtocol.MemberAssignment.encode({ version: 0, assignment: { spans: [0, 2], other: [1] }, userData: Buffer.alloc(0) });
    expect(decodeAssignment(buffer)).toEqual({ spans: [0, 2], other: [1] });
    expect(decodeAssignment(Buffer.alloc(0))).toEqual({});
  });

  it('gives offsets as bigints, a partition without a commit as null, and members with their assignments', async () => {
    const admin = {
      fetchOffsets: async () => [{ topic: 'spans', partitions: [{ partition: 0, offset: '9007199254740993', metadata: null }, { partition: 1, offset: '-1', metadata: null }] }],
      fetchTopicOffsets: async () => [{ partition: 1, offset: '5', high: '5', low: '2' }, { partition: 0, offset: '0', high: '0', low: '0' }],
      describeGroups: async () => ({
        groups: [{ groupId: 'g', state: 'Stable', protocol: 'RoundRobinAssigner', protocolType: 'consumer', members: [{ memberId: 'm', clientId: 'c', clientHost: '/h', memberMetadata: Buffer.alloc(0), memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 0, assignment: { spans: [1] }, userData: Buffer.alloc(0) }) }] }],
      }),
    };
    const facadeAdmin = new KafkaJsAdmin({ admin: () => admin } as unknown as Kafka);
    expect(await facadeAdmin.committedOffsets('g', ['spans'])).toEqual([
      { topic: 'spans', partition: 0, offset: 9007199254740993n },
      { topic: 'spans', partition: 1, offset: null },
    ]);
    expect(await facadeAdmin.topicOffsets('spans')).toEqual([
      { partition: 0, low: 0n, high: 0n },
      { partition: 1, low: 2n, high: 5n },
    ]);
    expect(await facadeAdmin.describeGroups(['g'])).toEqual([{ group: 'g', state: 'Stable', members: [{ memberId: 'm', clientId: 'c', clientHost: '/h', groupInstanceId: null, assignment: { spans: [1] } }] }]);
  });
});

/**
 * A kafkajs client that keeps the producer configs asked for and the records sent (each send()
 * fails while `failing` says so), its admin client's metadata giving topics of `partitionCount`
 * partitions (and counting the questions).
 */
function recordingKafka(partitionCount = 3) {
  const configs: ProducerConfig[] = [];
  const sent: ProducerRecord[] = [];
  const state = { metadataAsked: 0, failing: (_r: ProducerRecord) => false };
  const kafka = {
    producer: (config: ProducerConfig) => {
      configs.push(config);
      return {
        connect: async () => undefined,
        disconnect: async () => undefined,
        send: async (r: ProducerRecord) => {
          if (state.failing(r)) throw Object.assign(new Error('leader gone'), { retriable: true });
          sent.push(r);
        },
      };
    },
    admin: () => ({
      connect: async () => undefined,
      disconnect: async () => undefined,
      fetchTopicMetadata: async ({ topics }: { topics: string[] }) => {
        state.metadataAsked += 1;
        return { topics: topics.map((name) => ({ name, partitions: Array.from({ length: partitionCount }, (_, partitionId) => ({ partitionId, leader: 1 })) })) };
      },
    }),
  } as unknown as Kafka;
  return { kafka, configs, sent, state };
}

describe('kafkajs adapter: producer', () => {
  it("'bounded' gives up within about 5 s, 'idempotent' lands records once in order within 30 s", () => {
    const k = recordingKafka();
    new KafkaJsRecordProducer(k.kafka, { delivery: 'bounded', maxInFlightRequests: 1 });
    new KafkaJsRecordProducer(k.kafka, { delivery: 'idempotent' });
    expect(k.configs[0]).toMatchObject({ idempotent: false, maxInFlightRequests: 1, allowAutoTopicCreation: false, retry: { retries: 5, maxRetryTime: 5_000 } });
    expect(k.configs[1]).toMatchObject({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, retry: { retries: 10, maxRetryTime: 5_000 } });
  });

  it('sends with acks=all, the compression asked for, and headers in wire order (repeats and nulls kept)', async () => {
    const k = recordingKafka();
    const producer = new KafkaJsRecordProducer(k.kafka, { delivery: 'bounded', compression: 'gzip' });
    await producer.connect();
    const headers: Array<[string, Buffer | string | null]> = [['a', '1'], ['b', null], ['a', Buffer.from([0xff])]];
    await producer.send('t', [{ key: 'k', value: 'v', headers, partition: 2, timestamp: '1700000000000' }, { value: null }]);
    await producer.disconnect();
    // One send() per partition: the record for partition 2, the one without key on the first in turn.
    expect(k.sent).toHaveLength(2);
    for (const record of k.sent) expect(record).toMatchObject({ topic: 't', acks: -1, compression: CompressionTypes.GZIP });
    const [toTwo, toZero] = k.sent;
    expect(toTwo!.messages).toHaveLength(1);
    expect(toTwo!.messages[0]).toMatchObject({ key: 'k', value: 'v', partition: 2, timestamp: '1700000000000' });
    expect((toTwo!.messages[0]!.headers as Record<symbol, unknown>)[ORDERED_HEADERS]).toEqual(headers);
    expect(toZero!.messages).toEqual([{ key: null, value: null, partition: 0 }]);
  });

  it('never lets one kafkajs send() span partitions: keyed records where murmur2 says, in order per partition', async () => {
    const k = recordingKafka(7);
    const producer = new KafkaJsRecordProducer(k.kafka, { delivery: 'bounded' });
    await producer.connect();
    const records = Array.from({ length: 100 }, (_, i) => ({ key: `tenant-${i % 13}`, value: String(i) }));
    await producer.send('t', records);
    await producer.send('t', records.slice(0, 10));
    // The partition count is asked once for both sends.
    expect(k.state.metadataAsked).toBe(1);
    const first = k.sent.slice(0, k.sent.length - new Set(records.slice(0, 10).map((r) => keyedPartition(Buffer.from(r.key), 7, kafkajsMurmur2))).size);
    expect(first.flatMap((r) => r.messages)).toHaveLength(100);
    for (const record of first) {
      const partitions = new Set(record.messages.map((m) => m.partition));
      expect(partitions.size).toBe(1);
      for (const m of record.messages) expect(m.partition).toBe(keyedPartition(Buffer.from(m.key as string), 7, kafkajsMurmur2));
      const values = record.messages.map((m) => Number(m.value));
      expect(values).toEqual([...values].sort((a, b) => a - b));
    }
    expect(first.length).toBeGreaterThan(3);
    await producer.disconnect();
  });

  it('rejects the send when one partition failed (after the others settled), and asks the partition count again next time', async () => {
    const k = recordingKafka(3);
    const producer = new KafkaJsRecordProducer(k.kafka, { delivery: 'bounded' });
    await producer.connect();
    k.state.failing = (r) => r.messages[0]!.partition === 1;
    await expect(producer.send('t', [0, 1, 2].map((partition) => ({ value: 'x', partition })))).rejects.toThrow('leader gone');
    expect(k.sent.map((r) => r.messages[0]!.partition).sort()).toEqual([0, 2]);
    k.state.failing = () => false;
    await producer.send('t', [{ value: 'y', partition: 1 }]);
    expect(k.state.metadataAsked).toBe(2);
  });

  it('refuses a partition the topic does not have as the broker would (UNKNOWN_TOPIC_OR_PARTITION), sending nothing', async () => {
    const k = recordingKafka(3);
    const producer = new KafkaJsRecordProducer(k.kafka, { delivery: 'bounded' });
    const error = await producer.send('t', [{ value: 'a', partition: 0 }, { value: 'b', partition: 3 }]).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(kafkaFailure(error)).toEqual({ kind: 'refused', refusal: 'UNKNOWN_TOPIC_OR_PARTITION', scope: 'topic' });
    expect(k.sent).toEqual([]);
  });

  it('refuses a zstd producer at once (kafkajs here reads zstd but cannot write it)', () => {
    expect(() => new KafkaJsRecordProducer(recordingKafka().kafka, { delivery: 'bounded', compression: 'zstd' })).toThrow(/zstd compression needs KAFKA_CLIENT=platformatic/);
  });
});

describe('kafkajs adapter: group consumer', () => {
  it('refuses static membership and runs a cooperative group eagerly with one warning', () => {
    const lines: Array<{ msg: string }> = [];
    const logger = pino({ level: 'warn' }, { write: (l: string) => lines.push(JSON.parse(l) as { msg: string }) });
    const facade = createKafkaJsFacade({ brokers: ['127.0.0.1:1'], clientId: 't', logger });
    const options = { group: 'g', sessionTimeoutMs: 10_000, rebalanceTimeoutMs: 10_000, heartbeatIntervalMs: 1_000, maxInFlightBytes: 16 << 20, partitionsConcurrency: 1 };
    expect(() => facade.groupConsumer({ ...options, groupInstanceId: 'pod-0' })).toThrow(/static membership .* needs KAFKA_CLIENT=platformatic/);
    facade.groupConsumer({ ...options, rebalanceProtocol: 'eager' });
    expect(lines).toEqual([]);
    facade.groupConsumer({ ...options, rebalanceProtocol: 'cooperative' });
    expect(lines.map((l) => l.msg)).toEqual([expect.stringMatching(/^KAFKA_REBALANCE_PROTOCOL=cooperative: kafkajs knows only the eager protocol/)]);
  });
});
