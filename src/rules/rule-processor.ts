import type { Logger } from 'pino';
import type { ValidEntry } from '../pipeline/types.js';
import { InvariantError } from '../errors.js';
import type { DecodedSpan } from '../model/decode.js';
import { TENANT_HEADER } from '../model/decode.js';
import type { RuleWorkerMetrics } from './rule-metrics.js';
import type { PartitionProcessor } from '../pipeline/types.js';
import { OpenTraceBudget } from './open-trace-budget.js';
import type { CheckpointStorePort, RulesTable, SignalPublisher, SignalRecord } from './rule-stage-ports.js';
import { PartitionTraces, type ClosedTrace } from './trace-assembler.js';
import { compressCheckpoint, decompressCheckpoint } from './checkpoint-compression.js';
import { decodeCheckpoint, encodeCheckpoint, TraceCheckpointError, type TraceCheckpoint } from './trace-checkpoint.js';
import { signalsOf } from './trace-signals.js';

export interface TraceLimits {
  idleMs: number;
  maxAgeMs: number;
  maxOpenTraces: number;
  maxOpenTraceBytes: number;
  closedMemory: number;
}

export interface RuleProcessorOptions {
  signalsTopic: string;
  signals: SignalPublisher;
  checkpoints: CheckpointStorePort;
  ruleBook: RulesTable;
  limits: TraceLimits;
  checkpointIntervalMs: number;
  logger: Logger;
  metrics: RuleWorkerMetrics;
  /** Monotonic clock (ms) for the checkpoint interval and the evaluation latency; performance.now by default. */
  now?: () => number;
}

/** A signal on its way to the signals topic, and when its trace closed (for the latency metric). */
interface PendingSignals {
  messages: SignalRecord[];
  /** Keys and values of `messages`, for request sizing. */
  bytes: number;
  ruleIds: string[];
  closedAt: number;
}

/** What a restart from `offset` needs, taken from one synced state (see docs/rule-workers.md). */
interface Snapshot {
  offset: bigint;
  checkpoint: TraceCheckpoint;
  written: boolean;
}

/** The PartitionTraces counters that feed spanledger_rule_spans_not_evaluated_total, by reason. */
const NOT_EVALUATED = { spansWithoutRules: 'no_rules', lateSpans: 'late', replaySkippedSpans: 'replayed' } as const;

class PartitionRules {
  /** Counters of `traces` already added to the metrics. */
  reported: Record<keyof typeof NOT_EVALUATED | 'spansEvaluated', number> = { spansEvaluated: 0, spansWithoutRules: 0, lateSpans: 0, replaySkippedSpans: 0 };
  lostSegments = 0;
  /** Offset after the last applied record. */
  processedEnd: bigint | undefined;
  /** Closed traces whose signals are not acknowledged yet, oldest first. */
  readonly pending: PendingSignals[] = [];
  snapshot: Snapshot | undefined;
  snapshotAt = Number.NEGATIVE_INFINITY;

  constructor(readonly traces: PartitionTraces) {}
}

/**
 * The rule worker's stage: per partition, spans go into open traces (PartitionTraces, pure);
 * traces that close are evaluated and become signals, produced to the signals topic and
 * acknowledged before the flush counts as done; the offset committed is the first record of the
 * oldest trace still open, after a checkpoint of which traces those are.
 */
export class RuleProcessor implements PartitionProcessor<DecodedSpan> {
  readonly name = 'rules';
  private readonly partitions = new Map<number, PartitionRules>();
  /** Signals waiting for the broker's acknowledgement are what a sync sends: the signals producer's breaker guards it. */
  readonly syncStore = { name: 'signals_producer', hasPending: (_topic: string, partition: number) => (this.partitions.get(partition)?.pending.length ?? 0) > 0 };
  private readonly budget: OpenTraceBudget;
  private readonly now: () => number;

  constructor(private readonly options: RuleProcessorOptions) {
    this.budget = new OpenTraceBudget(options.limits.maxOpenTraces, options.limits.maxOpenTraceBytes);
    this.now = options.now ?? (() => performance.now());
  }

  /** Open traces of every partition this worker holds (for /status). */
  get openTraces(): number {
    return this.budget.open;
  }

  async start(): Promise<void> {
    await this.options.ruleBook.start();
    await this.options.checkpoints.start();
    await this.options.signals.start();
  }

  private createTraces(topic: string, partition: number): PartitionTraces {
    const { limits, ruleBook } = this.options;
    return new PartitionTraces({
      topic,
      partition,
      idleMs: limits.idleMs,
      maxAgeMs: limits.maxAgeMs,
      closedMemory: limits.closedMemory,
      budget: this.budget,
      rulesFor: (tenantId) => ruleBook.rulesFor(tenantId),
    });
  }

