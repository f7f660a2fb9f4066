import { describe, expect, it } from 'vitest';
import { MAX_BACKOFF_MS, MIN_BACKOFF_MS, PartitionStates } from '../../../../src/kafka/platformatic/partition-states.js';

describe('PartitionStates', () => {
  it('says what an assignment added and revoked; a revoked state is no longer current', () => {
    const states = new PartitionStates();
    expect(states.assign([0, 1, 2])).toEqual({ added: [0, 1, 2], revoked: [] });
    const kept = states.get(1)!;
    const lost = states.get(2)!;
    expect(states.assign([1, 0, 3])).toEqual({ added: [3], revoked: [2] });
    expect(states.isCurrent(kept)).toBe(true);
    expect(states.isCurrent(lost)).toBe(false);
    // Assigned again later: a new state (starts from the committed offset), the old batch stays stale.
    states.assign([0, 1, 2, 3]);
    expect(states.isCurrent(lost)).toBe(false);
    expect(states.get(2)!.position).toBeUndefined();
  });

  it('fetches only partitions with a known position, not busy, not paused, not backing off', () => {
    const states = new PartitionStates();
    states.assign([0, 1, 2, 3, 4]);
    for (const p of [0, 1, 2, 3]) states.get(p)!.position = 0n;
    states.get(1)!.busy = true;
    states.pause([2]);
    PartitionStates.backOff(states.get(3)!, 1000);
    expect(states.fetchable(1000).map((s) => s.partition)).toEqual([0]);
    expect(states.nextRetryAt(1000)).toBe(1000 + MIN_BACKOFF_MS);
    expect(states.fetchable(1000 + MIN_BACKOFF_MS).map((s) => s.partition)).toEqual([0, 3]);
  });

  it('a pause outlasts assignments; resuming the topic lifts every pause', () => {
    const states = new PartitionStates();
    states.assign([0, 1]);
    states.pause([1]);
    states.assign([0]);
    states.assign([0, 1]);
    expect(states.isPaused(1)).toBe(true);
    states.pause();
    expect(states.isPaused(0)).toBe(true);
    states.resume([1]);
    expect(states.isPaused(1)).toBe(true);
    states.resume();
    expect([states.isPaused(0), states.isPaused(1)]).toEqual([false, false]);
    states.pause([0]);
    states.resume();
    expect(states.isPaused(0)).toBe(false);
  });

  it('backs off longer after each failure, up to a limit, and starts over after a success', () => {
    const states = new PartitionStates();
    states.assign([0]);
    const s = states.get(0)!;
    const delays = Array.from({ length: 12 }, () => PartitionStates.backOff(s, 0));
    expect(delays.slice(0, 3)).toEqual([MIN_BACKOFF_MS, MIN_BACKOFF_MS * 2, MIN_BACKOFF_MS * 4]);
    expect(delays.at(-1)).toBe(MAX_BACKOFF_MS);
    PartitionStates.succeeded(s);
    expect(PartitionStates.backOff(s, 0)).toBe(MIN_BACKOFF_MS);
  });
  it('fetches ahead only handled partitions with records known to follow, not paused, not backing off; a pause or revoke drops what was fetched ahead', () => {
    const states = new PartitionStates();
    states.assign([0, 1, 2, 3, 4, 5]);
    for (const p of [0, 1, 2, 3, 4, 5]) Object.assign(states.get(p)!, { position: 0n, busy: true, handling: true, nextIfResolved: 10n });
    states.get(1)!.handling = false;
    states.get(2)!.nextIfResolved = undefined; // an undecodable batch: nothing ahead of it
    states.pause([3]);
    PartitionStates.backOff(states.get(4)!, 1000);
    const hw = new Map([0, 1, 2, 3, 4].map((p) => [p, 50n]));
    hw.set(5, 10n); // caught up: no fetch ahead to long-poll the broker
    expect(states.prefetchable(1000, hw).map((s) => s.partition)).toEqual([0]);
    states.get(0)!.prefetching = true;
    expect(states.prefetchable(1000, hw)).toEqual([]);
    expect(states.fetchable(1000)).toEqual([]);
    const ahead = { node: 7, fetchOffset: 10n, outcome: { kind: 'records' as const, batches: [], highWatermark: 50n }, bytes: 1_000 };
    states.get(0)!.prefetching = false;
    states.holdAhead(states.get(0)!, ahead);
    states.holdAhead(states.get(5)!, { ...ahead, node: 8, bytes: 300 });
    expect([states.holdsAheadFrom(7), states.holdsAheadFrom(8), states.holdsAheadFrom(9)]).toEqual([true, true, false]);
    // What is held counts (the pipeline adds it to its in-flight bytes) until delivered or dropped.
    expect(states.heldBytes).toBe(1_300);
    states.pause([0]);
    expect(states.get(0)!.ahead).toBeUndefined();
    expect(states.heldBytes).toBe(300);
    const revoked = states.get(5)!;
    states.assign([0, 1, 2, 3, 4]);
    expect(revoked.ahead).toBeUndefined();
    expect(states.holdsAheadFrom(8)).toBe(false);
    expect(states.heldBytes).toBe(0);
    states.holdAhead(states.get(1)!, ahead);
    expect(states.takeAhead(states.get(1)!)).toBe(ahead);
    expect([states.takeAhead(states.get(1)!), states.heldBytes]).toEqual([undefined, 0]);
  });
});
