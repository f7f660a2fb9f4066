import { murmur2 } from '@platformatic/kafka';
import { Partitioners, type PartitionerArgs } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import type { OutgoingRecord } from '../../../src/kafka/facade.js';
import { PartitionCounts, PartitionOutOfRange, recordsByPartition, sendPerPartition } from '../../../src/kafka/partitioner.js';

/** The partition kafkajs' DefaultPartitioner (Java's murmur2 partitioner) gives a keyed record. */
function kafkajsPartition(key: Buffer | string, partitionCount: number): number {
  const partitionMetadata = Array.from({ length: partitionCount }, (_, partitionId) => ({ partitionId, leader: 1 })) as PartitionerArgs['partitionMetadata'];
  return Partitioners.DefaultPartitioner()({ topic: 't', partitionMetadata, message: { key, value: null } });
}

function turns(): () => number {
  let turn = 0;
  return () => turn++;
}

describe('recordsByPartition', () => {
  it('puts keyed records where murmur2 (kafkajs, Java) says, keeping their order within each partition', () => {
    const records: OutgoingRecord[] = Array.from({ length: 200 }, (_, i) => ({ key: i % 3 === 0 ? Buffer.from(`tenant-${i % 17}`) : `tenant-${i % 17}`, value: `v${i}` }));
    const byPartition = recordsByPartition('t', records, 7, turns(), murmur2);
    expect([...byPartition.values()].flat()).toHaveLength(records.length);
    for (const [partition, group] of byPartition) {
      for (const r of group) {
        expect(r.partition).toBe(partition);
        expect(partition).toBe(kafkajsPartition(r.key as Buffer | string, 7));
      }
      // In the order given: the values' indexes rise.
      const indexes = group.map((r) => Number(String(r.value).slice(1)));
      expect(indexes).toEqual([...indexes].sort((a, b) => a - b));
    }
    expect(byPartition.size).toBeGreaterThan(3);
  });

  it('keeps an explicit partition and refuses one the topic does not have', () => {
    const byPartition = recordsByPartition('t', [{ value: 'a', partition: 2 }, { key: 'k', value: 'b', partition: 0 }, { value: 'c', partition: 2 }], 3, turns(), murmur2);
    expect([...byPartition].map(([p, rs]) => [p, rs.map((r) => r.value)])).toEqual([
      [2, ['a', 'c']],
      [0, ['b']],
    ]);
    for (const partition of [3, -1, 1.5]) {
      expect(() => recordsByPartition('t', [{ value: 'x', partition }], 3, turns(), murmur2)).toThrow(PartitionOutOfRange);
    }
  });

  it('puts the records without key of one send on one partition, the next send on the next', () => {
    const next = turns();
    const first = recordsByPartition('t', [{ value: 'a' }, { key: null, value: 'b' }, { value: 'c' }], 3, next, murmur2);
    const second = recordsByPartition('t', [{ value: 'd' }], 3, next, murmur2);
    expect([...first].map(([p, rs]) => [p, rs.map((r) => r.value)])).toEqual([[0, ['a', 'b', 'c']]]);
    expect([...second.keys()]).toEqual([1]);
  });
});

describe('sendPerPartition', () => {
  const split = new Map<number, OutgoingRecord[]>([
    [0, [{ value: 'a' }]],
    [1, [{ value: 'b' }]],
    [2, [{ value: 'c' }]],
  ]);

  it('sends every partition side by side and resolves once all succeeded', async () => {
    const started: number[] = [];
    const finish = new Map<number, () => void>();
    let resolved = false;
    const sending = sendPerPartition(split, (partition) => {
      started.push(partition);
      return new Promise<void>((resolve) => finish.set(partition, resolve));
    }).then(() => {
      resolved = true;
    });
    await Promise.resolve();
    expect(started).toEqual([0, 1, 2]);
    finish.get(2)!();
    finish.get(0)!();
    await new Promise((r) => setTimeout(r, 5));
    expect(resolved).toBe(false);
    finish.get(1)!();
    await sending;
    expect(resolved).toBe(true);
  });

  it('rejects when one partition failed, only once the others have settled', async () => {
    const finish = new Map<number, () => void>();
    let settled = false;
    const sending = sendPerPartition(split, (partition) =>
      partition === 1 ? Promise.reject(new Error('leader gone')) : new Promise<void>((resolve) => finish.set(partition, resolve)),
    ).finally(() => {
      settled = true;
    });
    sending.catch(() => undefined);
    await new Promise((r) => setTimeout(r, 5));
    // Partition 1 failed, but 0 and 2 are still under way: not settled yet.
    expect(settled).toBe(false);
    finish.get(0)!();
    finish.get(2)!();
    await expect(sending).rejects.toThrow('leader gone');
  });
});

describe('PartitionCounts', () => {
  it('asks once, keeps the count for its age, asks again after forget or when old', async () => {
    let now = 0;
    const asked: string[] = [];
    const counts = new PartitionCounts(
      async (topic) => {
        asked.push(topic);
        return 6;
      },
      1_000,
      () => now,
    );
    expect(await Promise.all([counts.get('t'), counts.get('t')])).toEqual([6, 6]);
    expect(asked).toEqual(['t']);
    counts.forget('t');
    await counts.get('t');
    now = 1_500;
    await counts.get('t');
    expect(asked).toEqual(['t', 't', 't']);
  });
});
