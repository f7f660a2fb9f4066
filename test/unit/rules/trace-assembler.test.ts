import { describe, expect, it } from 'vitest';
import { ConfigError, InvariantError } from '../../../src/errors.js';
import { OpenTraceBudget, traceStateBytes } from '../../../src/rules/open-trace-budget.js';
import type { ClosedTrace } from '../../../src/rules/trace-assembler.js';
import { signalsOf } from '../../../src/rules/trace-signals.js';
import { partitionTraces, RecordFeed, ruleSetOf, TENANT_A, TENANT_B, TENANT_NO_RULES, traceIdOf } from '../../support/traces.js';

const RULES = ruleSetOf({ 'has-a': 'a', 'many-b': 'count(b) > 1' });
const rulesForA = (tenantId: string) => (tenantId === TENANT_A ? RULES : undefined);

const summary = (closed: ClosedTrace[]) => closed.map((c) => ({ trace: c.traceId, segment: c.segment, reason: c.reason, spans: c.spanCount, rules: c.hits.map((h) => h.ruleId) }));

describe('PartitionTraces: closure by event time', () => {
  it('closes a trace idle for idleMs of stream time, before placing the span that moved time', () => {
    const feed = new RecordFeed();
    const traces = partitionTraces({ rulesFor: rulesForA, idleMs: 1_000 });
    traces.apply([...feed.record(10_000, { trace: 1, name: 'a' }), ...feed.record(10_500, { trace: 2, name: 'b' }), ...feed.record(10_999, { trace: 1, name: 'b' })], 0);
    expect(traces.takeClosed()).toEqual([]);
    // 11,998 - 10,999 < 1,000: trace 1 stays; 11,998 - 10,500 >= 1,000: trace 2 closes.
    traces.apply(feed.record(11_998, { trace: 3, name: 'a' }), 0);
    expect(summary(traces.takeClosed())).toEqual([{ trace: traceIdOf(2), segment: 0, reason: 'idle', spans: 1, rules: [] }]);
    traces.apply(feed.record(11_998, { trace: 1, name: 'b' }), 0);
    expect(traces.takeClosed()).toEqual([]);
    traces.apply(feed.record(12_998, { trace: 4, name: 'x' }), 0);
    // In order of last activity.
    expect(summary(traces.takeClosed())).toEqual([
      { trace: traceIdOf(3), segment: 0, reason: 'idle', spans: 1, rules: ['has-a'] },
      { trace: traceIdOf(1), segment: 0, reason: 'idle', spans: 3, rules: ['has-a', 'many-b'] },
    ]);
    expect(traces.counters.closed).toEqual({ idle: 3, idle_wall: 0, max_age: 0, cap: 0 });
  });

  it('uses record timestamps, never span times: a span with a wrong clock changes nothing', () => {
    const feed = new RecordFeed();
    const traces = partitionTraces({ rulesFor: rulesForA, idleMs: 1_000 });
    const items = feed.record(10_000, { trace: 1, name: 'a' });
    items[0]!.span.startTimeUnixNano = '9999999999999999999';
    traces.apply([...items, ...feed.record(10_100, { trace: 2 })], 0);
    expect(traces.takeClosed()).toEqual([]);
    expect(traces.openCount).toBe(2);
  });

  it('closes at max age and continues the trace as the next segment, with new signal ids', () => {
    const feed = new RecordFeed();
    const traces = partitionTraces({ rulesFor: rulesForA, idleMs: 1_000, maxAgeMs: 2_000 });
    for (let t = 0; t <= 4_500; t += 500) traces.apply(feed.record(t, { trace: 1, name: 'a' }), 0);
    const closed = traces.takeClosed();
    // Opened at 0, closed when time reaches 2,000 (before that span), then at 4,000.
    expect(summary(closed)).toEqual([
      { trace: traceIdOf(1), segment: 0, reason: 'max_age', spans: 4, rules: ['has-a'] },
      { trace: traceIdOf(1), segment: 1, reason: 'max_age', spans: 4, rules: ['has-a'] },
    ]);
    expect(closed[1]!.firstOffset).toBe(4n);
    expect(traces.openCount).toBe(1);
    const [first, second] = closed.map((c) => signalsOf(c, { topic: 'spans', partition: 3 })[0]!.id);
    expect(first).not.toBe(second);
    traces.apply(feed.record(10_000, { trace: 9 }), 0);
    expect(summary(traces.takeClosed())).toEqual([{ trace: traceIdOf(1), segment: 2, reason: 'idle', spans: 2, rules: ['has-a'] }]);
  });

  it('counts late spans of an idle-closed trace and does not evaluate them; forgets beyond closedMemory', () => {
    const feed = new RecordFeed();
    const traces = partitionTraces({ rulesFor: rulesForA, idleMs: 1_000, closedMemory: 1 });
    traces.apply(feed.record(0, { trace: 1, name: 'a' }), 0);
    traces.apply(feed.record(5_000, { trace: 1, name: 'b' }, { trace: 1, name: 'b' }), 0);
    expect(summary(traces.takeClosed())).toEqual([{ trace: traceIdOf(1), segment: 0, reason: 'idle', spans: 1, rules: ['has-a'] }]);
    expect(traces.counters.lateSpans).toBe(2);
    expect(traces.openCount).toBe(0);
    // Trace 2 closes too and pushes trace 1 out of a memory of one: trace 1 starts afresh.
    traces.apply(feed.record(6_000, { trace: 2 }), 0);
    traces.apply(feed.record(8_000, { trace: 1, name: 'b' }), 0);
    expect(traces.counters.lateSpans).toBe(2);
    expect(traces.openCount).toBe(1);
    expect(traces.rememberedCount).toBe(1);
  });

  it('isolates tenants: one trace id in two tenants is two traces, each against its own rules', () => {
    const feed = new RecordFeed();
    const rulesB = ruleSetOf({ 'b-only': 'b' });
    const traces = partitionTraces({ rulesFor: (t) => (t === TENANT_A ? RULES : t === TENANT_B ? rulesB : undefined) });
    traces.apply(feed.record(0, { trace: 7, name: 'a', tenantId: TENANT_A }, { trace: 7, name: 'b', tenantId: TENANT_B }, { trace: 7, name: 'b', tenantId: TENANT_A }), 0);
    expect(traces.openCount).toBe(2);
    traces.apply(feed.record(5_000, { trace: 8, tenantId: TENANT_B }), 0);
    const closed = traces.takeClosed();
    // In order of last activity: tenant A's trace had the later span.
    expect(closed.map((c) => [c.tenantId, c.traceId, c.spanCount, c.hits.map((h) => h.ruleId)])).toEqual([
      [TENANT_B, traceIdOf(7), 1, ['b-only']],
      [TENANT_A, traceIdOf(7), 2, ['has-a']],
    ]);
  });

  it('does not track the spans of tenants without rules (or with none enabled)', () => {
    const feed = new RecordFeed();
    const none = ruleSetOf({});
    const traces = partitionTraces({ rulesFor: (t) => (t === TENANT_A ? RULES : t === TENANT_B ? none : undefined) });
    traces.apply(feed.record(0, { trace: 1, tenantId: TENANT_NO_RULES }, { trace: 1, tenantId: TENANT_B }, { trace: 1, tenantId: TENANT_A }), 0);
    expect(traces.openCount).toBe(1);
    expect(traces.counters.spansWithoutRules).toBe(2);
    expect(traces.counters.spansEvaluated).toBe(1);
  });

  it('binds the rule set when a segment opens: a rule change applies to traces opened after it', () => {
    const feed = new RecordFeed();
    let rules = RULES;
    const traces = partitionTraces({ rulesFor: () => rules });
    traces.apply(feed.record(0, { trace: 1, name: 'a' }), 0);
    rules = ruleSetOf({ changed: 'a' });
    traces.apply(feed.record(1, { trace: 1, name: 'a' }, { trace: 2, name: 'a' }), 0);
    traces.apply(feed.record(5_000, { trace: 3 }), 0);
    expect(traces.takeClosed().map((c) => c.hits.map((h) => h.ruleId))).toEqual([['has-a'], ['changed']]);
  });

  it('retainedOffset is the first offset of the oldest open segment', () => {
    const feed = new RecordFeed();
    const traces = partitionTraces({ rulesFor: rulesForA, idleMs: 1_000 });
    expect(traces.retainedOffset()).toBeUndefined();
    traces.apply([...feed.record(0, { trace: 1 }), ...feed.record(700, { trace: 1 }), ...feed.record(800, { trace: 2 })], 0);
    expect(traces.retainedOffset()).toBe(0n);
    traces.apply(feed.record(1_500, { trace: 3 }), 0); // trace 1 (last at 700) is idle at 1,700 only
    expect(traces.retainedOffset()).toBe(0n);
    traces.apply(feed.record(1_700, { trace: 3 }), 0);
    expect(traces.retainedOffset()).toBe(2n);
    traces.apply(feed.record(9_000, { trace: 4, tenantId: TENANT_NO_RULES }), 0);
    expect(traces.retainedOffset()).toBeUndefined();
    expect(traces.takeClosed()).toHaveLength(3);
  });

  it('with timestamps out of order, closes a trace behind a fresher one late, but always at the same span', () => {
    const run = () => {
      const feed = new RecordFeed();
      const traces = partitionTraces({ rulesFor: rulesForA, idleMs: 1_000 });
      // Trace 1's last span (700) is older than trace 2's (900) but came later.
      traces.apply([...feed.record(0, { trace: 1 }), ...feed.record(900, { trace: 2 }), ...feed.record(700, { trace: 1 })], 0);
      traces.apply(feed.record(1_700, { trace: 3 }), 0);
      const atFirst = traces.takeClosed().length;
      traces.apply(feed.record(1_900, { trace: 3 }), 0);
      return [atFirst, summary(traces.takeClosed()).map((c) => c.trace)];
    };
    expect(run()).toEqual([0, [traceIdOf(2), traceIdOf(1)]]);
    expect(run()).toEqual(run());
  });

  it('refuses spans out of (offset, index) order', () => {
    const traces = partitionTraces({ rulesFor: rulesForA });
    const feed = new RecordFeed();
    const items = feed.record(0, { trace: 1 }, { trace: 2 });
    traces.apply(items, 0);
    expect(() => traces.apply(items.slice(1), 0)).toThrow(/order/);
    // A caller's bug: fatal at once (the pipeline's rule), never retried as an unknown failure.
    expect(() => traces.apply(items.slice(1), 0)).toThrow(InvariantError);
  });

  it('refuses limits the validated settings could not give with an InvariantError (a caller bug), not a ConfigError', () => {
    const refusals: Array<[string, () => unknown]> = [
      ['maxOpenTraces', () => new OpenTraceBudget(0)],
      ['maxBytes', () => new OpenTraceBudget(1, 0)],
      ['idleMs', () => partitionTraces({ rulesFor: rulesForA, idleMs: 0 })],
      ['maxAgeMs', () => partitionTraces({ rulesFor: rulesForA, maxAgeMs: -1 })],
      ['closedMemory', () => partitionTraces({ rulesFor: rulesForA, closedMemory: 1.5 })],
    ];
    for (const [name, make] of refusals) {
      expect(make, name).toThrow(InvariantError);
      expect(make, name).toThrow(name);
      expect(make, name).not.toThrow(ConfigError);
    }
  });
});

