import pino from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { ValidEntry } from '../../../src/pipeline/partition-batch.js';
import { corpusTrace, expectedSignals, RULES_A, RULES_B, spansInTimeOrder, type CorpusSpan, type CorpusTrace } from '../../../src/devtools/trace-corpus.js';
import { InvariantError, RetriableError, SpanledgerError } from '../../../src/errors.js';
import { MAX_REQUEST_BYTES } from '../../../src/kafka/acked-producer.js';
import { SignalDecoder, TENANT_HEADER, type DecodedSpan } from '../../../src/model/decode.js';
import type { Signal } from '../../../src/model/signal.js';
import { RuleWorkerMetrics } from '../../../src/rules/rule-metrics.js';
import { isRetriable } from '../../../src/pipeline/retry.js';
import { compileRuleSet, type CompiledRuleSet } from '../../../src/rules/compile.js';
import { parseRuleFile } from '../../../src/rules/rule-file.js';
import { decompressCheckpoint } from '../../../src/rules/checkpoint-compression.js';
import { decodeCheckpoint, encodeCheckpoint } from '../../../src/rules/trace-checkpoint.js';
import type { TraceItem } from '../../../src/rules/trace-assembler.js';
import { RuleProcessor, type TraceLimits } from '../../../src/rules/rule-processor.js';
import type { CheckpointStorePort, RulesTable, SignalPublisher, SignalRecord } from '../../../src/rules/rule-stage-ports.js';
import { registryValue } from '../../support/metrics.js';
import { RecordFeed, ruleSetOf, TENANT_A, TENANT_B, TENANT_NO_RULES, traceIdOf } from '../../support/traces.js';

/**
 * RuleProcessor without a broker: the pipeline's calls (openPartition, apply, tick, sync,
 * committableOffset, beforeCommit, releasePartition) made by hand, against in-memory fakes of
 * the signals producer, the checkpoint store and the rule book, and a fake monotonic clock.
 */

const TOPIC = 'spans';
const SIGNALS_TOPIC = 'signals';
const P = 0;
const IDLE_MS = 1_000;
const CHECKPOINT_INTERVAL_MS = 500;
const decoder = new SignalDecoder(1_048_576);

/** One rule that fires on any trace with a span named `x` (RecordFeed's default span name). */
const HAS_X = ruleSetOf({ 'has-x': 'x' });

type Failure = 'retriable' | 'permanent';

/** The signals producer: keeps every acknowledged request; `failNext` makes sends fail, as AckedProducer's do. */
class FakeSignals implements SignalPublisher {
  readonly maxRequestBytes = MAX_REQUEST_BYTES;
  readonly requests: Array<{ topic: string; messages: SignalRecord[] }> = [];
  attempts = 0;
  private readonly plan: Array<Failure | 'ok'> = [];

  /** The next `n` sends fail, after `after` more successful ones. */
  failNext(n: number, kind: Failure, after = 0): void {
    this.plan.push(...Array<'ok'>(after).fill('ok'), ...Array<Failure>(n).fill(kind));
  }

  /** Every message acknowledged, in order. */
  get sent(): SignalRecord[] {
    return this.requests.flatMap((r) => r.messages);
  }

  async start(): Promise<void> {}

  async publish(topic: string, messages: SignalRecord[]): Promise<void> {
    this.attempts += 1;
    const next = this.plan.shift();
    if (next === 'retriable') throw new RetriableError(`signals: ${topic} did not acknowledge`);
    if (next === 'permanent') throw new SpanledgerError(`signals: ${topic} refused the records for good (TOPIC_AUTHORIZATION_FAILED)`, { retriable: false });
    this.requests.push({ topic, messages });
  }

  async close(): Promise<void> {}
}

/** The checkpoint store: a Map; `failSaves` saves fail next (RetriableError). */
class FakeCheckpoints implements CheckpointStorePort {
  readonly stored = new Map<string, Buffer>();
  readonly saves: Buffer[] = [];
  failSaves = 0;

  async start(): Promise<void> {}

  async load(topic: string, partition: number): Promise<Buffer | undefined> {
    return this.stored.get(`${topic}/${partition}`);
  }