  async openPartition(topic: string, partition: number): Promise<void> {
    const { options } = this;
    const { metrics, logger } = options;
    const stored = await options.checkpoints.load(topic, partition);
    let traces = this.createTraces(topic, partition);
    let outcome: 'restored' | 'none' | 'unreadable' = 'none';
    if (stored !== undefined) {
      try {
        const checkpoint = decodeCheckpoint(await decompressCheckpoint(stored));
        traces.restore(checkpoint);
        outcome = 'restored';
        logger.info({ topic, partition, open: checkpoint.open.length, processedEnd: checkpoint.processedEnd.toString() }, 'rule checkpoint restored; re-reading open traces');
      } catch (e) {
        // Unreadable, or not this partition's (e.g. the topic was recreated). Without it, traces
        // closed before the last commit may be re-evaluated from their tail: logged loudly, never
        // a reason to stop the partition.
        outcome = 'unreadable';
        logger.error({ err: e, topic, partition }, 'rule checkpoint unusable; starting the partition without it');
        traces.drop();
        traces = this.createTraces(topic, partition);
      }
    }
    metrics.checkpointsRestored.inc({ outcome });
    this.partitions.get(partition)?.traces.drop();
    this.partitions.set(partition, new PartitionRules(traces));
  }

  apply(topic: string, partition: number, items: ReadonlyArray<ValidEntry<DecodedSpan>>, lastOffset: bigint, now: number): void {
    let state = this.state(partition);
    const flushEnd = lastOffset + 1n;
    const traceItems = items.map((e) => ({ offset: e.offset, index: e.index, tenantId: e.tenantId, span: e.value.span, timestamp: Number(e.source.timestamp) }));
    try {
      // flushEnd also for a flush without spans: a replay ends at the checkpoint's processedEnd.
      state.traces.apply(traceItems, now, flushEnd);
    } catch (e) {
      if (!(e instanceof TraceCheckpointError)) throw e;
      // A restored checkpoint that is not this partition's (a recorded position holds another
      // trace, e.g. the topic was recreated) shows only during the re-read. Throwing would stop
      // the worker, and every restart would load the same checkpoint again: a crash loop. So it
      // is handled like an unreadable checkpoint: logged loudly, and the partition starts afresh
      // from this flush. Nothing closes during a replay, so no signal is pending in the
      // dropped state; spans of earlier flushes of the replay are not re-read, so their traces
      // are evaluated from here on (the same loss as any checkpoint the worker cannot use).
      this.options.logger.error({ err: e, topic, partition }, 'rule checkpoint unusable during the re-read; starting the partition afresh from this flush');
      state.traces.drop();
      state = new PartitionRules(this.createTraces(topic, partition));
      this.partitions.set(partition, state);
      state.traces.apply(traceItems, now, flushEnd);
    }
    state.processedEnd = flushEnd;
    this.collect(topic, partition, state);
  }

  tick(topic: string, partition: number, now: number): void {
    const state = this.state(partition);
    state.traces.tick(now);
    this.collect(topic, partition, state);
  }

  /** Evaluates the traces that closed and queues their signals (batched evaluation per flush). */
  private collect(topic: string, partition: number, state: PartitionRules): void {
    const { metrics, logger } = this.options;
    const closed = state.traces.takeClosed();
    const closedAt = this.now();
    // Labelled counters are counted per flush: a labelled inc() hashes its labels every call.
    const byReason = new Map<string, number>();
    for (const trace of closed) {
      byReason.set(trace.reason, (byReason.get(trace.reason) ?? 0) + 1);
      metrics.traceSpans.observe(trace.spanCount);
      state.pending.push(this.pendingOf(trace, topic, partition, closedAt));
    }
    for (const [reason, n] of byReason) metrics.tracesClosed.inc({ reason }, n);
    const { counters } = state.traces;
    if (counters.lostSegments > state.lostSegments) {
      logger.warn({ topic, partition, lost: counters.lostSegments - state.lostSegments }, 'open traces of the checkpoint start before the first record re-read (deleted by retention?): their later spans are counted as late');
      state.lostSegments = counters.lostSegments;
    }
    metrics.spansEvaluated.inc(counters.spansEvaluated - state.reported.spansEvaluated);
    state.reported.spansEvaluated = counters.spansEvaluated;
    for (const [counter, reason] of Object.entries(NOT_EVALUATED) as Array<[keyof typeof NOT_EVALUATED, string]>) {
      const delta = counters[counter] - state.reported[counter];
      if (delta > 0) metrics.spansNotEvaluated.inc({ reason }, delta);
      state.reported[counter] = counters[counter];
    }
    this.reportCounts();
  }