describe('PartitionTraces: the open-trace budget', () => {
  it('closes the oldest open trace of this partition when the budget is full (reason cap); its spans continue as the next segment', () => {
    const budget = new OpenTraceBudget(2);
    const feed = new RecordFeed();
    const traces = partitionTraces({ rulesFor: rulesForA, budget });
    traces.apply([...feed.record(0, { trace: 1, name: 'a' }), ...feed.record(1, { trace: 2 }), ...feed.record(2, { trace: 3 })], 0);
    expect(summary(traces.takeClosed())).toEqual([{ trace: traceIdOf(1), segment: 0, reason: 'cap', spans: 1, rules: ['has-a'] }]);
    expect(budget.open).toBe(2);
    traces.apply(feed.record(3, { trace: 1, name: 'a' }), 0);
    expect(summary(traces.takeClosed())).toEqual([{ trace: traceIdOf(2), segment: 0, reason: 'cap', spans: 1, rules: [] }]);
    expect(traces.checkpoint(feed.end).open.map((o) => [o.traceId, o.segment])).toEqual([
      [traceIdOf(3), 0],
      [traceIdOf(1), 1],
    ]);
  });

  it('also bounds memory: each open trace counts at its rules\' upper bound, and at the byte cap the oldest close (reason cap)', () => {
    const perTrace = traceStateBytes(RULES);
    expect(perTrace).toBeGreaterThan(512);
    // Room for three traces by bytes, far below the trace count cap.
    const budget = new OpenTraceBudget(1_000, 3 * perTrace);
    const feed = new RecordFeed();
    const traces = partitionTraces({ rulesFor: rulesForA, budget });
    traces.apply([1, 2, 3].flatMap((trace) => feed.record(trace, { trace, name: 'a' })), 0);
    expect(budget.bytes).toBe(3 * perTrace);
    expect(traces.takeClosed()).toEqual([]);
    traces.apply(feed.record(4, { trace: 4, name: 'a' }), 0);
    expect(summary(traces.takeClosed()).map((c) => [c.trace, c.reason])).toEqual([[traceIdOf(1), 'cap']]);
    expect(budget.open).toBe(3);
    expect(budget.bytes).toBe(3 * perTrace);
    traces.drop();
    expect([budget.open, budget.bytes]).toEqual([0, 0]);
  });

  it('is shared: a partition without open traces opens anyway (overshoot of at most one per partition)', () => {
    const budget = new OpenTraceBudget(1);
    const one = partitionTraces({ rulesFor: rulesForA, budget, partition: 0 });
    const two = partitionTraces({ rulesFor: rulesForA, budget, partition: 1 });
    one.apply(new RecordFeed().record(0, { trace: 1 }), 0);
    const feed = new RecordFeed();
    two.apply(feed.record(0, { trace: 2 }), 0);
    expect(budget.open).toBe(2);
    two.apply(feed.record(0, { trace: 3 }), 0); // now `two` has one to give up
    expect(two.takeClosed().map((c) => c.reason)).toEqual(['cap']);
    expect(one.takeClosed()).toEqual([]);
    expect(budget.open).toBe(2);
    two.drop();
    expect(budget.open).toBe(1);
  });
});