  async save(topic: string, partition: number, value: Buffer): Promise<void> {
    if (this.failSaves > 0) {
      this.failSaves -= 1;
      throw new RetriableError('rule checkpoint: checkpoints did not acknowledge');
    }
    this.stored.set(`${topic}/${partition}`, value);
    this.saves.push(value);
  }

  async close(): Promise<void> {}
}

interface Harness {
  processor: RuleProcessor;
  signals: FakeSignals;
  checkpoints: FakeCheckpoints;
  registry: Registry;
  /** The processor's monotonic clock (ms). */
  clock: { ms: number };
  logs: Array<Record<string, unknown>>;
  metric(name: string, labels?: Record<string, string>): Promise<number>;
}

function harness(rules: Record<string, CompiledRuleSet>, options: { checkpoints?: FakeCheckpoints; limits?: Partial<TraceLimits> } = {}): Harness {
  const registry = new Registry();
  const signals = new FakeSignals();
  const checkpoints = options.checkpoints ?? new FakeCheckpoints();
  const clock = { ms: 0 };
  const logs: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line) as Record<string, unknown>) });
  const ruleBook: RulesTable = { start: async () => {}, close: async () => {}, rulesFor: (tenantId) => rules[tenantId] };
  const processor = new RuleProcessor({
    signalsTopic: SIGNALS_TOPIC,
    signals,
    checkpoints,
    ruleBook,
    limits: { idleMs: IDLE_MS, maxAgeMs: 60_000, maxOpenTraces: 10_000, maxOpenTraceBytes: 2 ** 30, closedMemory: 1_000, ...options.limits },
    checkpointIntervalMs: CHECKPOINT_INTERVAL_MS,
    logger,
    metrics: new RuleWorkerMetrics(registry),
    now: () => clock.ms,
  });
  return { processor, signals, checkpoints, registry, clock, logs, metric: (name, labels) => registryValue(registry, name, labels) };
}

/** The flush items the pipeline would hand over for these spans. */
function entriesOf(items: readonly TraceItem[]): Array<ValidEntry<DecodedSpan>> {
  return items.map((i) => ({
    offset: i.offset,
    index: i.index,
    tenantId: i.tenantId,
    value: { span: i.span, day: '2025-11-24' },
    source: { offset: i.offset, key: null, value: null, headers: {}, timestamp: String(i.timestamp) },
  }));
}

/** One flush: the spans, and the offset of the flush's last record (by default that of the last span). */
function apply(h: Harness, items: readonly TraceItem[], options: { lastOffset?: bigint; wallNow?: number; partition?: number } = {}): void {
  const lastOffset = options.lastOffset ?? items.at(-1)!.offset;
  h.processor.apply(TOPIC, options.partition ?? P, entriesOf(items), lastOffset, options.wallNow ?? 0);
}

/** Corpus spans as records of one partition, one span a record, from `offset` on. */
function corpusItems(spans: readonly CorpusSpan[], offset = 0n): TraceItem[] {
  return spans.map((s, i) => ({ offset: offset + BigInt(i), index: 0, tenantId: s.span.tenantId, span: s.span, timestamp: s.timestamp }));
}

/** A record of a tenant without rules at `timestamp`: moves the stream time (closing what is idle) and opens nothing. */
function clockRecord(feed: RecordFeed, timestamp: number): TraceItem[] {
  return feed.record(timestamp, { tenantId: TENANT_NO_RULES, trace: 999_999 });
}

/** Checks what the signals topic would get (key and header = tenant, a value the signal worker accepts) and returns the signals. */
function decoded(messages: readonly SignalRecord[]): Signal[] {
  return messages.map((m) => {
    const headers = m.headers as Record<string, string>;
    const decodedSignal = decoder.decode({ value: Buffer.from(m.value as string), headers });
    if (!decodedSignal.ok) throw new Error(`${decodedSignal.error.errorClass}: ${decodedSignal.error.message}`);
    const signal = decodedSignal.items[0]!.value;
    expect(m.key).toBe(signal.tenantId);
    expect(headers[TENANT_HEADER]).toBe(signal.tenantId);
    return signal;
  });
}

