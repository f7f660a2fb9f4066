import kafkajs, { type Kafka, type ProducerConfig, type ProducerRecord } from 'kafkajs';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { decodeAssignment, KafkaJsAdmin } from '../../../src/kafka/kafkajs/admin.js';
import { createKafkaJsFacade } from '../../../src/kafka/kafkajs/facade.js';
import { KafkaJsRecordProducer } from '../../../src/kafka/kafkajs/producer.js';
import { ORDERED_HEADERS } from '../../../src/kafka/ordered-headers.js';

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

/** A kafkajs client that keeps the producer configs asked for and the records sent. */
function recordingKafka() {
  const configs: ProducerConfig[] = [];
  const sent: ProducerRecord[] = [];
  const kafka = {
    producer: (config: ProducerConfig) => {
      configs.push(config);
      return { connect: async () => undefined, disconnect: async () => undefined, send: async (r: ProducerRecord) => void sent.push(r) };
    },
  } as unknown as Kafka;
  return { kafka, configs, sent };
}

describe('kafkajs adapter: producer', () => {
  it("'bounded' gives up within about 5 s, 'idempotent' lands records once in order within 30 s", () => {
    const k = recordingKafka();
    new KafkaJsRecordProducer(k.kafka, { delivery: 'bounded', maxInFlightRequests: 1 });
    new KafkaJsRecordProducer(k.kafka, { delivery: 'idempotent' });
    expect(k.configs[0]).toMatchObject({ idempotent: false, maxInFlightRequests: 1, allowAutoTopicCreation: false, retry: { retries: 5, maxRetryTime: 5_000 } });
    expect(k.configs[1]).toMatchObject({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, retry: { retries: Number.MAX_SAFE_INTEGER, maxRetryTime: 30_000 } });
  });

  it('sends with acks=all, the compression asked for, and headers in wire order (repeats and nulls kept)', async () => {
    const k = recordingKafka();
    const producer = new KafkaJsRecordProducer(k.kafka, { delivery: 'bounded', compression: 'gzip' });
    await producer.connect();
    const headers: Array<[string, Buffer | string | null]> = [['a', '1'], ['b', null], ['a', Buffer.from([0xff])]];
    await producer.send('t', [{ key: 'k', value: 'v', headers, partition: 2, timestamp: '1700000000000' }, { value: null }]);
    await producer.disconnect();
    const [record] = k.sent;
    expect(record).toMatchObject({ topic: 't', acks: -1, compression: CompressionTypes.GZIP });
    expect(record!.messages[0]).toMatchObject({ key: 'k', value: 'v', partition: 2, timestamp: '1700000000000' });
    expect((record!.messages[0]!.headers as Record<symbol, unknown>)[ORDERED_HEADERS]).toEqual(headers);
    expect(record!.messages[1]).toEqual({ key: null, value: null });
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
