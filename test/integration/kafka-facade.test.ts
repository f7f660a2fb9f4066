import { Consumer as PlatformaticConsumer } from '@platformatic/kafka';
import { Partitioners, type Kafka, type PartitionerArgs } from 'kafkajs';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Compression, HeaderList, KafkaAdmin, KafkaFacade, KafkaFacadeOptions, OutgoingRecord } from '../../src/kafka/facade.js';
import { endOffsets } from '../../src/kafka/compacted-table.js';
import { kafkaFailure } from '../../src/kafka/kafka-errors.js';
import { orderedHeaders } from '../../src/kafka/ordered-headers.js';
import { createKafkaJsFacade } from '../../src/kafka/kafkajs/facade.js';
import { createPlatformaticFacade } from '../../src/kafka/platformatic/index.js';
import type { RecordHeaders } from '../../src/model/headers.js';
import { kafkaClient, sleep, uniqueName } from '../support/harness.js';

/**
 * The facade's contract, checked the same way for every client behind it, against a real broker.
 * What the facade wrote is read back with kafkajs (with the repo's patch: headers in wire order),
 * what it reports is compared with what kafkajs sets up or sees: a reader independent of the
 * client under test.
 */
const facades: Array<[string, (options: KafkaFacadeOptions) => KafkaFacade]> = [
  ['platformatic', createPlatformaticFacade],
  ['kafkajs', createKafkaJsFacade],
];

const brokers = inject('kafkaBrokers');
const CODECS: Compression[] = ['none', 'gzip', 'snappy', 'lz4', 'zstd'];

let kafka: Kafka;
beforeAll(() => {
  kafka = kafkaClient(brokers);
});

interface ReadRecord {
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: HeaderList;
  timestamp: string;
}

/** Every record of the topic, read by kafkajs from the beginning (waits for `expected` of them). */
async function readBack(topic: string, expected: number, timeoutMs = 60_000): Promise<ReadRecord[]> {
  // A short fetch wait: disconnect() waits for the fetch under way, which with kafkajs' default
  // (5 s) made every read-back last about 5 s.
  const consumer = kafka.consumer({ groupId: uniqueName('facade-reader'), maxWaitTimeInMs: 100 });
  const out: ReadRecord[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        out.push({ partition, offset: message.offset, key: message.key, value: message.value, headers: orderedHeaders(message.headers as RecordHeaders), timestamp: message.timestamp });
      },
    });
    const deadline = Date.now() + timeoutMs;
    while (out.length < expected && Date.now() < deadline) await sleep(100);
    await sleep(500); // a little longer, to see a duplicate
  } finally {
    await consumer.disconnect();
  }
  return out.sort((a, b) => a.partition - b.partition || Number(BigInt(a.offset) - BigInt(b.offset)));
}

function kafkajsPartition(key: string, partitionCount: number): number {
  const partitionMetadata = Array.from({ length: partitionCount }, (_, partitionId) => ({ partitionId, leader: 1 })) as PartitionerArgs['partitionMetadata'];
  return Partitioners.DefaultPartitioner()({ topic: 't', partitionMetadata, message: { key, value: null } });
}

const bytes = (v: string | Buffer | null) => (typeof v === 'string' ? Buffer.from(v) : v);

