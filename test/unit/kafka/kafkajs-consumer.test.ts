import { createRequire } from 'node:module';
import type { Kafka } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { coordinatorGone } from '../../../src/kafka/kafkajs/coordinator-fixes.js';
import { KafkaJsGroupConsumer } from '../../../src/kafka/kafkajs/group-consumer.js';
import { BOUNDED_RETRY, CLIENT_RETRY, CONSUMER_RETRY } from '../../../src/kafka/kafkajs/kafka.js';

// kafkajs' own classes, as the adapter's consumers use them (the fixes apply when the module above loads).
const require = createRequire(import.meta.url);
const OffsetManager = require('kafkajs/src/consumer/offsetManager/index.js') as new (options: Record<string, unknown>) => {
  coordinator: unknown;
  commitOffsets(offsets: unknown): Promise<void>;
};
const ConsumerGroup = require('kafkajs/src/consumer/consumerGroup.js') as new (options: Record<string, unknown>) => {
  coordinator: unknown;
  memberId: string | null;
  leave(): Promise<void>;
};

const notCoordinator = Object.assign(new Error('This is not the correct coordinator for this group'), { type: 'NOT_COORDINATOR_FOR_GROUP', name: 'KafkaJSProtocolError', retriable: true });
const refused = Object.assign(new Error('Connection error: connect ECONNREFUSED 127.0.0.1:19092'), { name: 'KafkaJSConnectionError', code: 'ECONNREFUSED', retriable: true });

/** A broker as kafkajs' group code talks to it: what it was sent, and an answer per call. */
function broker(name: string, answer: (call: string) => Promise<unknown> = async () => ({})) {
  const calls: string[] = [];
  return {
    name,
    calls,
    isConnected: () => true,
    offsetCommit: (request: { topics: Array<{ partitions: Array<{ offset: string }> }> }) => (calls.push(`commit ${request.topics[0]!.partitions[0]!.offset}`), answer('commit')),
    leaveGroup: (request: { memberId: string }) => (calls.push(`leave ${request.memberId}`), answer('leave')),
  };
}

function clusterWith(coordinator: ReturnType<typeof broker>) {
  const committed = {};
  const cluster = { lookups: 0, committedOffsets: () => committed, refreshMetadata: async () => undefined, findGroupCoordinator: async () => ((cluster.lookups += 1), coordinator) };
  return cluster;
}

const offsets = (offset: string) => ({ topics: [{ topic: 'spans', partitions: [{ partition: 0, offset }] }] });

function offsetManager(cluster: ReturnType<typeof clusterWith>, coordinator: ReturnType<typeof broker>) {
  return new OffsetManager({ cluster, coordinator, memberAssignment: { spans: [0] }, topicConfigurations: {}, instrumentationEmitter: { emit: () => undefined }, groupId: 'g', generationId: 3, memberId: 'm-1' });
}

