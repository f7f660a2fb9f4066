/**
 * The @platformatic/kafka group consumer (src/kafka/platformatic/group-consumer.ts) against the
 * real broker: what the pipeline's port promises, record by record.
 */
import type { IHeaders, Kafka } from 'kafkajs';
import pino from 'pino';
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { headersInOrder, orderedHeaders, type HeaderList } from '../../src/kafka/ordered-headers.js';
import { installCodecGuard } from '../../src/kafka/platformatic/codec-guard.js';
import { PlatformaticGroupConsumer } from '../../src/kafka/platformatic/group-consumer.js';
import type { ConsumedBatch, ConsumedMessage } from '../../src/pipeline/consumer-port.js';
import { createTopic, kafkaClient, sleep, uniqueName } from '../support/harness.js';
import { kcatProduce, kcatSkipReason } from '../support/kcat.js';

const brokers = inject('kafkaBrokers');
const logger = pino({ level: 'warn' });
let kafka: Kafka;
const consumers: PlatformaticGroupConsumer[] = [];

interface Seen {
  partition: number;
  message: ConsumedMessage;
}

/** A member that records every batch, resolves every record, and pauses a partition that reports `undecodable` (as the pipeline does). */
class Member {
  readonly consumer: PlatformaticGroupConsumer;
  readonly seen: Seen[] = [];
  readonly undecodable: Array<{ partition: number; reason: string; after: bigint[] }> = [];
  readonly joins: Array<Record<string, number[]>> = [];
  /** Per batch: its partition and whether it was stale when handled. */
  readonly batches: Array<{ partition: number; stale: boolean }> = [];
  readonly fetchedThrough = new Map<number, bigint>();
  resolve = true;
  /** Called after each batch with the partition's next offset (what a commit would carry). */
  afterBatch: ((partition: number, next: bigint) => void) | undefined;

  constructor(
    readonly topic: string,
    group: string,
    extra: { rebalanceProtocol?: 'cooperative' | 'eager'; groupInstanceId?: string; maxWaitTimeMs?: number } = {},
  ) {
    this.consumer = new PlatformaticGroupConsumer(
      { brokers: brokers.split(','), clientId: 'platformatic-consumer-test', logger },
      { group, sessionTimeoutMs: 10_000, rebalanceTimeoutMs: 10_000, heartbeatIntervalMs: 500, maxInFlightBytes: 64 << 20, partitionsConcurrency: 4, ...extra },
    );
    consumers.push(this.consumer);
    this.consumer.onGroupJoin((e) => this.joins.push(e.assignment));
    this.consumer.onFetchedThrough?.((e) => this.fetchedThrough.set(e.partition, e.nextOffset));
  }

  async start(): Promise<void> {
    await this.consumer.connect();
    await this.consumer.subscribe(this.topic, true);
    await this.consumer.run(async (batch: ConsumedBatch) => {
      this.batches.push({ partition: batch.partition, stale: batch.isStale() });
      for (const message of batch.messages) {
        this.seen.push({ partition: batch.partition, message });
        if (this.resolve) batch.resolveOffset(message.offset);
      }
      const last = batch.messages.at(-1);
      if (last !== undefined && this.resolve) this.afterBatch?.(batch.partition, last.offset + 1n);
      if (batch.undecodable !== undefined) {
        this.undecodable.push({ partition: batch.partition, reason: batch.undecodable, after: batch.messages.map((m) => m.offset) });
        this.consumer.pause(this.topic, [batch.partition]);
      }
    });
  }

  of(partition: number): ConsumedMessage[] {
    return this.seen.filter((s) => s.partition === partition).map((s) => s.message);
  }

  get assignment(): number[] {
    return this.joins.at(-1)?.[this.topic] ?? [];
  }
}

async function waitFor(what: string, check: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

interface Produced {
  key: Buffer | null;
  value: Buffer | null;
  headers: HeaderList;
}

async function produce(topic: string, partition: number, records: Produced[]): Promise<void> {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    await producer.send({ topic, acks: -1, messages: records.map((r) => ({ partition, key: r.key, value: r.value, headers: headersInOrder(r.headers) as IHeaders })) });
  } finally {
    await producer.disconnect();
  }
}

/** Records with binary keys and values, repeated header keys, null header values and null values. */
function hostileRecords(partition: number, count: number): Produced[] {
  return Array.from({ length: count }, (_, i) => ({
    key: i % 7 === 0 ? null : Buffer.from([partition, i, 0x00, 0xff]),
    value: i % 11 === 5 ? null : Buffer.concat([Buffer.from(`p${partition}-r${i}-`), Buffer.from([0xfe, 0x00, 0x80])]),
    headers: [
      ['tenant-id', Buffer.from(`t${partition}`)],
      ['x', Buffer.from([0xff, i])],
      ['tenant-id', null],
      ['9', Buffer.from('integer-like key, listed first by objects')],
      ['x', Buffer.from('second x')],
      ['__proto__', Buffer.from('not a prototype')],
    ],
  }));
}

