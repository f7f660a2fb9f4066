import { describe, expect, it } from 'vitest';
import { FleetStatusReader, judge, renderFleetStatus, type StatusFetcher } from '../../../src/cli/fleet-status.js';
import { groupSpecs } from '../../../src/cli/status-command.js';
import type { KafkaAdmin } from '../../../src/kafka/facade.js';
import type { WorkerStatusJson } from '../../../src/observability/worker-status.js';

function workerStatus(workerId: string, partitions: number[], overrides: Partial<WorkerStatusJson> = {}): WorkerStatusJson {
  return {
    role: 'spans',
    group: 'spanledger-spans',
    topic: 'spans',
    workerId,
    version: '0.1.0',
    address: null,
    pid: 1,
    startedAt: '2026-01-01T00:00:00.000Z',
    uptimeSeconds: 60,
    ready: true,
    healthy: true,
    problems: [],
    partitions: partitions.map((partition) => ({ partition, committedOffset: '10', endOffset: '10', lag: '0', lastCommitAgeSeconds: 1, paused: null, stuckReason: null, bufferedRecords: 0, bufferedBytes: 0 })),
    inFlight: { records: 0, bytes: 0, budgetBytes: 16 << 20, maxBytesSeen: 0 },
    openTraces: null,
    totals: { consumed: 100, written: 100, deadLettered: 0 },
    rates: { windowSeconds: 60, consumedPerSecond: 1234.5, writtenPerSecond: 1200, deadLetteredPerSecond: 0.25 },
    process: { rssBytes: 150 << 20, heapUsedBytes: 50 << 20, eventLoopDelayMs: { p50: 10, p99: 20, max: 30, windowSeconds: 60 } },
    breakers: [],
    ...overrides,
  };
}

/** The admin calls the reader makes, answered from a fixed picture of the cluster. */
function fakeAdmin(): KafkaAdmin {
  const admin: Pick<KafkaAdmin, 'listTopics' | 'describeGroups' | 'committedOffsets' | 'topicOffsets'> = {
    listTopics: async () => ['spans', 'signals'],
    describeGroups: async (ids) =>
      ids.map((group) =>
        group === 'spanledger-spans'
          ? {
              group,
              state: 'Stable',
              members: [
                { memberId: 'm-a', clientId: 'spanledger@host-a:9464', clientHost: '/10.0.0.1', groupInstanceId: null, assignment: { spans: [0, 2] } },
                { memberId: 'm-b', clientId: 'spanledger@host-b:9464', clientHost: '/10.0.0.2', groupInstanceId: null, assignment: { spans: [1] } },
                // Between rebalances: no assignment yet.
                { memberId: 'm-c', clientId: 'spanledger@host-c:9464', clientHost: '/10.0.0.3', groupInstanceId: null, assignment: {} as Record<string, number[]> },
              ],
            }
          : { group, state: group === 'spanledger-rules' ? 'Empty' : 'Dead', members: [] },
      ),
    committedOffsets: async (group) =>
      group === 'spanledger-signals'
        ? []
        : [
            { topic: 'spans', partition: 0, offset: 10n },
            { topic: 'spans', partition: 1, offset: group === 'spanledger-rules' ? 4n : 10n },
            { topic: 'spans', partition: 2, offset: null },
          ],
    topicOffsets: async (topic) =>
      topic === 'spans'
        ? [0, 1, 2].map((partition) => ({ partition, high: partition === 2 ? 7n : 10n, low: partition === 2 ? 2n : 0n }))
        : [{ partition: 0, high: 5n, low: 0n }],
  };
  return admin as KafkaAdmin;
}

const fetchStatus: StatusFetcher = async (address) => {
  if (address === 'host-a:9464') return workerStatus('worker-a', [0, 2]);
  if (address === 'host-b:9464') return workerStatus('worker-b', [1], { breakers: [{ store: 'duckdb', state: 'open', since: '2026-12-01T18:00:00.000Z' }] });
  throw new Error('connect ECONNREFUSED');
};

const specs = groupSpecs({ spansGroup: 'spanledger-spans', rulesGroup: 'spanledger-rules', signalsGroup: 'spanledger-signals', spansTopic: 'spans', signalsTopic: 'signals' }, undefined);