describe('kafkajs consumer: commits and leaves follow the group coordinator', () => {
  it('a commit the old coordinator refuses (NOT_COORDINATOR) fails, and the next goes to the coordinator of now', async () => {
    const moved = broker('node 3');
    const old = broker('node 1', async () => {
      throw notCoordinator;
    });
    const cluster = clusterWith(moved);
    const manager = offsetManager(cluster, old);
    await expect(manager.commitOffsets(offsets('10'))).rejects.toBe(notCoordinator);
    await manager.commitOffsets(offsets('11'));
    expect({ old: old.calls, moved: moved.calls, lookups: cluster.lookups }).toEqual({ old: ['commit 10'], moved: ['commit 11'], lookups: 1 });
  });

  it('so does a commit that cannot reach the coordinator (its broker is down)', async () => {
    const moved = broker('node 2');
    const old = broker('node 1', async () => {
      throw refused;
    });
    const manager = offsetManager(clusterWith(moved), old);
    await expect(manager.commitOffsets(offsets('10'))).rejects.toBe(refused);
    await manager.commitOffsets(offsets('11'));
    expect(moved.calls).toEqual(['commit 11']);
  });

  it('a commit refused for another reason changes nothing (the coordinator is not looked up)', async () => {
    const illegalGeneration = Object.assign(new Error('Specified group generation id is not valid'), { type: 'ILLEGAL_GENERATION', retriable: false });
    const old = broker('node 1', async () => {
      throw illegalGeneration;
    });
    const cluster = clusterWith(broker('node 2'));
    const manager = offsetManager(cluster, old);
    await expect(manager.commitOffsets(offsets('10'))).rejects.toBe(illegalGeneration);
    expect({ coordinator: manager.coordinator, lookups: cluster.lookups }).toEqual({ coordinator: old, lookups: 0 });
  });

  it('when no coordinator can be found now, the commit fails with its own error and keeps the coordinator it had', async () => {
    const old = broker('node 1', async () => {
      throw notCoordinator;
    });
    const cluster = {
      committedOffsets: () => ({}),
      refreshMetadata: async () => undefined,
      findGroupCoordinator: async () => {
        throw refused;
      },
    };
    const manager = new OffsetManager({ cluster, coordinator: old, memberAssignment: { spans: [0] }, topicConfigurations: {}, instrumentationEmitter: { emit: () => undefined }, groupId: 'g', generationId: 3, memberId: 'm-1' });
    await expect(manager.commitOffsets(offsets('10'))).rejects.toBe(notCoordinator);
    expect(manager.coordinator).toBe(old);
  });

  it('a crashed member leaves through the coordinator of now when the one of its last join is gone, so its member id holds no partitions', async () => {
    const moved = broker('node 3');
    const old = broker('node 1', async () => {
      throw refused;
    });
    const logger = { namespace: () => logger, info: () => undefined, debug: () => undefined, warn: () => undefined, error: () => undefined };
    const group = new ConsumerGroup({ logger, cluster: clusterWith(moved), groupId: 'g', topics: ['spans'], topicConfigurations: {}, instrumentationEmitter: { emit: () => undefined }, assigners: [] });
    group.coordinator = old;
    group.memberId = 'm-1';
    await group.leave();
    expect({ old: old.calls, moved: moved.calls, memberId: group.memberId }).toEqual({ old: ['leave m-1'], moved: ['leave m-1'], memberId: null });
  });

  it('a heartbeat that cannot reach the coordinator (its broker is down) fails, and the next goes to the coordinator of now', async () => {
    const moved = broker('node 2');
    const heartbeats: string[] = [];
    const old = { ...broker('node 1'), heartbeat: async () => (heartbeats.push('node 1'), Promise.reject(refused)) };
    Object.assign(moved, { heartbeat: async () => void heartbeats.push('node 2') });
    const logger = { namespace: () => logger, info: () => undefined, debug: () => undefined, warn: () => undefined, error: () => undefined };
    const group = new ConsumerGroup({ logger, cluster: clusterWith(moved), groupId: 'g', topics: ['spans'], topicConfigurations: {}, instrumentationEmitter: { emit: () => undefined }, assigners: [] });
    group.coordinator = old;
    group.memberId = 'm-1';
    const beat = (group as unknown as { heartbeat(o: { interval: number }): Promise<void> }).heartbeat.bind(group);
    await expect(beat({ interval: 0 })).rejects.toBe(refused);
    await beat({ interval: 0 });
    expect(heartbeats).toEqual(['node 1', 'node 2']);
  });

  it('tells a moved or unreachable coordinator from other failures, through kafkajs wrappers', () => {
    expect(coordinatorGone(notCoordinator)).toBe(true);
    expect(coordinatorGone(Object.assign(new Error('retries exceeded'), { name: 'KafkaJSNumberOfRetriesExceeded', originalError: refused }))).toBe(true);
    expect(coordinatorGone(Object.assign(new Error('not available'), { type: 'GROUP_COORDINATOR_NOT_AVAILABLE' }))).toBe(true);
    expect(coordinatorGone(Object.assign(new Error('rebalancing'), { type: 'REBALANCE_IN_PROGRESS' }))).toBe(false);
    expect(coordinatorGone(new TypeError('x is undefined'))).toBe(false);
  });
});

describe('kafkajs retry settings', () => {
  /** The longest a kafkajs retrier waits in all before giving up (its delays without the random factor). */
  const totalMs = (r: { initialRetryTime: number; maxRetryTime: number; multiplier: number; retries: number }) => {
    let sum = 0;
    for (let i = 0, delay = r.initialRetryTime; i < r.retries; i += 1, delay = Math.min(delay * r.multiplier, r.maxRetryTime)) sum += delay;
    return sum;
  };

  it('give every field (with NODE_ENV=test kafkajs would fill the rest with its test suite’s, giving up in about a second)', () => {
    for (const r of [CLIENT_RETRY, CONSUMER_RETRY, BOUNDED_RETRY]) expect(Object.keys(r).sort()).toEqual(['factor', 'initialRetryTime', 'maxRetryTime', 'multiplier', 'retries']);
  });

  it('a consumer rides out a broker outage of about a minute before it crashes (and rejoins under a new member id)', () => {
    expect(totalMs(CONSUMER_RETRY)).toBeGreaterThanOrEqual(55_000);
    expect(totalMs(CONSUMER_RETRY)).toBeLessThanOrEqual(65_000);
  });
});

