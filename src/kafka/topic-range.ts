import { randomUUID } from 'node:crypto';
import type { ConsumedMessage } from '../pipeline/consumer-port.js';
import type { KafkaFacade } from './facade.js';

/** Where to stop reading each partition: the offset after the last record wanted. */
export type RangeEnds = ReadonlyMap<number, bigint>;

/**
 * Reads every record of `topic` from each partition's start up to (not including) its end in
 * `ends`, through a throwaway consumer group that is deleted afterwards. Partitions missing from
 * `ends` (or with nothing before their end) are not read. `onMessage` sees each partition's
 * records in offset order. Gaps (transaction markers, compaction) count as read through
 * `onFetchedThrough` where the client reports it.
 */
export async function readTopicRange(kafka: KafkaFacade, topic: string, ends: RangeEnds, onMessage: (partition: number, message: ConsumedMessage) => void, onProgress?: (read: number) => void): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  const group = `spanledger-range-read-${randomUUID()}`;
  try {
    const offsets = await admin.topicOffsets(topic);
    const remaining = new Map<number, bigint>();
    for (const o of offsets) {
      const end = ends.get(o.partition);
      if (end !== undefined && end > o.low) remaining.set(o.partition, end);
    }
    if (remaining.size === 0) return;
    const consumer = kafka.groupConsumer({ group, sessionTimeoutMs: 30_000, rebalanceTimeoutMs: 60_000, heartbeatIntervalMs: 3_000, maxInFlightBytes: 32 << 20, partitionsConcurrency: 1, maxWaitTimeMs: 250 });
    let read = 0;
    await consumer.connect();
    try {
      await consumer.subscribe(topic, true);
      await new Promise<void>((resolve, reject) => {
        const reached = (partition: number, next: bigint) => {
          const end = remaining.get(partition);
          if (end !== undefined && next >= end) {
            remaining.delete(partition);
            consumer.pause(topic, [partition]);
          }
          if (remaining.size === 0) resolve();
        };
        consumer.onCrash(({ error, restart }) => {
          if (!restart) reject(error);
        });
        consumer.onFetchedThrough?.((e) => {
          if (e.topic === topic) reached(e.partition, e.nextOffset);
        });
        consumer
          .run(async (batch) => {
            const { partition } = batch;
            for (const message of batch.messages) {
              const end = remaining.get(partition);
              if (end === undefined || message.offset >= end) {
                reached(partition, message.offset);
                return;
              }
              batch.resolveOffset(message.offset);
              onMessage(partition, message);
              read += 1;
              if ((read & 1023) === 0) onProgress?.(read);
              reached(partition, message.offset + 1n);
            }
            if (batch.undecodable !== undefined) reject(new Error(`${topic} partition ${partition}: ${batch.undecodable}`));
          })
          .catch(reject);
      });
      onProgress?.(read);
    } finally {
      await consumer.disconnect();
    }
  } finally {
    await admin.deleteGroups([group]).catch(() => undefined);
    await admin.disconnect();
  }
}
