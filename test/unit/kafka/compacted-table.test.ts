import { describe, expect, it } from 'vitest';
import { endOffsets, PartitionPositions, tableKey } from '../../../src/kafka/compacted-table.js';

describe('compacted table: positions', () => {
  it('is caught up once every partition reached its end offset', () => {
    const p = new PartitionPositions();
    const ends = [
      { partition: 0, high: 3n },
      { partition: 1, high: 0n },
      { partition: 2, high: 5n, low: 5n },
    ];
    expect(p.behind(ends)).toEqual([{ partition: 0, at: 0n, end: 3n }]);
    p.advance(0, 2n);
    expect(p.reached(ends)).toBe(false);
    p.advance(0, 3n);
    expect(p.reached(ends)).toBe(true);
    expect(p.reached([{ partition: 3, high: 1n }])).toBe(false);
  });

  it('never moves back, and tells records handed over already from new ones', () => {
    const p = new PartitionPositions();
    p.advance(0, 10n);
    p.advance(0, 4n);
    expect(p.isNew(0, 9n)).toBe(false);
    expect(p.isNew(0, 10n)).toBe(true);
    expect(p.isNew(1, 0n)).toBe(true);
    expect(p.reached([{ partition: 0, high: 10n }])).toBe(true);
  });
});

describe('compacted table: keys', () => {
  it("is the key's UTF-8 text, or '' when there is no usable key", () => {
    expect(tableKey(Buffer.from('t/ü'))).toBe('t/ü');
    expect(tableKey(null)).toBe('');
    expect(tableKey(Buffer.alloc(0))).toBe('');
    expect(tableKey(Buffer.from([0x61, 0xff]))).toBe('');
  });
});

describe('compacted table: end offsets', () => {
  // The shape of kafkajs' KafkaJSProtocolError for NOT_LEADER_FOR_PARTITION, as a broker answers right after a topic is created.
  const notLeader = () => Object.assign(new Error('This server is not the leader for that topic-partition'), { type: 'NOT_LEADER_FOR_PARTITION', code: 6, retriable: true });

  it('retries errors the classifier calls retriable (a leader not elected yet) and returns the offsets', async () => {
    let calls = 0;
    const admin = {
      topicOffsets: async () => {
        calls++;
        if (calls < 3) throw notLeader();
        return [{ partition: 0, high: 7n, low: 0n }];
      },
    };
    await expect(endOffsets(admin, 't', () => true)).resolves.toEqual([{ partition: 0, high: 7n, low: 0n }]);
    expect(calls).toBe(3);
  });

  it('fails at once on other errors, and on retriable ones once it may no longer retry', async () => {
    let calls = 0;
    const refused = { topicOffsets: async () => { calls++; throw new Error('topic authorization failed'); } };
    await expect(endOffsets(refused, 't', () => true)).rejects.toThrow('topic authorization failed');
    expect(calls).toBe(1);
    calls = 0;
    const leaderless = { topicOffsets: async () => { calls++; throw notLeader(); } };
    await expect(endOffsets(leaderless, 't', () => calls < 2)).rejects.toThrow('not the leader');
    expect(calls).toBe(2);
  });
});