describe('kafkajs group consumer', () => {
  /**
   * A kafkajs client whose consumer records its config and calls; each run() settles when the
   * test says (`joined()`), crashes are emitted by the test (`crash()`), as kafkajs' would be.
   */
  function recordingKafka(subscribe: () => Promise<void> = async () => undefined) {
    const listeners = new Map<string, Array<(event: { payload: unknown }) => void>>();
    const seen = {
      config: undefined as undefined | { retry?: { restartOnFailure?: (e: Error) => Promise<boolean> } },
      subscribes: 0,
      runs: 0,
      disconnects: 0,
      joined: () => undefined as void,
      crash: (error: Error) => {
        for (const l of listeners.get('consumer.crash') ?? []) l({ payload: { error, restart: false } });
      },
    };
    const kafka = {
      consumer: (config: NonNullable<typeof seen.config>) => {
        seen.config = config;
        return {
          events: { CRASH: 'consumer.crash', GROUP_JOIN: 'consumer.group_join' },
          on: (event: string, listener: (event: { payload: unknown }) => void) => listeners.set(event, [...(listeners.get(event) ?? []), listener]),
          subscribe: async () => ((seen.subscribes += 1), subscribe()),
          run: () => ((seen.runs += 1), new Promise<void>((resolve) => (seen.joined = resolve))),
          disconnect: async () => {
            seen.disconnects += 1;
          },
        };
      },
    } as unknown as Kafka;
    return { kafka, seen };
  }

  const options = { group: 'g', sessionTimeoutMs: 30_000, rebalanceTimeoutMs: 60_000, heartbeatIntervalMs: 3_000, maxInFlightBytes: 64 << 20, partitionsConcurrency: 1 };
  const retriesRanOut = Object.assign(new Error('Connection error: connect ECONNREFUSED'), { name: 'KafkaJSNumberOfRetriesExceeded', retryTime: 10 });
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  it('restarts a crashed consumer itself (kafkajs never does), and says so to its crash listeners', async () => {
    const { kafka, seen } = recordingKafka();
    const consumer = new KafkaJsGroupConsumer(kafka, options);
    const crashes: boolean[] = [];
    consumer.onCrash(({ restart }) => crashes.push(restart));
    expect(seen.config!.retry).toMatchObject(CONSUMER_RETRY);
    expect(await seen.config!.retry!.restartOnFailure!(retriesRanOut)).toBe(false);
    void consumer.run(async () => undefined);
    seen.joined();
    seen.crash(retriesRanOut);
    await sleep(50);
    expect({ runs: seen.runs, crashes }).toEqual({ runs: 2, crashes: [true] });
    // A crash for good (not retriable) is not restarted.
    seen.joined();
    seen.crash(Object.assign(new Error('bad'), { name: 'KafkaJSNonRetriableError', retriable: false }));
    await sleep(50);
    expect({ runs: seen.runs, crashes }).toEqual({ runs: 2, crashes: [true, false] });
  });

  it('after disconnect() no restart: neither a pending one nor one for a crash that comes during it', async () => {
    const { kafka, seen } = recordingKafka();
    const consumer = new KafkaJsGroupConsumer(kafka, options);
    const crashes: boolean[] = [];
    consumer.onCrash(({ restart }) => crashes.push(restart));
    void consumer.run(async () => undefined);
    seen.joined();
    seen.crash(retriesRanOut);
    await consumer.disconnect();
    seen.crash(retriesRanOut);
    await sleep(50);
    expect({ runs: seen.runs, disconnects: seen.disconnects, crashes }).toEqual({ runs: 1, disconnects: 1, crashes: [true, false] });
  });

  it('disconnects only once a join under way (a first run or a restart) has settled: kafkajs let such a join go on and reconnect after its disconnect', async () => {
    const { kafka, seen } = recordingKafka();
    const consumer = new KafkaJsGroupConsumer(kafka, options);
    void consumer.run(async () => undefined);
    seen.joined();
    seen.crash(retriesRanOut);
    await sleep(50);
    expect(seen.runs).toBe(2);
    const disconnected = consumer.disconnect();
    await sleep(20);
    expect(seen.disconnects).toBe(0);
    seen.joined();
    await disconnected;
    expect(seen.disconnects).toBe(1);
  });

  it('subscribes again while the broker asked does not know the new topic yet', async () => {
    let answers = 0;
    const { kafka, seen } = recordingKafka(async () => {
      answers += 1;
      if (answers < 3) throw Object.assign(new Error('This server does not host this topic-partition'), { name: 'KafkaJSProtocolError', type: 'UNKNOWN_TOPIC_OR_PARTITION', retriable: true });
    });
    await new KafkaJsGroupConsumer(kafka, options).subscribe('spans', true);
    expect(seen.subscribes).toBe(3);
  });
});