function plainRecords(prefix: string, count: number): Produced[] {
  return Array.from({ length: count }, (_, i) => ({ key: null, value: Buffer.from(`${prefix}-${i}`), headers: [] }));
}

beforeAll(() => {
  kafka = kafkaClient(brokers);
});

/**
 * `first` consumes the 4 partitions of `topic` under a steady load (2 records a partition every
 * `pauseMs`, values prefixed `label`); a second member joins and the group splits them 2 and 2.
 */
async function splitUnderLoad(topic: string, group: string, first: Member, label: string, pauseMs: number): Promise<{ second: Member; stopLoad: () => Promise<void> }> {
  let producing = true;
  const producer = (async () => {
    for (let round = 0; producing; round += 1) {
      for (const p of [0, 1, 2, 3]) await produce(topic, p, plainRecords(`${label}${round}`, 2));
      await sleep(pauseMs);
    }
  })();
  await waitFor('records flowing', () => first.seen.length > 16);
  const second = new Member(topic, group);
  await second.start();
  await waitFor('partitions split', () => first.assignment.length === 2 && second.assignment.length === 2, 60_000);
  return {
    second,
    stopLoad: async () => {
      producing = false;
      await producer;
    },
  };
}

afterEach(async () => {
  for (const c of consumers.splice(0)) await c.disconnect().catch(() => {});
  installCodecGuard();
});