const keysOf = (signals: readonly Signal[]): string[] => signals.map((s) => `${s.tenantId}/${s.traceId}/${s.ruleId}`);

describe('RuleProcessor', () => {
  it('evaluates traces closed by event time and sends one signal per rule hit at sync, keyed by tenant', async () => {
    const rulesA = compileRuleSet(parseRuleFile(RULES_A, 'a.yaml'));
    const rulesB = compileRuleSet(parseRuleFile(RULES_B, 'b.yaml'));
    const h = harness({ [TENANT_A]: rulesA, [TENANT_B]: rulesB });
    await h.processor.openPartition(TOPIC, P);
    const o = { fillerSpans: 2, spanGapMs: 10, seed: 'unit' };
    const a = { tenantId: TENANT_A, rules: 'A' as const };
    const b = { tenantId: TENANT_B, rules: 'B' as const };
    const start = 1_764_000_000_000;
    const traces: CorpusTrace[] = [corpusTrace(o, a, 0, 'mixed', start), corpusTrace(o, a, 1, 'admin-no-auth', start + 5), corpusTrace(o, a, 2, 'clean', start + 10), corpusTrace(o, b, 3, 'mixed', start + 15)];
    const items = corpusItems(spansInTimeOrder(traces));
    apply(h, items);
    await h.processor.sync(TOPIC, P);
    // Still open: nothing to send yet, and the commit must stay at the oldest trace's first span.
    expect(h.signals.attempts).toBe(0);
    expect(h.processor.committableOffset(TOPIC, P)).toBe(0n);

    const closing: TraceItem = { ...clockRecord(new RecordFeed(), start + 60_000)[0]!, offset: BigInt(items.length) };
    apply(h, [closing]);
    expect(h.signals.attempts).toBe(0);
    await h.processor.sync(TOPIC, P);

    const signals = decoded(h.signals.sent);
    expect(h.signals.requests.map((r) => r.topic)).toEqual([SIGNALS_TOPIC]);
    expect(keysOf(signals).sort()).toEqual([...expectedSignals(traces)].sort());
    expect(new Set(signals.map((s) => s.id)).size).toBe(signals.length);
    for (const s of signals) {
      const trace = traces.find((t) => t.traceId === s.traceId)!;
      expect(s.metadata).toMatchObject({ segment: 0, spanCount: trace.spans.length, source: { topic: TOPIC, partition: P } });
    }
    expect(await h.metric('spanledger_rule_signals_produced_total')).toBe(signals.length);
    expect(await h.metric('spanledger_rule_signals_produced_total', { rule: 'too-many-retries' })).toBe(2);
    expect(await h.metric('spanledger_rule_traces_closed_total', { reason: 'idle' })).toBe(4);
    expect(await h.metric('spanledger_rule_trace_spans')).toBe(4);
    expect(await h.metric('spanledger_rule_spans_evaluated_total')).toBe(items.length);
    expect(await h.metric('spanledger_rule_spans_not_evaluated_total', { reason: 'no_rules' })).toBe(1);
    expect(await h.metric('spanledger_rule_traces_open')).toBe(0);
    // None open: the whole flush may be committed.
    expect(h.processor.committableOffset(TOPIC, P)).toBe(BigInt(items.length + 1));
  });

  it('retries a sync that failed after its first request was acknowledged by sending only the rest', async () => {
    // A long rule name (in the message and the metadata) makes each signal ~12 KB.
    const big = compileRuleSet([{ id: 'big', name: 'n'.repeat(6_000), severity: 'HIGH', condition: 'x', enabled: true }]);
    const h = harness({ [TENANT_A]: big });
    await h.processor.openPartition(TOPIC, P);
    const feed = new RecordFeed();
    const traces = 100;
    const items = Array.from({ length: traces }, (_, n) => feed.record(n, { trace: n })).flat();
    apply(h, [...items, ...clockRecord(feed, 10_000)]);
    h.signals.failNext(1, 'retriable', 1);

    const failure = await h.processor.sync(TOPIC, P).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(failure).toBeInstanceOf(RetriableError);
    expect(isRetriable(failure)).toBe(true);
    expect(h.signals.requests).toHaveLength(1);
    const first = h.signals.requests[0]!.messages.length;
    expect(first).toBeLessThan(traces);
    expect(await h.metric('spanledger_rule_signals_produced_total')).toBe(first);
    // Nothing durable to commit yet: the failed sync took no snapshot.
    expect(h.processor.committableOffset(TOPIC, P)).toBeUndefined();

    await h.processor.sync(TOPIC, P);
    const signals = decoded(h.signals.sent);
    expect(signals).toHaveLength(traces);
    expect(new Set(signals.map((s) => s.id)).size).toBe(traces);
    expect(h.signals.requests.length).toBeGreaterThanOrEqual(2);
    for (const r of h.signals.requests) {
      const bytes = r.messages.reduce((n, m) => n + Buffer.byteLength(m.value as string) + Buffer.byteLength(m.key as string), 0);
      expect(bytes).toBeLessThanOrEqual(MAX_REQUEST_BYTES);
    }
    expect(await h.metric('spanledger_rule_signals_produced_total', { rule: 'big' })).toBe(traces);
    expect(await h.metric('spanledger_rule_evaluation_latency_seconds')).toBe(traces);
    // A sync with nothing pending sends nothing.
    const requests = h.signals.requests.length;
    await h.processor.sync(TOPIC, P);
    expect(h.signals.requests).toHaveLength(requests);
    expect(h.processor.committableOffset(TOPIC, P)).toBe(feed.end);
  });

  it('offers the first offset of the oldest open trace for commit, at most every checkpointIntervalMs while traces are open', async () => {
    const h = harness({ [TENANT_A]: HAS_X });
    await h.processor.openPartition(TOPIC, P);
    expect(h.processor.committableOffset(TOPIC, P)).toBeUndefined();
    const feed = new RecordFeed();
    apply(h, [...feed.record(0, { trace: 1 }), ...feed.record(500, { trace: 2 })]);
    // Applied but not synced: nothing is durable yet.
    expect(h.processor.committableOffset(TOPIC, P)).toBeUndefined();
    await h.processor.sync(TOPIC, P);
    expect(h.processor.committableOffset(TOPIC, P)).toBe(0n);

    // Trace 1 closes (idle): the oldest open trace is now trace 2, at offset 1, but the last
    // snapshot is younger than the interval.
    h.clock.ms = CHECKPOINT_INTERVAL_MS - 1;
    apply(h, feed.record(1_000, { trace: 3 }));
    await h.processor.sync(TOPIC, P);
    expect(h.signals.sent).toHaveLength(1);
    expect(h.processor.committableOffset(TOPIC, P)).toBe(0n);
    h.clock.ms = CHECKPOINT_INTERVAL_MS;
    h.processor.tick(TOPIC, P, 0);
    await h.processor.sync(TOPIC, P);
    expect(h.processor.committableOffset(TOPIC, P)).toBe(1n);

    // Once nothing is open, every sync moves it to the processed end, interval or not.
    h.clock.ms += 1;
    apply(h, clockRecord(feed, 5_000));
    await h.processor.sync(TOPIC, P);
    expect(h.signals.sent).toHaveLength(3);
    expect(h.processor.committableOffset(TOPIC, P)).toBe(4n);
    h.clock.ms += 1;
    apply(h, [], { lastOffset: 6n });
    await h.processor.sync(TOPIC, P);
    expect(h.processor.committableOffset(TOPIC, P)).toBe(7n);
  });

  it('writes the latest snapshot once before a commit, and again after a failed save', async () => {
    const h = harness({ [TENANT_A]: HAS_X });
    await h.processor.openPartition(TOPIC, P);
    // Nothing synced: nothing to write.
    await h.processor.beforeCommit(TOPIC, P, 0n);
    expect(h.checkpoints.saves).toHaveLength(0);

    const feed = new RecordFeed();
    apply(h, [...feed.record(0, { trace: 1 }), ...feed.record(100, { trace: 2 })]);
    await h.processor.sync(TOPIC, P);
    await h.processor.beforeCommit(TOPIC, P, 0n);
    await h.processor.beforeCommit(TOPIC, P, 0n);
    expect(h.checkpoints.saves).toHaveLength(1);
    const written = decodeCheckpoint(await decompressCheckpoint(h.checkpoints.saves[0]!));
    expect(written.processedEnd).toBe(2n);
    expect(written.open.map((s) => s.firstOffset)).toEqual([0n, 1n]);
    expect(await h.metric('spanledger_rule_checkpoints_written_total')).toBe(1);
    expect(await h.metric('spanledger_rule_checkpoint_bytes', { partition: '0' })).toBe(h.checkpoints.saves[0]!.length);

    apply(h, clockRecord(feed, 5_000));
    await h.processor.sync(TOPIC, P);
    h.checkpoints.failSaves = 1;
    await expect(h.processor.beforeCommit(TOPIC, P, 3n)).rejects.toBeInstanceOf(RetriableError);
    expect(h.checkpoints.saves).toHaveLength(1);
    expect(await h.metric('spanledger_rule_checkpoints_written_total')).toBe(1);
    await h.processor.beforeCommit(TOPIC, P, 3n);
    expect(h.checkpoints.saves).toHaveLength(2);
    const latest = decodeCheckpoint(await decompressCheckpoint(h.checkpoints.saves[1]!));
    expect(latest.processedEnd).toBe(3n);
    expect(latest.open).toEqual([]);
    expect(latest.closed.map((c) => c.traceId)).toEqual([traceIdOf(1), traceIdOf(2)]);
    await h.processor.beforeCommit(TOPIC, P, 3n);
    expect(h.checkpoints.saves).toHaveLength(2);
    expect(await h.metric('spanledger_rule_checkpoints_written_total')).toBe(2);
  });

  describe('openPartition', () => {
    /**
     * Trace 1 (offsets 0, 2) closes idle at offset 4; trace 2 (offsets 1, 3, 4) stays open: the
     * commit is at offset 1, where trace 1 still has a span.
     */
    function firstOwner(checkpoints: FakeCheckpoints): { h: Harness; feed: RecordFeed; records: TraceItem[] } {
      const h = harness({ [TENANT_A]: HAS_X }, { checkpoints });
      const feed = new RecordFeed();
      const records = [
        ...feed.record(0, { trace: 1 }),
        ...feed.record(100, { trace: 2 }),
        ...feed.record(200, { trace: 1 }),
        ...feed.record(900, { trace: 2 }),
        ...feed.record(1_250, { trace: 2 }),
      ];
      return { h, feed, records };
    }

    it('restores a stored checkpoint: closed traces are not evaluated again, open ones are rebuilt whole', async () => {
      const checkpoints = new FakeCheckpoints();
      const { h, feed, records } = firstOwner(checkpoints);
      await h.processor.openPartition(TOPIC, P);
      apply(h, records);
      await h.processor.sync(TOPIC, P);
      const committed = h.processor.committableOffset(TOPIC, P)!;
      expect(committed).toBe(1n);
      await h.processor.beforeCommit(TOPIC, P, committed);
      const before = decoded(h.signals.sent);
      expect(before.map((s) => s.metadata.spanCount)).toEqual([2]);
      expect(await h.metric('spanledger_rule_checkpoints_restored_total', { outcome: 'none' })).toBe(1);

      // The next owner re-reads from the committed offset.
      const next = harness({ [TENANT_A]: HAS_X }, { checkpoints });
      await next.processor.openPartition(TOPIC, P);
      expect(await next.metric('spanledger_rule_checkpoints_restored_total', { outcome: 'restored' })).toBe(1);
      expect(await next.metric('spanledger_rule_checkpoints_restored_total', { outcome: 'none' })).toBe(0);
      apply(next, records.filter((r) => r.offset >= committed));
      await next.processor.sync(TOPIC, P);
      expect(next.signals.attempts).toBe(0);
      expect(await next.metric('spanledger_rule_spans_not_evaluated_total', { reason: 'replayed' })).toBe(1);
      expect(await next.metric('spanledger_rule_traces_open')).toBe(1);
      expect(next.processor.committableOffset(TOPIC, P)).toBe(1n);

      apply(next, [...feed.record(1_300, { trace: 2 }), ...clockRecord(feed, 5_000)]);
      await next.processor.sync(TOPIC, P);
      const after = decoded(next.signals.sent);
      expect(after.map((s) => [s.traceId, s.metadata.spanCount])).toEqual([[traceIdOf(2), 4]]);
      expect(after.map((s) => s.id)).not.toContain(before[0]!.id);
      expect(next.processor.committableOffset(TOPIC, P)).toBe(feed.end);
    });

    it.each([
      ['not JSON', Buffer.from('not a checkpoint')],
      ['a damaged compressed value', Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(32, 0xff)])],
    ])('starts fresh, without throwing, when the stored checkpoint is unreadable (%s)', async (_what, value) => {
      const checkpoints = new FakeCheckpoints();
      checkpoints.stored.set(`${TOPIC}/${P}`, value);
      const { h, records } = firstOwner(checkpoints);
      await h.processor.openPartition(TOPIC, P);
      expect(await h.metric('spanledger_rule_checkpoints_restored_total', { outcome: 'unreadable' })).toBe(1);
      expect(h.logs.some((l) => l.level === 50 && /checkpoint unusable/.test(String(l.msg)))).toBe(true);
      apply(h, records);
      await h.processor.sync(TOPIC, P);
      // Evaluated like a fresh partition: nothing replayed, trace 1 closes with both spans.
      expect(await h.metric('spanledger_rule_spans_not_evaluated_total', { reason: 'replayed' })).toBe(0);
      expect(decoded(h.signals.sent).map((s) => s.metadata.spanCount)).toEqual([2]);
    });

    it('starts fresh when the stored checkpoint turns out to be another partition\'s during the re-read', async () => {
      // A well-formed checkpoint whose open trace starts at a position that holds another trace.
      const checkpoints = new FakeCheckpoints();
      const { h, feed, records } = firstOwner(checkpoints);
      const foreign = { v: 1 as const, processedEnd: 5n, streamTime: 1_250, open: [{ tenantId: TENANT_A, traceId: 'f'.repeat(32), segment: 0, firstOffset: 1n, firstIndex: 0 }], closed: [] };
      checkpoints.stored.set(`${TOPIC}/${P}`, encodeCheckpoint(foreign));
      await h.processor.openPartition(TOPIC, P);
      expect(await h.metric('spanledger_rule_checkpoints_restored_total', { outcome: 'restored' })).toBe(1);
      expect(() => apply(h, records.filter((r) => r.offset >= 1n))).not.toThrow();
      expect(h.logs.some((l) => l.level === 50 && /not this partition's/.test(JSON.stringify(l)))).toBe(true);
      await h.processor.sync(TOPIC, P);
      // Fresh from this flush on: trace 1's tail (offset 2) and trace 2 (offsets 1, 3, 4) are evaluated.
      apply(h, clockRecord(feed, 5_000));
      await h.processor.sync(TOPIC, P);
      expect(decoded(h.signals.sent).map((s) => s.metadata.spanCount).sort()).toEqual([1, 3]);
      expect(h.processor.committableOffset(TOPIC, P)).toBe(feed.end);
    });

    it('counts a partition without a checkpoint as none', async () => {
      const h = harness({ [TENANT_A]: HAS_X });
      await h.processor.openPartition(TOPIC, P);
      await h.processor.openPartition(TOPIC, 1);
      expect(await h.metric('spanledger_rule_checkpoints_restored_total', { outcome: 'none' })).toBe(2);
      expect(await h.metric('spanledger_rule_checkpoints_restored_total')).toBe(2);
    });
  });

  it('closes the traces of a quiet partition on a tick (idle_wall) and sends their signals at the next sync', async () => {
    const h = harness({ [TENANT_A]: HAS_X });
    await h.processor.openPartition(TOPIC, P);
    const feed = new RecordFeed();
    apply(h, [...feed.record(0, { trace: 1 }), ...feed.record(10, { trace: 2 })], { wallNow: 10_000 });
    await h.processor.sync(TOPIC, P);
    h.processor.tick(TOPIC, P, 10_000 + IDLE_MS - 1);
    await h.processor.sync(TOPIC, P);
    expect(h.signals.attempts).toBe(0);
    expect(h.processor.committableOffset(TOPIC, P)).toBe(0n);

    h.processor.tick(TOPIC, P, 10_000 + IDLE_MS);
    expect(h.signals.attempts).toBe(0);
    expect(await h.metric('spanledger_rule_traces_closed_total', { reason: 'idle_wall' })).toBe(2);
    expect(await h.metric('spanledger_rule_traces_open')).toBe(0);
    await h.processor.sync(TOPIC, P);
    expect(decoded(h.signals.sent).map((s) => s.ruleId)).toEqual(['has-x', 'has-x']);
    expect(h.processor.committableOffset(TOPIC, P)).toBe(feed.end);
  });

  it('releases a partition: frees its open traces, forgets its pending signals, refuses calls until opened again', async () => {
    const h = harness({ [TENANT_A]: HAS_X });
    await h.processor.openPartition(TOPIC, 0);
    await h.processor.openPartition(TOPIC, 1);
    const feed0 = new RecordFeed();
    const feed1 = new RecordFeed();
    apply(h, [...feed0.record(0, { trace: 1 }), ...feed0.record(2_000, { trace: 2 })], { partition: 0 });
    apply(h, feed1.record(0, { trace: 3 }), { partition: 1 });
    expect(await h.metric('spanledger_rule_traces_open')).toBe(2);
    // What a rule worker's /status shows as openTraces.
    expect(h.processor.openTraces).toBe(2);
    await h.processor.sync(TOPIC, 1);
    await h.processor.beforeCommit(TOPIC, 1, 0n);
    expect(await h.metric('spanledger_rule_checkpoint_bytes', { partition: '1' })).toBeGreaterThan(0);

    // Partition 0 has the signal of trace 1 pending (not synced): the next owner re-reads it.
    await h.processor.releasePartition(TOPIC, 0);
    expect(await h.metric('spanledger_rule_traces_open')).toBe(1);
    expect(h.processor.openTraces).toBe(1);
    await h.processor.releasePartition(TOPIC, 1);
    expect(await h.metric('spanledger_rule_traces_open')).toBe(0);
    expect((await h.registry.getSingleMetric('spanledger_rule_checkpoint_bytes')!.get()).values).toEqual([]);
    // A second release is harmless.
    await h.processor.releasePartition(TOPIC, 1);

    expect(() => apply(h, feed0.record(3_000, { trace: 2 }))).toThrow('rule processor: partition 0 was not opened');
    expect(() => h.processor.tick(TOPIC, 0, 0)).toThrow('partition 0 was not opened');
    // The pipeline's bug, not a store's: fatal at once (InvariantError), never retried as unknown.
    expect(() => h.processor.tick(TOPIC, 0, 0)).toThrow(InvariantError);
    await expect(h.processor.sync(TOPIC, 0)).rejects.toThrow('partition 0 was not opened');
    expect(h.processor.committableOffset(TOPIC, 0)).toBeUndefined();
    await h.processor.beforeCommit(TOPIC, 0, 0n);
    expect(h.checkpoints.saves).toHaveLength(1);

    await h.processor.openPartition(TOPIC, 0);
    await h.processor.sync(TOPIC, 0);
    expect(h.signals.attempts).toBe(0);
    apply(h, feed0.record(4_000, { trace: 4 }));
    expect(await h.metric('spanledger_rule_traces_open')).toBe(1);
  });

  it('fails sync with a non-retriable error when the producer refuses the signals for good', async () => {
    const h = harness({ [TENANT_A]: HAS_X });
    await h.processor.openPartition(TOPIC, P);
    const feed = new RecordFeed();
    apply(h, [...feed.record(0, { trace: 1 }), ...clockRecord(feed, 5_000)]);
    h.signals.failNext(1, 'permanent');
    const failure = await h.processor.sync(TOPIC, P).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(failure).toBeInstanceOf(SpanledgerError);
    expect(failure).not.toBeInstanceOf(RetriableError);
    expect(isRetriable(failure)).toBe(false);
    expect(h.signals.sent).toEqual([]);
    expect(await h.metric('spanledger_rule_signals_produced_total')).toBe(0);
    expect(h.processor.committableOffset(TOPIC, P)).toBeUndefined();
  });
});
