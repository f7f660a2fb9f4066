import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { countGroup, GroupWatch, joinWaitLine, joinWaitNoticeMs, partitionShortfall, type GroupCount } from '../../../src/workers/group-watch.js';
import type { GroupAdmin } from '../../../src/workers/group-watch.js';
import { FakeConsumer } from '../../support/fake-consumer.js';

/** A logger that keeps what it was told, by level. */
function recordingLogger() {
  const lines: Array<{ level: string; fields: Record<string, unknown>; msg: string }> = [];
  const at = (level: string) => (fields: Record<string, unknown>, msg: string) => lines.push({ level, fields, msg });
  return { lines, logger: { info: at('info'), warn: at('warn'), debug: at('debug') } as never };
}

describe('partitionShortfall', () => {
  it('warns when the group has more members than the topic has partitions, naming how many stay idle', () => {
    expect(partitionShortfall('spans', 'spanledger-spans', { partitions: 1, members: 3 })).toMatch(/^topic spans has 1 partition but group spanledger-spans has 3 members: 2 of them get no records\. Add partitions/);
    expect(partitionShortfall('spans', 'g', { partitions: 2, members: 3 })).toMatch(/has 2 partitions but group g has 3 members: 1 of them gets no records/);
  });

  it('is silent when every member can own a partition, or when the counts are unknown', () => {
    expect(partitionShortfall('spans', 'g', { partitions: 6, members: 6 })).toBeUndefined();
    expect(partitionShortfall('spans', 'g', { partitions: 6, members: 1 })).toBeUndefined();
    expect(partitionShortfall('spans', 'g', { partitions: 0, members: 2 })).toBeUndefined();
  });
});

describe('the join wait line', () => {
  it('names the group, the session timeout and, without an instance id, static membership as the cure', () => {
    expect(joinWaitLine('spanledger-spans', 30000, undefined)).toBe(
      'waiting to join group spanledger-spans: a previous member of this worker may still hold partitions until its session times out (KAFKA_SESSION_TIMEOUT_MS=30000); static membership (KAFKA_GROUP_INSTANCE_ID) removes this wait for a restart under the same id',
    );
    expect(joinWaitLine('g', 30000, 'spans-0')).toMatch(/unless it restarted as spans-0 \(static membership\)/);
  });

  it('comes after half the session timeout, at most 10 s', () => {
    expect(joinWaitNoticeMs(30000)).toBe(10000);
    expect(joinWaitNoticeMs(6000)).toBe(3000);
  });
});

describe('countGroup', () => {
  it("counts the topic's partitions and the group's members on one admin connection, and disconnects", async () => {
    const calls: string[] = [];
    const admin: GroupAdmin = {
      connect: async () => void calls.push('connect'),
      disconnect: async () => void calls.push('disconnect'),
      topicPartitions: async (topics) => new Map(topics.map((t) => [t, [{ partition: 0, leader: 1 }]])),
      describeGroups: async (groups) =>
        groups.map((group) => ({ group, state: 'Stable', members: ['a', 'b'].map((memberId) => ({ memberId, clientId: 'c', clientHost: 'h', groupInstanceId: null, assignment: {} })) })),
    };
    expect(await countGroup(admin, 'spans', 'g')).toEqual({ partitions: 1, members: 2 });
    expect(calls).toEqual(['connect', 'disconnect']);
  });

  it('counts a topic or group the broker does not know as zero', async () => {
    const admin: GroupAdmin = { connect: async () => {}, disconnect: async () => {}, topicPartitions: async () => new Map(), describeGroups: async () => [] };
    expect(await countGroup(admin, 'spans', 'g')).toEqual({ partitions: 0, members: 0 });
  });
});

describe('GroupWatch', () => {
  let consumer: FakeConsumer;
  let counts: GroupCount;
  let countCalls: number;
  const sessionTimeoutMs = 30000;

  beforeEach(() => {
    vi.useFakeTimers();
    consumer = new FakeConsumer('spans');
    counts = { partitions: 6, members: 1 };
    countCalls = 0;
  });
  afterEach(() => vi.useRealTimers());

  function watch(logger: never): GroupWatch {
    return new GroupWatch({
      consumer,
      topic: 'spans',
      group: 'g',
      logger,
      sessionTimeoutMs,
      countGroup: async () => {
        countCalls += 1;
        return counts;
      },
    });
  }

  it('says once why it waits when no join came within the notice time, and nothing when the join is quick', async () => {
    const slow = recordingLogger();
    watch(slow.logger).start();
    await vi.advanceTimersByTimeAsync(joinWaitNoticeMs(sessionTimeoutMs) - 1);
    expect(slow.lines).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(slow.lines).toEqual([{ level: 'info', fields: { group: 'g', sessionTimeoutMs }, msg: joinWaitLine('g', sessionTimeoutMs, undefined) }]);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(slow.lines).toHaveLength(1);

    consumer = new FakeConsumer('spans');
    const quick = recordingLogger();
    watch(quick.logger).start();
    await vi.advanceTimersByTimeAsync(2000);
    consumer.assign([0, 1]);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(quick.lines).toEqual([]);
  });

  it('waits again after its consumer restarts, and not after a crash it does not restart from, nor once stopped', async () => {
    const { lines, logger } = recordingLogger();
    const w = watch(logger);
    w.start();
    consumer.assign([0]);
    consumer.crash(new Error('ECONNREFUSED'), false);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(lines).toEqual([]);
    consumer.crash(new Error('coordinator moved'), true);
    await vi.advanceTimersByTimeAsync(joinWaitNoticeMs(sessionTimeoutMs));
    expect(lines.map((l) => l.msg)).toEqual([joinWaitLine('g', sessionTimeoutMs, undefined)]);
    w.stop();
    consumer.crash(new Error('again'), true);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(lines).toHaveLength(1);
  });

  it('checks partitions against members once per join and warns of a shortfall, not again for the same counts', async () => {
    const { lines, logger } = recordingLogger();
    watch(logger).start();
    consumer.assign([0, 1, 2, 3, 4, 5]);
    await vi.advanceTimersByTimeAsync(0);
    expect(countCalls).toBe(1);
    expect(lines).toEqual([]);

    counts = { partitions: 1, members: 3 };
    consumer.assign([]);
    await vi.advanceTimersByTimeAsync(0);
    consumer.assign([]);
    await vi.advanceTimersByTimeAsync(0);
    expect(countCalls).toBe(3);
    expect(lines).toEqual([{ level: 'warn', fields: { topic: 'spans', group: 'g', partitions: 1, members: 3 }, msg: partitionShortfall('spans', 'g', counts) }]);

    counts = { partitions: 1, members: 2 };
    consumer.assign([]);
    await vi.advanceTimersByTimeAsync(0);
    expect(lines.map((l) => l.fields.members)).toEqual([3, 2]);
  });

  it('takes a failed count as no news: logged at debug, the worker goes on', async () => {
    const { lines, logger } = recordingLogger();
    new GroupWatch({ consumer, topic: 'spans', group: 'g', logger, sessionTimeoutMs, countGroup: async () => Promise.reject(new Error('not authorized')) }).start();
    consumer.assign([0]);
    await vi.advanceTimersByTimeAsync(0);
    expect(lines.map((l) => [l.level, l.msg])).toEqual([['debug', 'could not compare partitions with group members']]);
  });
});