  private pendingOf(trace: ClosedTrace, topic: string, partition: number, closedAt: number): PendingSignals {
    const signals = signalsOf(trace, { topic, partition });
    let bytes = 0;
    const messages = signals.map((s) => {
      const value = JSON.stringify(s);
      bytes += Buffer.byteLength(value) + s.tenantId.length;
      return { key: s.tenantId, value, headers: { [TENANT_HEADER]: s.tenantId } };
    });
    return { messages, bytes, ruleIds: signals.map((s) => s.ruleId), closedAt };
  }

  async sync(_topic: string, partition: number): Promise<void> {
    const state = this.state(partition);
    const { options } = this;
    // Acknowledged chunks leave `pending` at once, so a retry after a failure sends only the rest.
    while (state.pending.length > 0) {
      const take = takeChunk(state.pending, options.signals.maxRequestBytes);
      await options.signals.publish(options.signalsTopic, take.flatMap((p) => p.messages));
      state.pending.splice(0, take.length);
      const done = this.now();
      const byRule = new Map<string, number>();
      for (const p of take) {
        options.metrics.evaluationLatency.observe((done - p.closedAt) / 1000);
        for (const rule of p.ruleIds) byRule.set(rule, (byRule.get(rule) ?? 0) + 1);
      }
      for (const [rule, n] of byRule) options.metrics.signalsProduced.inc({ rule }, n);
    }
    this.takeSnapshot(state);
  }

  /**
   * A new commit point from the state just synced: at most every checkpointIntervalMs while
   * traces are open (a checkpoint lists them), at every sync when none are.
   */
  private takeSnapshot(state: PartitionRules): void {
    if (state.processedEnd === undefined) return;
    const now = this.now();
    const retained = state.traces.retainedOffset();
    if (retained !== undefined && now - state.snapshotAt < this.options.checkpointIntervalMs && state.snapshot !== undefined) return;
    state.snapshot = { offset: retained ?? state.processedEnd, checkpoint: state.traces.checkpoint(state.processedEnd), written: false };
    state.snapshotAt = now;
  }

  committableOffset(_topic: string, partition: number): bigint | undefined {
    const state = this.partitions.get(partition);
    // No snapshot: nothing was applied and synced yet, so nothing is durable to commit either.
    return state?.snapshot?.offset;
  }

  async beforeCommit(topic: string, partition: number, _offset: bigint): Promise<void> {
    const snapshot = this.partitions.get(partition)?.snapshot;
    // The newest checkpoint is right for any commit at or before its own offset (docs/rule-workers.md).
    if (snapshot === undefined || snapshot.written) return;
    const bytes = await compressCheckpoint(encodeCheckpoint(snapshot.checkpoint));
    await this.options.checkpoints.save(topic, partition, bytes);
    snapshot.written = true;
    this.options.metrics.checkpointsWritten.inc();
    this.options.metrics.checkpointBytes.set({ partition: String(partition) }, bytes.length);
  }

  async releasePartition(_topic: string, partition: number): Promise<void> {
    const state = this.partitions.get(partition);
    if (state === undefined) return;
    // The next owner re-reads these traces from the committed offset.
    state.traces.drop();
    this.partitions.delete(partition);
    this.options.metrics.checkpointBytes.remove({ partition: String(partition) });
    this.reportCounts();
  }

  async close(): Promise<void> {
    for (const state of this.partitions.values()) state.traces.drop();
    this.partitions.clear();
    await this.options.signals.close();
    await this.options.checkpoints.close();
    await this.options.ruleBook.close();
  }

  private reportCounts(): void {
    this.options.metrics.tracesOpen.set(this.budget.open);
    this.options.metrics.tracesOpenBytes.set(this.budget.bytes);
  }

  private state(partition: number): PartitionRules {
    const state = this.partitions.get(partition);
    // The pipeline opens every partition before its first flush or tick.
    if (state === undefined) throw new InvariantError(`rule processor: partition ${partition} was not opened`);
    return state;
  }
}

/** The oldest pending traces whose signals fit one produce request of `maxBytes` (at least one trace). */
function takeChunk(pending: PendingSignals[], maxBytes: number): PendingSignals[] {
  let bytes = 0;
  let count = 0;
  for (const p of pending) {
    if (count > 0 && bytes + p.bytes > maxBytes) break;
    bytes += p.bytes;
    count += 1;
  }
  return pending.slice(0, count);
}