describe('PlatformaticGroupConsumer on a real broker', () => {
  it('delivers several partitions in offset order with exact bytes and headers in wire order', async () => {
    const topic = uniqueName('pfc-order');
    await createTopic(kafka, topic, 3);
    const produced = new Map<number, Produced[]>();
    for (const p of [0, 1, 2]) {
      produced.set(p, hostileRecords(p, 40));
      await produce(topic, p, produced.get(p)!);
    }
    const member = new Member(topic, uniqueName('g'));
    await member.start();
    await waitFor('every record', () => member.seen.length >= 120);
    await sleep(500);
    expect(member.seen).toHaveLength(120);
    expect(member.assignment).toEqual([0, 1, 2]);
    for (const p of [0, 1, 2]) {
      const got = member.of(p);
      expect(got.map((m) => m.offset)).toEqual(Array.from({ length: 40 }, (_, i) => BigInt(i)));
      got.forEach((m, i) => {
        const want = produced.get(p)![i]!;
        expect(m.key).toEqual(want.key);
        expect(m.value).toEqual(want.value);
        expect(orderedHeaders(m.headers!)).toEqual(want.headers);
        // The kafkajs-like object: repeated keys become arrays in wire order, null values kept.
        expect(m.headers!['tenant-id']).toEqual([Buffer.from(`t${p}`), null]);
        expect(m.headers!['x']).toEqual([Buffer.from([0xff, i]), Buffer.from('second x')]);
        expect(Object.getPrototypeOf(m.headers)).toBe(Object.prototype);
        expect(m.headers!['__proto__']).toEqual(Buffer.from('not a prototype'));
      });
      expect(member.fetchedThrough.get(p)).toBe(40n);
    }
  });

  it('pausing one partition stops only that one, and resuming delivers what it missed', async () => {
    const topic = uniqueName('pfc-pause');
    await createTopic(kafka, topic, 2);
    const member = new Member(topic, uniqueName('g'));
    await member.start();
    await waitFor('assignment', () => member.assignment.length === 2);
    member.consumer.pause(topic, [0]);
    await produce(topic, 0, plainRecords('a', 10));
    await produce(topic, 1, plainRecords('b', 10));
    await waitFor('partition 1', () => member.of(1).length === 10);
    await sleep(1500);
    expect(member.of(0)).toHaveLength(0);
    member.consumer.resume(topic, [0]);
    await waitFor('partition 0 after resume', () => member.of(0).length === 10);
    expect(member.of(0).map((m) => m.value!.toString())).toEqual(plainRecords('a', 10).map((r) => r.value!.toString()));
  });

  it('records not resolved are fetched again; a new member resumes from the committed offset', async () => {
    const topic = uniqueName('pfc-commit');
    const group = uniqueName('g');
    await createTopic(kafka, topic, 1);
    await produce(topic, 0, plainRecords('c', 20));
    const first = new Member(topic, group);
    first.resolve = false;
    await first.start();
    await waitFor('a first delivery', () => first.seen.length >= 20);
    await waitFor('the same records again (nothing resolved)', () => first.seen.filter((s) => s.message.offset === 0n).length >= 2);
    await first.consumer.commitOffsets([{ topic, partition: 0, offset: 12n }]);
    await first.consumer.disconnect();
    const second = new Member(topic, group);
    await second.start();
    await waitFor('the records after the commit', () => second.seen.length >= 8);
    await sleep(500);
    expect(second.seen.map((s) => s.message.offset)).toEqual(Array.from({ length: 8 }, (_, i) => BigInt(12 + i)));
  });

  it('a commit does not wait behind a fetch the broker holds (caught up: a long poll of maxWaitTime)', async () => {
    const topic = uniqueName('pfc-commit-poll');
    const group = uniqueName('g');
    await createTopic(kafka, topic, 1);
    await produce(topic, 0, plainRecords('p', 5));
    // Caught up, the member's fetch waits at the broker up to maxWaitTime for new records, and is
    // sent again as soon as it returns: some fetch is always held there.
    const maxWaitTimeMs = 6_000;
    const member = new Member(topic, group, { maxWaitTimeMs });
    await member.start();
    await waitFor('every record', () => member.seen.length === 5);
    await sleep(500);
    // A broker answers one connection's requests in order: commits sharing the fetches'
    // connection would wait for the held fetch to end (three in a row: more than maxWaitTime).
    const started = Date.now();
    for (const offset of [3n, 4n, 5n]) await member.consumer.commitOffsets([{ topic, partition: 0, offset }]);
    expect(Date.now() - started).toBeLessThan(maxWaitTimeMs / 2);
    const admin = kafka.admin();
    await admin.connect();
    try {
      const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
      expect(committed!.partitions.find((c) => c.partition === 0)!.offset).toBe('5');
    } finally {
      await admin.disconnect();
    }
  });

  const kcatMissing = kcatSkipReason();
  it.skipIf(kcatMissing !== undefined)('reads batches of all five codecs written by librdkafka (kcat)', async () => {
    const codecs = ['none', 'gzip', 'snappy', 'lz4', 'zstd'];
    const topic = uniqueName('pfc-codecs');
    await createTopic(kafka, topic, codecs.length);
    for (const [p, codec] of codecs.entries()) {
      await kcatProduce({ brokers, topic, partition: p, codec, headers: { codec }, lines: Array.from({ length: 500 }, (_, i) => `${codec}-${i}-${'z'.repeat(i % 50)}`) });
    }
    const member = new Member(topic, uniqueName('g'));
    await member.start();
    await waitFor('every record', () => member.seen.length >= 2500, 60_000);
    for (const [p, codec] of codecs.entries()) {
      const got = member.of(p);
      expect(got.map((m) => m.value!.toString())).toEqual(Array.from({ length: 500 }, (_, i) => `${codec}-${i}-${'z'.repeat(i % 50)}`));
      expect(orderedHeaders(got[0]!.headers!)).toEqual([['codec', Buffer.from(codec)]]);
    }
  });

  it.skipIf(kcatMissing !== undefined)('a batch that cannot be decompressed stops only its partition, after the records before it', async () => {
    const topic = uniqueName('pfc-undecodable');
    await createTopic(kafka, topic, 2);
    await produce(topic, 0, plainRecords('before', 5));
    await kcatProduce({ brokers, topic, partition: 0, codec: 'zstd', headers: {}, lines: Array.from({ length: 50 }, (_, i) => `zstd-${i}`) });
    await produce(topic, 0, plainRecords('after', 5));
    await produce(topic, 1, plainRecords('other', 30));
    // No zstd in this member (as a worker with SPANLEDGER_TEST_DISABLE_CODECS=zstd).
    installCodecGuard(new Set(['zstd']));
    const member = new Member(topic, uniqueName('g'));
    await member.start();
    await waitFor('the undecodable batch', () => member.undecodable.length > 0);
    await waitFor('partition 1', () => member.of(1).length === 30);
    await produce(topic, 1, plainRecords('later', 5));
    await waitFor('partition 1 keeps flowing', () => member.of(1).length === 35);
    expect(member.of(0).map((m) => m.value!.toString())).toEqual(plainRecords('before', 5).map((r) => r.value!.toString()));
    expect(member.undecodable).toHaveLength(1);
    expect(member.undecodable[0]!.partition).toBe(0);
    expect(member.undecodable[0]!.reason).toMatch(/^zstd decompression failed: no zstd codec in this worker \((batch of 50 records at offsets 5\.\.54|batch at offset 5)\)$/);
  });

  it('cooperative: a second member joining takes partitions without making the first member\'s retained ones stale', async () => {
    const topic = uniqueName('pfc-coop');
    const group = uniqueName('g');
    await createTopic(kafka, topic, 4);
    const first = new Member(topic, group);
    await first.start();
    await waitFor('first member holds all', () => first.assignment.length === 4);
    const { second, stopLoad } = await splitUnderLoad(topic, group, first, 'r', 100);
    const handledBefore = first.batches.length;
    await waitFor('more batches on the retained partitions', () => first.batches.length > handledBefore + 4);
    await stopLoad();
    const retained = first.assignment;
    expect([...retained, ...second.assignment].sort()).toEqual([0, 1, 2, 3]);
    // The retained partitions were never taken away: in every assignment the first member was told of.
    for (const assignment of first.joins) for (const p of retained) expect(assignment[topic]).toContain(p);
    expect(first.batches.filter((b) => retained.includes(b.partition) && b.stale)).toEqual([]);
  });

  it('cooperative: commits made all through a rebalance start no further one, keep the assignment sticky, and land', async () => {
    const topic = uniqueName('pfc-coop-commit');
    const group = uniqueName('g');
    await createTopic(kafka, topic, 4);
    const first = new Member(topic, group);
    const refused: Array<{ partition: number; error: unknown }> = [];
    const lastCommitted = new Map<number, bigint>();
    // As the pipeline does: a commit after every batch, whatever the group is doing.
    first.afterBatch = (partition, next) => {
      first.consumer.commitOffsets([{ topic, partition, offset: next }]).then(
        () => lastCommitted.set(partition, next > (lastCommitted.get(partition) ?? -1n) ? next : lastCommitted.get(partition)!),
        (error: unknown) => refused.push({ partition, error }),
      );
    };
    await first.start();
    await waitFor('first member holds all', () => first.assignment.length === 4);
    const { stopLoad } = await splitUnderLoad(topic, group, first, 'c', 50);
    // A cooperative split is two rounds, each telling the first member its partitions (2 both
    // times): let the second round land before counting, or its join counts as a further one.
    await sleep(3_000);
    const joinsAtSplit = first.joins.length;
    // Several heartbeat intervals (500 ms): a refused commit that made the member rejoin would show as more joins.
    await sleep(4_000);
    await stopLoad();
    expect(first.joins.length).toBe(joinsAtSplit);
    const retained = first.assignment;
    for (const assignment of first.joins) for (const p of retained) expect(assignment[topic]).toContain(p);
    // Only commits of the partitions that moved may be refused (dropped at their revocation).
    expect(refused.filter((r) => retained.includes(r.partition))).toEqual([]);
    await sleep(500);
    const admin = kafka.admin();
    await admin.connect();
    try {
      const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
      for (const p of retained) expect(BigInt(committed!.partitions.find((c) => c.partition === p)!.offset)).toBe(lastCommitted.get(p));
    } finally {
      await admin.disconnect();
    }
  });

  it('eager (roundrobin) with static membership: a second member takes half, every record is read', async () => {
    const topic = uniqueName('pfc-eager');
    const group = uniqueName('g');
    await createTopic(kafka, topic, 4);
    for (const p of [0, 1, 2, 3]) await produce(topic, p, plainRecords(`e${p}`, 5));
    const first = new Member(topic, group, { rebalanceProtocol: 'eager', groupInstanceId: uniqueName('static') });
    await first.start();
    await waitFor('first member reads all', () => first.seen.length === 20);
    const second = new Member(topic, group, { rebalanceProtocol: 'eager', groupInstanceId: uniqueName('static') });
    await second.start();
    await waitFor('partitions split', () => first.assignment.length === 2 && second.assignment.length === 2, 60_000);
    for (const p of [0, 1, 2, 3]) await produce(topic, p, plainRecords(`late${p}`, 3));
    const late = () => [...first.seen, ...second.seen].filter((s) => s.message.value!.toString().startsWith('late'));
    await waitFor('the records written after the split', () => late().length === 12);
    for (const member of [first, second]) {
      for (const p of member.assignment) expect(member.of(p).filter((m) => m.value!.toString().startsWith('late')).map((m) => m.offset)).toEqual([5n, 6n, 7n]);
    }
    // A static member's graceful stop does not leave the group (KIP-345): its partitions wait for
    // it until the session timeout (10 s) ends, and only then does the other member take over.
    const stoppedAt = Date.now();
    await first.consumer.disconnect();
    await waitFor('second member holds all', () => second.assignment.length === 4, 60_000);
    expect(Date.now() - stoppedAt).toBeGreaterThan(9_000);
  });
});
