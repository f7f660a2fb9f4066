import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SignalDecoder } from '../../../src/model/decode.js';
import { SIGNAL_TIME_MAX_MS, type Signal } from '../../../src/model/signal.js';
import { compileRuleSet } from '../../../src/rules/compile.js';
import { parseRuleFile } from '../../../src/rules/rule-file.js';
import type { ClosedTrace } from '../../../src/rules/trace-assembler.js';
import { signalId, signalsOf, SIGNAL_MESSAGE_MAX } from '../../../src/rules/trace-signals.js';
import { partitionTraces, RecordFeed, ruleSetOf, TENANT_A, TENANT_B, traceIdOf } from '../../support/traces.js';

const SOURCE = { topic: 'spans', partition: 3 };
const decoder = new SignalDecoder(1_048_576);

function decodes(signal: Signal): Signal {
  const decoded = decoder.decode({ value: Buffer.from(JSON.stringify(signal)) });
  if (!decoded.ok) throw new Error(`${decoded.error.errorClass}: ${decoded.error.message}`);
  return decoded.items[0]!.value;
}

function closedTrace(overrides: Partial<ClosedTrace> = {}): ClosedTrace {
  return {
    tenantId: TENANT_A,
    traceId: traceIdOf(1),
    segment: 0,
    reason: 'idle',
    spanCount: 3,
    firstOffset: 10n,
    lastOffset: 12n,
    firstTimestamp: 1_764_000_000_000,
    lastTimestamp: 1_764_000_000_250,
    hits: [
      {
        ruleId: 'r1',
        ruleName: 'Rule one',
        severity: 'HIGH',
        message: 'Rule one: a',
        evidence: { matches: { a: 1 }, missingAlways: [], presentNever: [], spanIds: ['0000000000000001'], spanCount: 3 },
      },
    ],
    ...overrides,
  };
}

describe('signal ids', () => {
  it('are version 8 UUIDs, deterministic, distinct per tenant, rule, trace and segment', () => {
    const id = signalId(TENANT_A, 'r1', traceIdOf(1), 0);
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(signalId(TENANT_A, 'r1', traceIdOf(1), 0)).toBe(id);
    const others = [signalId(TENANT_B, 'r1', traceIdOf(1), 0), signalId(TENANT_A, 'r2', traceIdOf(1), 0), signalId(TENANT_A, 'r1', traceIdOf(2), 0), signalId(TENANT_A, 'r1', traceIdOf(1), 1), signalId(TENANT_A, 'r1', traceIdOf(1), 2)];
    expect(new Set([id, ...others]).size).toBe(6);
  });

  it('cannot be confused by a rule id that looks like the other fields', () => {
    expect(signalId(TENANT_A, `r1","${traceIdOf(1)}`, traceIdOf(1), 0)).not.toBe(signalId(TENANT_A, 'r1', traceIdOf(1), 0));
    expect(signalId(TENANT_A, 'r1\u0000', traceIdOf(1), 0)).not.toBe(signalId(TENANT_A, 'r1', traceIdOf(1), 0));
  });

  it('never are the nil or all-ones UUID (the version nibble is 8)', () => {
    for (let i = 0; i < 500; i++) {
      const id = signalId(TENANT_A, `r${i}`, traceIdOf(i), i % 3);
      expect(id[14]).toBe('8');
    }
  });
});