describe('PartitionTraces: wall-clock idleness', () => {
  it('tick closes every open trace (idle_wall) only when the partition received nothing for idleMs of wall time', () => {
    const feed = new RecordFeed();
    const traces = partitionTraces({ rulesFor: rulesForA, idleMs: 1_000 });
    traces.apply(feed.record(0, { trace: 1 }, { trace: 2 }), 50_000);
    traces.tick(50_999);
    expect(traces.takeClosed()).toEqual([]);
    traces.apply(feed.record(10, { trace: 1 }), 50_500); // the partition is busy: stream time barely moves
    traces.tick(51_400);
    expect(traces.takeClosed()).toEqual([]);
    traces.apply([], 51_400); // an empty flush is not activity
    traces.tick(51_500);
    expect(summary(traces.takeClosed()).map((c) => [c.trace, c.reason])).toEqual([
      [traceIdOf(1), 'idle_wall'],
      [traceIdOf(2), 'idle_wall'],
    ]);
    // Closed for good: later spans are late.
    traces.apply(feed.record(20, { trace: 1 }), 60_000);
    expect(traces.counters.lateSpans).toBe(1);
  });
});

describe('PartitionTraces: state bounded by the rules, not by the spans', () => {
  const TEN_RULES = ruleSetOf(Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`r${i}`, i % 2 ? `count(op${i}) > 3` : `op${i}.where(amount > 10) and not op${i + 1}`])));

  it('one trace of 100,000 spans: one open segment, evidence capped, checkpoint size independent of span count', () => {
    const traces = partitionTraces({ rulesFor: () => TEN_RULES, idleMs: 1_000 });
    const feed = new RecordFeed();
    let sizeAfterFew = 0;
    for (let r = 0; r < 1_000; r++) {
      const spans = Array.from({ length: 100 }, (_, i) => ({ trace: 1, name: `op${(r + i) % 12}`, attributes: { amount: i } }));
      traces.apply(feed.record(r, ...spans), r);
      if (r === 0) sizeAfterFew = traces.checkpoint(feed.end).open.length;
    }
    expect(traces.openCount).toBe(1);
    expect(traces.checkpoint(feed.end).open.length).toBe(sizeAfterFew);
    traces.apply(feed.record(5_000, { trace: 2 }), 0);
    const [closed] = traces.takeClosed();
    expect(closed!.spanCount).toBe(100_000);
    for (const hit of closed!.hits) expect(hit.evidence.spanIds.length).toBeLessThanOrEqual(8);
  });

  it('5,000 concurrent traces: one segment each, closed memory bounded, all closed once idle', () => {
    const traces = partitionTraces({ rulesFor: () => TEN_RULES, idleMs: 1_000, closedMemory: 2_000 });
    const feed = new RecordFeed();
    for (let round = 0; round < 20; round++) {
      const items = [];
      for (let t = 0; t < 5_000; t++) items.push(...feed.record(round * 10, { trace: t, name: `op${(t + round) % 12}`, attributes: { amount: round } }));
      traces.apply(items, 0);
    }
    expect(traces.openCount).toBe(5_000);
    traces.apply(feed.record(10_000, { trace: 99_999 }), 0);
    const closed = traces.takeClosed();
    expect(closed).toHaveLength(5_000);
    expect(new Set(closed.map((c) => c.spanCount))).toEqual(new Set([20]));
    expect(traces.rememberedCount).toBe(2_000);
    expect(traces.openCount).toBe(1);
  });
});