describe('spanledger status', () => {
  it('finds every partition its owner from the member assignments, and its lag from the commits (none committed: all of it)', async () => {
    const fleet = await new FleetStatusReader(fakeAdmin(), { timeoutMs: 100, fetchStatus }).read(specs);
    const [spans, rules, signals] = fleet.groups;
    expect(spans!.partitions.map((p) => [p.partition, p.owner?.workerId ?? null, p.committed, p.end, p.lag])).toEqual([
      [0, 'worker-a', '10', '10', '0'],
      [1, 'worker-b', '10', '10', '0'],
      [2, 'worker-a', null, '7', '5'],
    ]);
    expect(spans!.members.map((m) => [m.address, m.state, m.reason])).toEqual([
      ['host-a:9464', 'ready', null],
      ['host-b:9464', 'degraded', 'breakers: duckdb open'],
      ['host-c:9464', 'unreachable', 'connect ECONNREFUSED'],
    ]);
    // A group with no members still shows what it committed and how far behind it is.
    expect(rules!.state).toBe('Empty');
    expect(rules!.partitions.map((p) => [p.partition, p.owner, p.committed, p.lag])).toEqual([
      [0, null, '10', '0'],
      [1, null, '4', '6'],
      [2, null, null, '5'],
    ]);
    expect(signals!.partitions.map((p) => [p.topic, p.committed, p.lag])).toEqual([['signals', null, '5']]);
  });

  it('renders the partitions and the workers as tables, unowned and unreachable said so', async () => {
    const fleet = await new FleetStatusReader(fakeAdmin(), { timeoutMs: 100, fetchStatus }).read(specs);
    const text = renderFleetStatus(fleet);
    const lines = text.split('\n');
    const row = (...cells: string[]) => lines.find((l) => cells.every((c) => l.includes(c)));
    expect(row('spanledger-spans', 'spans', ' 2 ', 'worker-a', ' - ', ' 7 ', ' 5 ')).toBeDefined();
    expect(row('spanledger-rules', 'spans', ' 1 ', '(unowned)', ' 4 ', ' 10 ', ' 6 ')).toBeDefined();
    expect(row('worker-a', 'host-a:9464', 'ready', '0,2', 'closed', '150 MiB', '1235', '1200', '0.3')).toBeDefined();
    expect(row('worker-b', 'degraded: breakers: duckdb open', 'duckdb:open')).toBeDefined();
    expect(row('host-c:9464', 'unreachable: connect ECONNREFUSED')).toBeDefined();
    expect(lines).toContain('spanledger-spans: Stable, 3 member(s), 3 partition(s), total lag 5');
    expect(lines).toContain('spanledger-rules: Empty, 0 member(s), 3 partition(s), total lag 11');
  });

  it('judges a worker from its own status', () => {
    expect(judge(workerStatus('w', [0]))).toEqual({ state: 'ready', reason: null });
    expect(judge(workerStatus('w', [0], { ready: false }))).toEqual({ state: 'not ready', reason: 'not consuming (starting, rebalancing or stopping)' });
    const stuck = workerStatus('w', [0, 1], { problems: ['partition spans/1 stuck: zstd'] });
    stuck.partitions[1]!.paused = 'stuck';
    expect(judge(stuck)).toEqual({ state: 'degraded', reason: 'partition spans/1 stuck: zstd; paused: 1 (stuck)' });
    const draining = workerStatus('w', [0, 1]);
    draining.partitions[0]!.paused = 'backpressure';
    expect(judge(draining)).toEqual({ state: 'ready', reason: null });
  });

  it('shows one group when asked, with its topics from the settings when it is a spanledger group', () => {
    const fleet = { spansGroup: 'sg', rulesGroup: 'rg', signalsGroup: 'xg', spansTopic: 'spans', signalsTopic: 'signals' };
    expect(groupSpecs(fleet, 'xg')).toEqual([{ group: 'xg', topics: ['signals'] }]);
    expect(groupSpecs(fleet, 'other')).toEqual([{ group: 'other', topics: [] }]);
    expect(groupSpecs(fleet, undefined).map((s) => s.group)).toEqual(['sg', 'rg', 'xg']);
  });
});