describe.each(facades)('the Kafka facade on %s', (name, createFacade) => {
  // The kafkajs adapter can read zstd but not write it (codecs.ts: no zstd compressor for
  // kafkajs); its producer refuses zstd at once (tested below), so it produces the others only.
  const producible = name === 'kafkajs' ? CODECS.filter((c) => c !== 'zstd') : CODECS;
  let facade: KafkaFacade;
  let admin: KafkaAdmin;

  beforeAll(async () => {
    facade = createFacade({ brokers: brokers.split(','), clientId: 'facade-test', logger: pino({ level: 'warn' }) });
    admin = facade.admin();
    await admin.connect();
  });

  afterAll(async () => {
    await admin.disconnect();
    await admin.disconnect(); // idempotent
  });

  it('creates topics (again without error), lists them, reports partitions with leaders and configs', async () => {
    const a = uniqueName('facade-a');
    const b = uniqueName('facade-b');
    await admin.createTopics([
      { topic: a, numPartitions: 3, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] },
      { topic: b, numPartitions: 1, replicationFactor: 1 },
    ]);
    // Created by someone else meanwhile (here: by us, before): not an error.
    await admin.createTopics([{ topic: a, numPartitions: 3 }]);
    expect(await admin.listTopics()).toEqual(expect.arrayContaining([a, b]));

    const missing = uniqueName('facade-missing');
    const partitions = await admin.topicPartitions([a, b, missing]);
    expect([...partitions.keys()].sort()).toEqual([a, b].sort());
    expect(partitions.get(a)!.map((p) => p.partition)).toEqual([0, 1, 2]);
    const kafkajsAdmin = kafka.admin();
    await kafkajsAdmin.connect();
    try {
      const seen = await kafkajsAdmin.fetchTopicMetadata({ topics: [a] });
      const leaders = seen.topics[0]!.partitions.map((p) => ({ partition: p.partitionId, leader: p.leader })).sort((x, y) => x.partition - y.partition);
      expect(partitions.get(a)).toEqual(leaders);
    } finally {
      await kafkajsAdmin.disconnect();
    }

    const configs = await admin.topicConfigs([a, b], ['cleanup.policy', 'max.message.bytes']);
    expect(configs.get(a)?.get('cleanup.policy')).toBe('compact');
    expect(configs.get(b)?.get('cleanup.policy')).toBe('delete');
    expect(Number(configs.get(b)?.get('max.message.bytes'))).toBeGreaterThan(0);
  });

  it('reports start and end offsets of every partition', async () => {
    const topic = uniqueName('facade-offsets');
    await admin.createTopics([{ topic, numPartitions: 3 }]);
    const producer = facade.producer({ delivery: 'bounded' });
    await producer.connect();
    try {
      await producer.send(topic, [0, 1, 2].map((i) => ({ value: `r${i}`, partition: 1 })));
    } finally {
      await producer.disconnect();
      await producer.disconnect(); // idempotent
    }
    const kafkajsAdmin = kafka.admin();
    await kafkajsAdmin.connect();
    try {
      await kafkajsAdmin.fetchTopicMetadata({ topics: [topic] }); // deleteTopicRecords needs it loaded
      await kafkajsAdmin.deleteTopicRecords({ topic, partitions: [{ partition: 1, offset: '1' }] });
    } finally {
      await kafkajsAdmin.disconnect();
    }
    expect(await admin.topicOffsets(topic)).toEqual([
      { partition: 0, low: 0n, high: 0n },
      { partition: 1, low: 1n, high: 3n },
      { partition: 2, low: 0n, high: 0n },
    ]);
  });

  it("reports a group's committed offsets, describes and deletes groups", async () => {
    const topic = uniqueName('facade-groups');
    const other = uniqueName('facade-groups-other');
    const group = uniqueName('facade-group');
    await admin.createTopics([
      { topic, numPartitions: 3 },
      { topic: other, numPartitions: 1 },
    ]);
    expect(await admin.committedOffsets(group, [topic])).toEqual([0, 1, 2].map((partition) => ({ topic, partition, offset: null })));

    const kafkajsAdmin = kafka.admin();
    await kafkajsAdmin.connect();
    try {
      await kafkajsAdmin.setOffsets({ groupId: group, topic, partitions: [{ partition: 0, offset: '2' }, { partition: 2, offset: '0' }] });
      await kafkajsAdmin.setOffsets({ groupId: group, topic: other, partitions: [{ partition: 0, offset: '5' }] });
    } finally {
      await kafkajsAdmin.disconnect();
    }
    expect(await admin.committedOffsets(group, [topic])).toEqual([
      { topic, partition: 0, offset: 2n },
      { topic, partition: 1, offset: null },
      { topic, partition: 2, offset: 0n },
    ]);
    const all = await admin.committedOffsets(group);
    expect(all).toEqual(
      expect.arrayContaining([
        { topic, partition: 0, offset: 2n },
        { topic: other, partition: 0, offset: 5n },
      ]),
    );
    expect(all.filter((c) => c.offset === null || c.offset === undefined)).toEqual([]);

    // A live group of one static member (KIP-345), made by a client other than the facade's.
    const liveGroup = uniqueName('facade-live');
    const member = new PlatformaticConsumer({ clientId: 'facade-test-member', bootstrapBrokers: brokers.split(','), groupId: liveGroup, groupInstanceId: 'static-1', sessionTimeout: 10_000, heartbeatInterval: 1_000 });
    const stream = await member.consume({ topics: [topic] });
    stream.on('data', () => {});
    try {
      let described = await admin.describeGroups([liveGroup, group]);
      const deadline = Date.now() + 30_000;
      while (described[0]!.state !== 'Stable' && Date.now() < deadline) {
        await sleep(200);
        described = await admin.describeGroups([liveGroup, group]);
      }
      expect(described[0]).toEqual({
        group: liveGroup,
        state: 'Stable',
        // kafkajs' DescribeGroups (v2) has no group instance id: its admin says null, not knowing.
        members: [{ memberId: expect.any(String), clientId: 'facade-test-member', clientHost: expect.any(String), groupInstanceId: name === 'kafkajs' ? null : 'static-1', assignment: { [topic]: [0, 1, 2] } }],
      });
      // A group with commits and no member.
      expect(described[1]).toEqual({ group, state: 'Empty', members: [] });
    } finally {
      await stream.close();
      await member.close();
    }

    const gone = uniqueName('facade-never-existed');
    await admin.deleteGroups([group, gone]);
    expect(await admin.describeGroups([group, gone])).toEqual([
      { group, state: 'Dead', members: [] },
      { group: gone, state: 'Dead', members: [] },
    ]);
    expect(await admin.committedOffsets(group)).toEqual([]);
    await admin.deleteGroups([gone]);
  });

  it.each(producible)('writes records byte for byte in %s: headers in order with repeated names and nulls, tombstones, partition, timestamp', async (compression) => {
    const topic = uniqueName(`facade-records-${compression}`);
    await admin.createTopics([{ topic, numPartitions: 3 }]);
    const headers: HeaderList = [
      ['trace', 'a'],
      ['dup', 'first'],
      ['nil', null],
      ['dup', Buffer.from([0, 1, 254, 255])],
      ['dup', null],
      ['', ''],
      ['ü', 'é'],
    ];
    const records: OutgoingRecord[] = [
      { key: 'k1', value: Buffer.from([0, 1, 2, 255]), headers, partition: 2, timestamp: '1764000000123' },
      { key: Buffer.from([255, 0]), value: null, partition: 2, timestamp: '1764000000124' },
      { key: null, value: '', headers: [['only', null]], partition: 2, timestamp: '1764000000125' },
      { key: 'k4', value: 'x'.repeat(10_000), partition: 0, timestamp: '1764000000126' },
    ];
    const producer = facade.producer({ delivery: 'idempotent', compression });
    await producer.connect();
    try {
      await producer.send(topic, records);
    } finally {
      await producer.disconnect();
    }
    const read = await readBack(topic, records.length);
    expect(read.map((r) => ({ partition: r.partition, key: r.key, value: r.value, headers: r.headers, timestamp: r.timestamp }))).toEqual(
      [records[3]!, records[0]!, records[1]!, records[2]!].map((r) => ({
        partition: r.partition,
        key: bytes(r.key ?? null),
        value: bytes(r.value),
        headers: (r.headers ?? []).map(([k, v]) => [k, bytes(v)]),
        timestamp: r.timestamp,
      })),
    );
  });

  it.skipIf(name !== 'kafkajs')('refuses a zstd producer at once (kafkajs cannot compress zstd here)', () => {
    expect(() => facade.producer({ delivery: 'bounded', compression: 'zstd' })).toThrow(/zstd compression needs KAFKA_CLIENT=platformatic/);
  });

  it.each(producible.filter((c) => c !== 'none'))('compresses in %s (a batch only its compressed size lets through)', async (compression) => {
    const topic = uniqueName(`facade-codec-${compression}`);
    // 200 KB that compress to a few hundred bytes, into a topic that takes batches of at most 20 KB.
    await admin.createTopics([{ topic, numPartitions: 1, configEntries: [{ name: 'max.message.bytes', value: '20000' }] }]);
    const value = 'spanledger '.repeat(20_000);
    const plain = facade.producer({ delivery: 'bounded' });
    const compressed = facade.producer({ delivery: 'bounded', compression });
    await plain.connect();
    await compressed.connect();
    try {
      await expect(plain.send(topic, [{ value }])).rejects.toSatisfy((e: unknown) => kafkaFailure(e).kind === 'refused');
      await compressed.send(topic, [{ value, key: 'k' }]);
    } finally {
      await plain.disconnect();
      await compressed.disconnect();
    }
    const read = await readBack(topic, 1);
    expect(read.map((r) => r.value?.toString())).toEqual([value]);
  });

  it('puts a keyed record on the partition kafkajs (and Java) would', async () => {
    const topic = uniqueName('facade-keys');
    const partitionCount = 7;
    await admin.createTopics([{ topic, numPartitions: partitionCount }]);
    const keys = Array.from({ length: 60 }, (_, i) => `tenant-${i}-${'x'.repeat(i % 9)}`);
    // Idempotent: a bounded producer's retry after a slow answer may write a record twice (seen on
    // a loaded machine: 84 records for 60 keys), and this test counts them.
    const producer = facade.producer({ delivery: 'idempotent' });
    await producer.connect();
    try {
      await producer.send(topic, keys.map((key) => ({ key, value: key })));
    } finally {
      await producer.disconnect();
    }
    const read = await readBack(topic, keys.length);
    const where = new Map(read.map((r) => [r.key!.toString(), r.partition]));
    expect(read).toHaveLength(keys.length);
    expect(Object.fromEntries(keys.map((k) => [k, where.get(k)]))).toEqual(Object.fromEntries(keys.map((k) => [k, kafkajsPartition(k, partitionCount)])));
    // The keys do cover several partitions (else the check says little).
    expect(new Set(where.values()).size).toBeGreaterThan(4);
  });

  it.each(['bounded', 'idempotent'] as const)('refuses (%s) a record over the topic\'s max.message.bytes at once, as a refusal of the records', async (delivery) => {
    const topic = uniqueName('facade-too-large');
    await admin.createTopics([{ topic, numPartitions: 1, configEntries: [{ name: 'max.message.bytes', value: '2000' }] }]);
    const producer = facade.producer({ delivery });
    await producer.connect();
    try {
      const started = Date.now();
      const error = await producer.send(topic, [{ value: Buffer.alloc(10_000, 7) }]).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeDefined();
      expect(kafkaFailure(error)).toEqual({ kind: 'refused', refusal: 'MESSAGE_TOO_LARGE', scope: 'records' });
      // Not retried: the first answer is final (retries would take seconds).
      expect(Date.now() - started).toBeLessThan(1_500);
      // The producer still works for records that fit.
      await producer.send(topic, [{ value: 'fits' }]);
    } finally {
      await producer.disconnect();
    }
    expect((await readBack(topic, 1)).map((r) => r.value?.toString())).toEqual(['fits']);
  });

  it('refuses a record for a partition the topic does not have (the client would wrap it around)', async () => {
    const topic = uniqueName('facade-partitions');
    await admin.createTopics([{ topic, numPartitions: 3 }]);
    const producer = facade.producer({ delivery: 'bounded' });
    await producer.connect();
    try {
      const error = await producer.send(topic, [{ value: 'x', partition: 3 }]).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(kafkaFailure(error)).toEqual({ kind: 'refused', refusal: 'UNKNOWN_TOPIC_OR_PARTITION', scope: 'topic' });
    } finally {
      await producer.disconnect();
    }
    // Right after creating the topic a broker may still answer "not the leader": retried, bounded.
    const deadline = Date.now() + 30_000;
    expect((await endOffsets(admin, topic, () => Date.now() < deadline)).map((p) => p.high)).toEqual([0n, 0n, 0n]);
  });

  it('gives up within seconds on a broker that cannot be reached, as a failure worth retrying', async () => {
    const unreachable = createFacade({ brokers: ['127.0.0.1:1'], clientId: 'facade-test-unreachable', logger: pino({ level: 'silent' }) });
    const producer = unreachable.producer({ delivery: 'bounded' });
    const started = Date.now();
    const error = await producer.send(uniqueName('facade-unreachable'), [{ value: 'x' }]).then(
      () => undefined,
      (e: unknown) => e,
    );
    await producer.disconnect();
    expect(kafkaFailure(error)).toEqual({ kind: 'retry' });
    expect(Date.now() - started).toBeLessThan(10_000);
    const unreachableAdmin = unreachable.admin();
    await expect(unreachableAdmin.connect()).rejects.toSatisfy((e: unknown) => kafkaFailure(e).kind === 'retry');
    await unreachableAdmin.disconnect();
  });

  it('rejects a send to a topic the cluster does not have as a refusal of the topic (a retry while it may be new)', async () => {
    const producer = facade.producer({ delivery: 'bounded' });
    await producer.connect();
    try {
      const error = await producer.send(uniqueName('facade-no-such-topic'), [{ value: 'x' }]).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(kafkaFailure(error)).toEqual({ kind: 'refused', refusal: 'UNKNOWN_TOPIC_OR_PARTITION', scope: 'topic' });
      expect(kafkaFailure(error, { topicMayBeNew: true })).toEqual({ kind: 'retry' });
    } finally {
      await producer.disconnect();
    }
  });
});
