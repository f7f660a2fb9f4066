import { afterEach, describe, expect, it, vi } from 'vitest';
import { CommitDroppedError, GroupCommits } from '../../../../src/kafka/platformatic/group-commits.js';
import type { OffsetCommit } from '../../../../src/pipeline/consumer-port.js';

const T = 'spans';

class Refusal extends Error {
  constructor(readonly answer: string) {
    super(answer);
  }
}

/** A scripted broker: each request waits for the test to answer it. */
function harness(owned: number[], holdLimitMs = 60_000) {
  const requests: Array<{ offsets: OffsetCommit[]; answer: (error?: Error) => void }> = [];
  const owns = new Set(owned);
  const commits = new GroupCommits({
    send: (offsets) =>
      new Promise<void>((resolve, reject) => {
        requests.push({ offsets, answer: (error) => (error ? reject(error) : resolve()) });
      }),
    isRebalanceRefusal: (e) => e instanceof Refusal && ['REBALANCE_IN_PROGRESS', 'ILLEGAL_GENERATION'].includes(e.answer),
    owns: (topic, partition) => topic === T && owns.has(partition),
    holdLimitMs,
  });
  return { commits, requests, owns };
}

/** Lets promise callbacks run. */
const tick = () => new Promise((resolve) => setImmediate(resolve));

/** A promise's outcome so far. */
function outcome(p: Promise<void>): { state: 'pending' | 'resolved' | 'rejected'; error?: unknown } {
  const o: { state: 'pending' | 'resolved' | 'rejected'; error?: unknown } = { state: 'pending' };
  p.then(
    () => (o.state = 'resolved'),
    (e: unknown) => {
      o.state = 'rejected';
      o.error = e;
    },
  );
  return o;
}

const c = (partition: number, offset: bigint): OffsetCommit => ({ topic: T, partition, offset });

describe('GroupCommits', () => {
  afterEach(() => vi.useRealTimers());

  it('sends a commit at once and settles with the answer', async () => {
    const { commits, requests } = harness([0, 1]);
    const ok = outcome(commits.commit([c(0, 10n), c(1, 5n)]));
    expect(requests.map((r) => r.offsets)).toEqual([[c(0, 10n), c(1, 5n)]]);
    requests[0]!.answer();
    await tick();
    expect(ok.state).toBe('resolved');
    const failed = outcome(commits.commit([c(0, 11n)]));
    const network = new Error('connection lost');
    requests[1]!.answer(network);
    await tick();
    expect(failed).toEqual({ state: 'rejected', error: network });
    expect(commits.heldCount).toBe(0);
  });

  it('holds a commit refused for a rebalance, keeps the newest offset, and sends it once after the join', async () => {
    const { commits, requests } = harness([0, 1]);
    const first = outcome(commits.commit([c(0, 10n)]));
    requests[0]!.answer(new Refusal('REBALANCE_IN_PROGRESS'));
    await tick();
    expect(first.state).toBe('pending');
    expect(commits.heldCount).toBe(1);
    // Meanwhile a newer offset of the same partition: held too, not sent (it would be refused).
    const second = outcome(commits.commit([c(0, 20n)]));
    // An older one (out of order) does not move the held offset back.
    const older = outcome(commits.commit([c(0, 15n)]));
    expect(requests).toHaveLength(1);
    commits.joined();
    expect(requests.map((r) => r.offsets)).toEqual([[c(0, 10n)], [c(0, 20n)]]);
    requests[1]!.answer();
    await tick();
    expect([first.state, second.state, older.state]).toEqual(['resolved', 'resolved', 'resolved']);
    expect(commits.heldCount).toBe(0);
  });

  it('drops the held commit of a revoked partition at once, and at the join those of partitions no longer owned', async () => {
    const { commits, requests, owns } = harness([0, 1, 2]);
    const p0 = outcome(commits.commit([c(0, 10n)]));
    const p1 = outcome(commits.commit([c(1, 10n)]));
    const p2 = outcome(commits.commit([c(2, 10n)]));
    for (const r of requests) r.answer(new Refusal('ILLEGAL_GENERATION'));
    await tick();
    expect(commits.heldCount).toBe(3);
    owns.delete(0);
    commits.revoked(T, [0]);
    await tick();
    expect(p0.state).toBe('rejected');
    expect(p0.error).toBeInstanceOf(CommitDroppedError);
    // Partition 1 went away in the join's assignment, without a revocation of its own.
    owns.delete(1);
    commits.joined();
    await tick();
    expect(p1.state).toBe('rejected');
    expect(p1.error).toBeInstanceOf(CommitDroppedError);
    expect(requests.slice(3).map((r) => r.offsets)).toEqual([[c(2, 10n)]]);
    requests[3]!.answer();
    await tick();
    expect(p2.state).toBe('resolved');
  });

  it('a refusal of a partition already revoked is not held', async () => {
    const { commits, requests, owns } = harness([0]);
    const p = outcome(commits.commit([c(0, 10n)]));
    owns.delete(0);
    requests[0]!.answer(new Refusal('REBALANCE_IN_PROGRESS'));
    await tick();
    expect(p.error).toBeInstanceOf(CommitDroppedError);
    expect(commits.heldCount).toBe(0);
  });

  it('a refusal that answers a request sent before the latest join is sent again at once', async () => {
    const { commits, requests } = harness([0]);
    const p = outcome(commits.commit([c(0, 10n)]));
    commits.joined();
    requests[0]!.answer(new Refusal('ILLEGAL_GENERATION'));
    await tick();
    expect(requests).toHaveLength(2);
    expect(commits.heldCount).toBe(0);
    requests[1]!.answer();
    await tick();
    expect(p.state).toBe('resolved');
  });

  it('a held commit fails with its refusal when no join comes within the hold limit', async () => {
    vi.useFakeTimers();
    const { commits, requests } = harness([0], 5_000);
    const p = outcome(commits.commit([c(0, 10n)]));
    const refusal = new Refusal('REBALANCE_IN_PROGRESS');
    requests[0]!.answer(refusal);
    await vi.advanceTimersByTimeAsync(4_999);
    expect(p.state).toBe('pending');
    await vi.advanceTimersByTimeAsync(1);
    expect(p).toEqual({ state: 'rejected', error: refusal });
    expect(commits.heldCount).toBe(0);
  });

  it('close fails what is held and every later commit', async () => {
    const { commits, requests } = harness([0]);
    const p = outcome(commits.commit([c(0, 10n)]));
    requests[0]!.answer(new Refusal('REBALANCE_IN_PROGRESS'));
    await tick();
    const stopped = new Error('stopped');
    commits.close(stopped);
    await tick();
    expect(p).toEqual({ state: 'rejected', error: stopped });
    await expect(commits.commit([c(0, 11n)])).rejects.toThrow(/closing/);
    expect(requests).toHaveLength(1);
  });
});
