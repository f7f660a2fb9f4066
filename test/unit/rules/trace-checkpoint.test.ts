import { describe, expect, it } from 'vitest';
import type { TraceItem } from '../../../src/rules/trace-assembler.js';
import { decodeCheckpoint, encodeCheckpoint, TraceCheckpointError, type TraceCheckpoint } from '../../../src/rules/trace-checkpoint.js';
import { partitionTraces, RecordFeed, ruleSetOf, TENANT_A, TENANT_B, traceIdOf } from '../../support/traces.js';

const RULES = ruleSetOf({ 'has-a': 'a', 'many-b': 'count(b) > 1' });
const rulesFor = () => RULES;

const CHECKPOINT: TraceCheckpoint = {
  v: 1,
  processedEnd: 120n,
  streamTime: 1_764_000_000_000,
  open: [
    { tenantId: TENANT_A, traceId: traceIdOf(1), segment: 0, firstOffset: 100n, firstIndex: 0 },
    { tenantId: TENANT_B, traceId: traceIdOf(1), segment: 2, firstOffset: 100n, firstIndex: 1 },
  ],
  closed: [
    { tenantId: TENANT_A, traceId: traceIdOf(2) },
    { tenantId: TENANT_A, traceId: traceIdOf(3), continuesAs: 4 },
  ],
};

