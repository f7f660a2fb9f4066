import type { OutgoingRecord } from './facade.js';

/**
 * Kafka's murmur2 of a key as Java's `Utils.murmur2` gives it (a signed 32-bit integer). Each
 * adapter passes its own library's (both are Java-compatible), so that this module loads neither
 * client library: a process loads only the client it runs (@platformatic/kafka alone costs ~0.9 s
 * of CPU to load).
 */
export type Murmur2 = (key: Buffer) => number;

/**
 * Where a record goes, the same for every client behind the facade, and the per-partition split
 * of a send (see `sendPerPartition` for why).
 */

/**
 * The partition Java's DefaultPartitioner and kafkajs' DefaultPartitioner give a keyed record:
 * murmur2 of the key bytes, made positive by masking the sign bit, modulo the partition count.
 * @platformatic/kafka's own default (`murmur2 >>> 0`) disagrees for every key whose hash is
 * negative, which would split a tenant's records between two partitions when other producers
 * write the same keys.
 */
export function keyedPartition(key: Buffer, partitionCount: number, murmur2: Murmur2): number {
  return positiveHash(key, murmur2) % partitionCount;
}

/** murmur2 of the key made positive by masking the sign bit (Java's `Utils.toPositive`). */
function positiveHash(key: Buffer, murmur2: Murmur2): number {
  return murmur2(key) & 0x7fffffff;
}

/**
 * The partitioner given to @platformatic/kafka, which takes the result modulo the topic's
 * partition count itself (Producer#performSend): a keyed record gets the positive murmur2 hash,
 * one without a key the next partition in turn (the client's partitioner hook is also called for
 * records without a key, and its own round robin is then skipped).
 */
export class JavaCompatiblePartitioner {
  private readonly turns = new Map<string, number>();

  constructor(private readonly murmur2: Murmur2) {}

  partition(topic: string, key: Buffer | undefined): number {
    if (key !== undefined && Buffer.isBuffer(key)) return positiveHash(key, this.murmur2);
    return this.nextTurn(topic);
  }

  /** The next partition in turn for a record without a key (to be taken modulo the partition count). */
  nextTurn(topic: string): number {
    const turn = this.turns.get(topic) ?? 0;
    this.turns.set(topic, (turn + 1) % 0x7fffffff);
    return turn;
  }
}

/** A record's key as the partitioner hashes it: strings as UTF-8 bytes (as kafkajs and Java do); none for null or missing. */
export function keyBytes(key: OutgoingRecord['key']): Buffer | undefined {
  if (key === null || key === undefined) return undefined;
  return typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
}

/** A record names a partition the topic does not have (the clients would wrap it around or stall). */
export class PartitionOutOfRange extends Error {
  constructor(
    readonly topic: string,
    readonly partition: number,
    readonly partitionCount: number,
  ) {
    super(`${topic} has no partition ${partition} (it has ${partitionCount})`);
  }
}

/**
 * The records of one send by partition, each partition's records in the order given: an explicit
 * partition as given (one the topic does not have throws PartitionOutOfRange), a keyed record
 * where murmur2 puts it (`keyedPartition`), and the records without key and partition all on one
 * partition, the next in turn (`unkeyedTurn`, taken modulo the count: sticky per send as Java's
 * producer is since KIP-480, so that such a send is one request, not one per partition).
 */
export function recordsByPartition(topic: string, records: readonly OutgoingRecord[], partitionCount: number, unkeyedTurn: () => number, murmur2: Murmur2): Map<number, OutgoingRecord[]> {
  const byPartition = new Map<number, OutgoingRecord[]>();
  let unkeyedPartition: number | undefined;
  for (const record of records) {
    let partition: number;
    if (record.partition !== undefined) {
      partition = record.partition;
      if (!Number.isInteger(partition) || partition < 0 || partition >= partitionCount) throw new PartitionOutOfRange(topic, partition, partitionCount);
    } else {
      const key = keyBytes(record.key);
      if (key !== undefined) partition = keyedPartition(key, partitionCount, murmur2);
      else partition = unkeyedPartition ??= unkeyedTurn() % partitionCount;
    }
    const group = byPartition.get(partition);
    if (group === undefined) byPartition.set(partition, [{ ...record, partition }]);
    else group.push({ ...record, partition });
  }
  return byPartition;
}

/**
 * Sends each partition's records as a send of its own, all at once, and resolves only once every
 * one succeeded; rejects (with the first failure) only once every one has settled, so that no
 * request of this send is still under way when the caller retries it (which would race it and
 * could reorder a partition's records).
 *
 * Why one send per partition: kafkajs 2.2.4 loses acknowledged records when a send spans several
 * brokers and a partition leader dies during it (tulios/kafkajs#1303). Its retry re-sends only to
 * the brokers that have not answered yet; a partition whose leadership moved to a broker that had
 * already answered for its own partitions is skipped, and send() resolves as if it were written
 * (seen on our 3-broker cluster: 50 of 25,200 spans missing after a leader was killed). A send of
 * one partition has one broker: its retry always goes to the partition's current leader.
 * @platformatic/kafka (2.12) does not lose records there: a request answered with an error for
 * any partition fails, and send() rejects once its retries run out. It retries a request of
 * several partitions as a whole at the leader of its first partition, though
 * (Producer#performSingleDestinationSend), so after a failover that split them between brokers
 * its retries fail until they run out and the caller's retry (regrouped by the new leaders) lands
 * them; slower, and what was taken meanwhile is written again, but nothing acknowledged is lost.
 * So its adapter keeps one send per call (fewer requests); the kafkajs adapter splits.
 */
export async function sendPerPartition(byPartition: ReadonlyMap<number, OutgoingRecord[]>, sendOne: (partition: number, records: OutgoingRecord[]) => Promise<void>): Promise<void> {
  const sends = [...byPartition].map(([partition, records]) => sendOne(partition, records));
  const settled = await Promise.allSettled(sends);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

/**
 * Partition counts per topic, fetched when first needed, kept for `maxAgeMs` (as a client keeps
 * its metadata: Java's metadata.max.age.ms is 5 minutes) and forgotten on `forget` (after a failed
 * send, so that the next one asks again: a topic may have been recreated or grown).
 */
export class PartitionCounts {
  private readonly known = new Map<string, { count: number; at: number }>();
  private readonly asking = new Map<string, Promise<number>>();

  constructor(
    private readonly fetchCount: (topic: string) => Promise<number>,
    private readonly maxAgeMs = 5 * 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  async get(topic: string): Promise<number> {
    const known = this.known.get(topic);
    if (known !== undefined && this.now() - known.at < this.maxAgeMs) return known.count;
    let asking = this.asking.get(topic);
    if (asking === undefined) {
      asking = this.fetchCount(topic).finally(() => this.asking.delete(topic));
      this.asking.set(topic, asking);
    }
    const count = await asking;
    this.known.set(topic, { count, at: this.now() });
    return count;
  }

  forget(topic: string): void {
    this.known.delete(topic);
  }
}