describe('signalsOf', () => {
  it('makes one signal per hit, with the segment end as time and metadata that follows from the spans alone', () => {
    const [signal] = signalsOf(closedTrace({ segment: 2 }), SOURCE);
    expect(signal).toEqual({
      id: signalId(TENANT_A, 'r1', traceIdOf(1), 2),
      tenantId: TENANT_A,
      ruleId: 'r1',
      traceId: traceIdOf(1),
      timestamp: '2025-11-24T16:00:00.250Z',
      severity: 'HIGH',
      message: 'Rule one: a',
      metadata: {
        ruleName: 'Rule one',
        segment: 2,
        spanCount: 3,
        evidence: { matches: { a: 1 }, missingAlways: [], presentNever: [], spanIds: ['0000000000000001'], spanCount: 3 },
        source: { topic: 'spans', partition: 3, firstOffset: '10', lastOffset: '12' },
      },
    });
    expect(decodes(signal!)).toEqual(signal);
    // The close reason does not show: another group closing the trace otherwise writes the same signal.
    expect(signalsOf(closedTrace({ segment: 2, reason: 'idle_wall' }), SOURCE)).toEqual([signal]);
  });

  it('clamps the time into what the signal stores hold', () => {
    for (const [ms, text] of [
      [-5, '1970-01-01T00:00:00.000Z'],
      [Number.NaN, '1970-01-01T00:00:00.000Z'],
      [SIGNAL_TIME_MAX_MS + 1_000_000, '9999-12-31T23:59:59.999Z'],
      [1.7, '1970-01-01T00:00:00.001Z'],
    ] as const) {
      const [signal] = signalsOf(closedTrace({ lastTimestamp: ms }), SOURCE);
      expect(signal!.timestamp).toBe(text);
      decodes(signal!);
    }
  });

  it('caps the message at the schema limit without splitting a surrogate pair, and replaces lone surrogates', () => {
    const hit = closedTrace().hits[0]!;
    const long = `${'x'.repeat(SIGNAL_MESSAGE_MAX - 1)}😀tail`;
    const [capped] = signalsOf(closedTrace({ hits: [{ ...hit, message: long }] }), SOURCE);
    expect(capped!.message).toBe('x'.repeat(SIGNAL_MESSAGE_MAX - 1));
    decodes(capped!);
    const [lone] = signalsOf(closedTrace({ hits: [{ ...hit, ruleId: 'r\ud800', ruleName: 'n\udc00', message: 'm\ud800', evidence: { ...hit.evidence, matches: { 'a.where(x == "\ud800")': 1 } } }] }), SOURCE);
    expect(decodes(lone!).message).toBe('m\ufffd');
  });

  it('every signal of the example rules on the example trace passes the signal decoder', () => {
    const rules = compileRuleSet(parseRuleFile(readFileSync('examples/rules.yaml', 'utf8'), 'examples/rules.yaml'));
    const lines = readFileSync('examples/trace.jsonl', 'utf8').trim().split('\n').map((line) => JSON.parse(line));
    const traces = partitionTraces({ rulesFor: () => rules });
    traces.apply(
      lines.map((span, i) => ({ offset: BigInt(i), index: 0, tenantId: span.tenantId, span, timestamp: 1_764_000_000_000 + i })),
      0,
    );
    traces.apply(new RecordFeed().record(0, { trace: 1 }).map((item) => ({ ...item, offset: 1_000n, timestamp: 1_764_000_100_000 })), 0);
    const signals = traces.takeClosed().flatMap((c) => signalsOf(c, SOURCE));
    expect(signals.length).toBeGreaterThanOrEqual(4);
    for (const signal of signals) expect(decodes(signal)).toEqual(signal);
    expect(new Set(signals.map((s) => s.id)).size).toBe(signals.length);
  });

  it('a rule firing on two segments of one trace gives two signals with different ids', () => {
    const feed = new RecordFeed();
    const traces = partitionTraces({ rulesFor: () => ruleSetOf({ a: 'a' }), idleMs: 5_000, maxAgeMs: 1_000 });
    traces.apply([...feed.record(0, { trace: 1, name: 'a' }), ...feed.record(1_000, { trace: 1, name: 'a' }), ...feed.record(9_000, { trace: 2 })], 0);
    const signals = traces.takeClosed().flatMap((c) => signalsOf(c, SOURCE));
    expect(signals.map((s) => [s.metadata.segment, s.id])).toEqual([
      [0, signalId(TENANT_A, 'a', traceIdOf(1), 0)],
      [1, signalId(TENANT_A, 'a', traceIdOf(1), 1)],
    ]);
  });
});