describe('checkpoint encoding', () => {
  it('round-trips, listing each tenant once', () => {
    const bytes = encodeCheckpoint(CHECKPOINT);
    expect(decodeCheckpoint(bytes)).toEqual(CHECKPOINT);
    const json = JSON.parse(bytes.toString());
    expect(json.tenants).toEqual([TENANT_A, TENANT_B]);
    expect(json.open[1]).toEqual([1, traceIdOf(1), 2, '100', 1]);
    expect(decodeCheckpoint(encodeCheckpoint({ ...CHECKPOINT, streamTime: undefined, open: [], closed: [] }))).toEqual({ ...CHECKPOINT, streamTime: undefined, open: [], closed: [] });
  });

  it.each([
    ['not JSON', '{"v":1', /not JSON/],
    ['an array', '[]', /not a JSON object/],
    ['another version', '{"v":2}', /unknown version 2/],
    ['a bad end', '{"v":1,"end":12,"time":null,"tenants":[],"open":[],"closed":[]}', /end: must be an offset/],
    ['a bad tenant', '{"v":1,"end":"12","time":null,"tenants":["x"],"open":[],"closed":[]}', /tenants\[0\]: must be a canonical/],
    ['a tenant index out of range', `{"v":1,"end":"12","time":null,"tenants":["${TENANT_A}"],"open":[[1,"${traceIdOf(1)}",0,"3",0]],"closed":[]}`, /open\[0\]\[0\]: must be an index/],
    ['a bad trace id', `{"v":1,"end":"12","time":null,"tenants":["${TENANT_A}"],"open":[],"closed":[[0,"ABC"]]}`, /closed\[0\]\[1\]: must be a trace id/],
    ['a short tuple', `{"v":1,"end":"12","time":null,"tenants":["${TENANT_A}"],"open":[[0,"${traceIdOf(1)}",0]],"closed":[]}`, /open\[0\]: must be \[tenant/],
    ['an open segment past the end', `{"v":1,"end":"12","time":null,"tenants":["${TENANT_A}"],"open":[[0,"${traceIdOf(1)}",0,"12",0]],"closed":[]}`, /not before end 12/],
    ['a trace open and closed', `{"v":1,"end":"12","time":null,"tenants":["${TENANT_A}"],"open":[[0,"${traceIdOf(1)}",0,"3",0]],"closed":[[0,"${traceIdOf(1)}"]]}`, /both open and closed/],
    ['a negative segment', `{"v":1,"end":"12","time":null,"tenants":["${TENANT_A}"],"open":[[0,"${traceIdOf(1)}",-1,"3",0]],"closed":[]}`, /open\[0\]\[2\]: must be a non-negative integer/],
  ])('refuses %s with a clear error', (_what, text, message) => {
    expect(() => decodeCheckpoint(Buffer.from(text))).toThrow(TraceCheckpointError);
    expect(() => decodeCheckpoint(Buffer.from(text))).toThrow(message);
  });
});

/** Runs a PartitionTraces over `flushes`, taking closed traces after each; returns them by flush. */
function signalsByFlush(traces: ReturnType<typeof partitionTraces>, flushes: TraceItem[][]): string[][] {
  return flushes.map((items) => {
    traces.apply(items, 0, items.length > 0 ? items[items.length - 1]!.offset + 1n : undefined);
    return traces.takeClosed().map((c) => `${c.traceId}#${c.segment} ${c.reason} ${c.spanCount} ${c.firstOffset}-${c.lastOffset} ${c.hits.map((h) => h.ruleId)}`);
  });
}

describe('restore', () => {
  // Offsets 0-3: t1 a, t2 a, t1 b, t1 b. At 4 (time 1,500) t2 closes idle and t1 at max age; t1
  // continues as segment 1 at 4, t3 opens at 5. At 6 a late span of t2; at 9 t3 and t1 close idle.
  function corpus(): TraceItem[][] {
    const feed = new RecordFeed();
    return [
      [...feed.record(0, { trace: 1, name: 'a' }), ...feed.record(100, { trace: 2, name: 'a' }), ...feed.record(200, { trace: 1, name: 'b' }), ...feed.record(900, { trace: 1, name: 'b' })],
      [...feed.record(1_500, { trace: 1, name: 'b' }), ...feed.record(1_600, { trace: 3, name: 'b' })],
      [...feed.record(1_700, { trace: 2, name: 'b' }), ...feed.record(1_800, { trace: 3, name: 'b' }), ...feed.record(2_000, { trace: 1, name: 'b' })],
      [...feed.record(4_000, { trace: 4, name: 'a' })],
    ];
  }
  const options = { rulesFor, idleMs: 1_000, maxAgeMs: 1_500 };

  /** A run through the first `flushes` flushes, its checkpoint at their end, and a successor restored from it. */
  function crashAfter(flushes: TraceItem[][], count: number) {
    const first = partitionTraces(options);
    const before = signalsByFlush(first, flushes.slice(0, count));
    const checkpoint = first.checkpoint(flushes[count - 1]!.at(-1)!.offset + 1n);
    const second = partitionTraces(options);
    second.restore(decodeCheckpoint(encodeCheckpoint(checkpoint)));
    return { first, before, checkpoint, second };
  }

  it('rebuilds the open segments from their first spans, skips closed traces, and closes the rest as an uninterrupted run would', () => {
    const flushes = corpus();
    const whole = signalsByFlush(partitionTraces(options), flushes);
    // Crash after flush 1: checkpoint at its end, re-read from the commit.
    const { first, before, checkpoint, second } = crashAfter(flushes, 2);
    const committed = first.retainedOffset()!;
    expect(committed).toBe(4n); // t1 segment 1 opened at offset 4
    // t1 continues (open again as segment 1), so only t2 is remembered, as closed for good.
    expect(checkpoint.closed).toEqual([{ tenantId: TENANT_A, traceId: traceIdOf(2) }]);
    expect(checkpoint.open.map((o) => [o.traceId, o.segment, o.firstOffset])).toEqual([
      [traceIdOf(1), 1, 4n],
      [traceIdOf(3), 0, 5n],
    ]);
    expect(second.retainedOffset()).toBe(4n);
    const after = signalsByFlush(second, flushes.map((f) => f.filter((i) => i.offset >= committed)));
    expect([...before, ...after].flat().sort()).toEqual(whole.flat().sort());
    expect(second.counters.replaySkippedSpans).toBe(0);
    expect(second.counters.lateSpans).toBe(1); // t2's late span, whose trace lies wholly before the commit
  });

  it('a newer checkpoint is right for an older committed offset', () => {
    const flushes = corpus();
    const whole = signalsByFlush(partitionTraces(options), flushes);
    const { before, second } = crashAfter(flushes, 3);
    const after = signalsByFlush(second, flushes); // committed offset 0: the oldest possible
    expect([...before, ...after].flat().sort()).toEqual(whole.flat().sort());
    expect(second.counters.replaySkippedSpans).toBe(5);
  });

  it('during a replay, the checkpoint stays the restored one and retainedOffset covers the segments not yet reopened', () => {
    const flushes = corpus();
    const { first, checkpoint, second } = crashAfter(flushes, 3);
    expect(checkpoint.processedEnd).toBe(9n);
    expect(second.retainedOffset()).toBe(first.retainedOffset());
    second.apply(flushes[0]!, 0, 4n);
    second.tick(1e12); // no idle_wall closure in a replay
    expect(second.takeClosed()).toEqual([]);
    expect(second.checkpoint(4n)).toEqual(checkpoint);
  });

  it('ends the replay at processedEnd given by the flush, so a wall-clock close can follow', () => {
    const feed = new RecordFeed();
    const first = partitionTraces(options);
    first.apply([...feed.record(0, { trace: 1, name: 'a' }), ...feed.record(1, { trace: 2 })], 0);
    const checkpoint = first.checkpoint(feed.end + 1n); // the last record held no span
    const second = partitionTraces(options);
    second.restore(checkpoint);
    second.apply(feed.record(0, { trace: 1, name: 'a' }).map((i) => ({ ...i, offset: 0n })), 0, 1n);
    second.apply([], 0, 3n);
    second.tick(5_000);
    expect(second.takeClosed().map((c) => [c.traceId, c.reason, c.hits.map((h) => h.ruleId)])).toEqual([[traceIdOf(1), 'idle_wall', ['has-a']]]);
    expect(second.counters.lostSegments).toBe(1); // trace 2's first span (offset 1) was not re-read
  });

  it('counts an open segment whose first span is not re-read as lost, and its later spans as late (never a fragment)', () => {
    const flushes = corpus();
    const { second } = crashAfter(flushes, 2);
    // Retention removed offsets 0-4: the re-read starts at 5, after t1's segment 1 opened.
    const after = signalsByFlush(second, flushes.map((f) => f.filter((i) => i.offset >= 5n)));
    expect(second.counters.lostSegments).toBe(1);
    expect(after.flat().some((s) => s.startsWith(traceIdOf(1)))).toBe(false);
  });

  it('refuses a checkpoint whose positions hold another trace', () => {
    const flushes = corpus();
    const first = partitionTraces(options);
    signalsByFlush(first, flushes.slice(0, 1));
    const checkpoint = first.checkpoint(4n);
    checkpoint.open[0]!.traceId = traceIdOf(42);
    const second = partitionTraces(options);
    second.restore(checkpoint);
    expect(() => second.apply(flushes[0]!, 0)).toThrow(/not this partition's/);
  });

  it('refuses a checkpoint while closed traces are not taken, and a restore after apply', () => {
    const feed = new RecordFeed();
    const traces = partitionTraces(options);
    traces.apply([...feed.record(0, { trace: 1 }), ...feed.record(5_000, { trace: 2 })], 0);
    expect(() => traces.checkpoint(feed.end)).toThrow(/not taken/);
    traces.takeClosed();
    expect(() => traces.checkpoint(1n)).toThrow(/not after the last applied offset/);
    expect(() => traces.restore(undefined)).toThrow(/before the first apply/);
  });
});
