import { InvariantError } from '../errors.js';
import type { StoredSpan } from '../model/span-line.js';
import type { CompiledRuleSet } from './compile.js';
import { TraceEvaluation, type RuleHit } from './evaluate.js';
import { traceStateBytes, type OpenTraceBudget } from './open-trace-budget.js';
import { ClosedTraceMemory, FINISHED, first, OpenSegments, type OpenSegment } from './open-segments.js';
import { checkpointProblem, TraceCheckpointError, type CheckpointClosedTrace, type CheckpointOpenSegment, type TraceCheckpoint } from './trace-checkpoint.js';

/**
 * Why a trace segment was closed:
 * - `idle`: no span for `idleMs` of stream time; the trace is over, later spans are late.
 * - `idle_wall`: the partition received nothing for `idleMs` of wall-clock time (see tick).
 * - `max_age`: open for `maxAgeMs` of stream time; later spans continue it as the next segment.
 * - `cap`: closed early to make room under the worker's open-trace budget; continues like max_age.
 */
export type CloseReason = 'idle' | 'idle_wall' | 'max_age' | 'cap';
export const CLOSE_REASONS: readonly CloseReason[] = ['idle', 'idle_wall', 'max_age', 'cap'];

/** One span of a partition flush, in (offset, index) order across tenants. */
export interface TraceItem {
  offset: bigint;
  /** Position of the span within its record (0 for single-span records). */
  index: number;
  tenantId: string;
  span: StoredSpan;
  /** The Kafka record's timestamp (ms): the span's event time. */
  timestamp: number;
}

/** A closed trace segment and the rules that fired on it. */
export interface ClosedTrace {
  tenantId: string;
  traceId: string;
  /** 0 for a trace's first segment, n+1 for the spans that came after segment n closed at max age or by the cap. */
  segment: number;
  reason: CloseReason;
  spanCount: number;
  firstOffset: bigint;
  lastOffset: bigint;
  /** Record timestamp of the span that opened the segment. */
  firstTimestamp: number;
  /** Latest record timestamp among the segment's spans. */
  lastTimestamp: number;
  hits: RuleHit[];
}

export interface PartitionTracesOptions {
  topic: string;
  partition: number;
  /** A trace with no span for this long (stream time, and wall clock in tick) is closed. */
  idleMs: number;
  /** A trace segment open this long (stream time) is closed; its later spans open the next segment. */
  maxAgeMs: number;
  budget: OpenTraceBudget;
  /** The tenant's compiled rules; undefined (or none enabled): the tenant's spans are not tracked. */
  rulesFor: (tenantId: string) => CompiledRuleSet | undefined;
  /** How many closed traces are remembered (least recently used forgotten first). */
  closedMemory: number;
}

export interface TraceCounters {
  /** Spans added to an open trace segment (replayed ones included). */
  spansEvaluated: number;
  /** Spans of tenants without rules: not tracked. */
  spansWithoutRules: number;
  /** Spans of traces closed for good (idle) and still remembered: counted, not evaluated. */
  lateSpans: number;
  /** Re-read spans of traces that were closed before the restored checkpoint. */
  replaySkippedSpans: number;
  /** Checkpointed open segments whose first span was not re-read (see restore). */
  lostSegments: number;
  closed: Record<CloseReason, number>;
  /** Spans of all closed segments, and the largest closed segment: trace sizes at close. */
  closedSpans: number;
  largestClosed: number;
}

/** A checkpointed open segment waiting, during a replay, for the span that opened it. */
interface PendingSegment {
  readonly key: string;
  readonly entry: CheckpointOpenSegment;
}

const keyOf = (tenantId: string, traceId: string): string => `${tenantId}/${traceId}`;
const positionKey = (offset: bigint, index: number): string => `${offset}:${index}`;
const isBefore = (offset: bigint, index: number, than: { offset: bigint; index: number }): boolean => offset < than.offset || (offset === than.offset && index < than.index);

/**
 * The open traces of one partition of the spans topic: spans are assembled per (tenant, trace
 * id), evaluated against the tenant's rules as they arrive (state bounded by the rules, see
 * TraceEvaluation) and the rule hits are read when the trace closes. Pure: no I/O, no timers; the
 * caller passes the wall clock.
 *
 * **Event time is the record timestamp**, and the partition's stream time is the largest record
 * timestamp seen. Span start/end times come from many hosts' clocks: one host with a wrong clock
 * in one span would close (or hold open) every trace of the partition. The record timestamp is
 * the partition's own (set by the producer or the broker at append), and reading the same records
 * again gives the same timestamps, so closures by stream time happen at the same records on every
 * re-read, which crash recovery relies on.
 *
 * Expiry is checked when the stream time advances, before the span that advanced it is placed:
 * idle when `streamTime - lastTimestamp >= idleMs`, max age when
 * `streamTime - firstTimestamp >= maxAgeMs`. Open segments are kept in two ordered sets, by last
 * activity and by creation, and only their fronts are looked at: O(1) amortized per span. With
 * timestamps out of order a set's order is not exactly that of the timestamps, so a segment may
 * close a little late (behind a fresher one); the outcome still depends only on the input.
 *
 * A span whose trace has no open segment: not tracked if its tenant has no rules; late (counted,
 * not evaluated) if its trace closed for good and is still remembered; otherwise it opens a
 * segment (the next one after a max_age or cap closure), first closing this partition's oldest
 * segment (reason cap) if the worker's budget is full.
 *
 * The rule set is bound when a segment opens: a rule change applies to segments opened after it.
 */
export class PartitionTraces {
  readonly topic: string;
  readonly partition: number;
  readonly counters: TraceCounters = {
    spansEvaluated: 0,
    spansWithoutRules: 0,
    lateSpans: 0,
    replaySkippedSpans: 0,
    lostSegments: 0,
    closed: { idle: 0, idle_wall: 0, max_age: 0, cap: 0 },
    closedSpans: 0,
    largestClosed: 0,
  };

  private readonly idleMs: number;
  private readonly maxAgeMs: number;
  private readonly budget: OpenTraceBudget;
  private readonly rulesFor: (tenantId: string) => CompiledRuleSet | undefined;
  private readonly closedMemory: number;

  private readonly segments: OpenSegments;
  /** Closed traces, least recently used first: the next segment number, or FINISHED. */
  private readonly remembered: ClosedTraceMemory;
  private closedSinceTake: Array<{ segment: OpenSegment; reason: CloseReason }> = [];

  private streamTime: number | undefined;
  /** Position of the last span applied (offset -1: none yet). */
  private lastOffset = -1n;
  private lastIndex = 0;
  private lastItemWall: number | undefined;

  /** While set, re-read spans below this offset are a replay of a restored checkpoint. */
  private replayEnd: bigint | undefined;
  /** Checkpointed open segments not reopened yet, by first position, in position order. */
  private readonly pending = new Map<string, PendingSegment>();

  constructor(options: PartitionTracesOptions) {
    // The limits come from the validated settings: a bad one here is the caller's bug.
    for (const name of ['idleMs', 'maxAgeMs'] as const) {
      if (!(options[name] > 0)) throw new InvariantError(`${name} must be positive, not ${options[name]}`);
    }
    if (!Number.isSafeInteger(options.closedMemory) || options.closedMemory < 0) throw new InvariantError(`closedMemory must be a non-negative integer, not ${options.closedMemory}`);
    this.topic = options.topic;
    this.partition = options.partition;
    this.idleMs = options.idleMs;
    this.maxAgeMs = options.maxAgeMs;
    this.budget = options.budget;
    this.rulesFor = options.rulesFor;
    this.closedMemory = options.closedMemory;
    this.segments = new OpenSegments(options.budget);
    this.remembered = new ClosedTraceMemory(options.closedMemory);
  }

  /** Open trace segments (reopened ones included; those still awaited in a replay not). */
  get openCount(): number {
    return this.segments.size;
  }

  /** Closed traces remembered (at most closedMemory). */
  get rememberedCount(): number {
    return this.remembered.size;
  }

  /**
   * Places one flush of spans, in (offset, index) order. `flushEnd`, the offset after the flush's
   * last record, lets a replay end at the checkpoint's processedEnd even when the last re-read
   * records hold no span; without it the replay ends at the first span at or past processedEnd.
   */
  apply(items: ReadonlyArray<TraceItem>, wallNow: number, flushEnd?: bigint): void {
    for (const item of items) {
      this.checkOrder(item);
      if (this.replayEnd !== undefined) {
        if (item.offset < this.replayEnd) {
          this.replay(item);
          continue;
        }
        this.endReplay();
      }
      const time = this.eventTime(item);
      if (this.streamTime === undefined || time > this.streamTime) {
        this.streamTime = time;
        this.closeExpired(time);
      }
      this.place(item, time);
    }
    if (items.length > 0) this.lastItemWall = wallNow;
    if (flushEnd !== undefined && this.replayEnd !== undefined && flushEnd >= this.replayEnd) this.endReplay();
  }

  /**
   * Wall-clock fallback: when the partition has received no span for `idleMs` of wall-clock time,
   * its stream time stands still and nothing would close by event time, so every open segment is
   * closed (reason `idle_wall`). Never while replaying below a restored checkpoint. On revoke or
   * shutdown the state is dropped instead (see drop): the next owner re-reads.
   */
  tick(wallNow: number): void {
    if (this.replayEnd !== undefined || this.lastItemWall === undefined || this.segments.size === 0) return;
    if (wallNow - this.lastItemWall < this.idleMs) return;
    for (const segment of this.segments.byCreation) this.close(segment, 'idle_wall');
  }

  /** The segments closed since the last call, evaluated now, in the order they closed. */
  takeClosed(): ClosedTrace[] {
    const closed = this.closedSinceTake;
    this.closedSinceTake = [];
    return closed.map(({ segment: s, reason }) => ({
      tenantId: s.tenantId,
      traceId: s.traceId,
      segment: s.segment,
      reason,
      spanCount: s.evaluation.state.spanCount,
      firstOffset: s.firstOffset,
      lastOffset: s.lastOffset,
      firstTimestamp: s.firstTimestamp,
      lastTimestamp: s.lastTimestamp,
      hits: s.evaluation.hits(),
    }));
  }

  /**
   * The first offset of the oldest open segment (or of a checkpointed one a replay has yet to
   * reopen); undefined when none is open. The caller commits `retainedOffset() ?? processedEnd`.
   */
  retainedOffset(): bigint | undefined {
    const oldest = this.segments.oldest()?.firstOffset;
    const awaited = first(this.pending)?.entry.firstOffset;
    if (oldest === undefined) return awaited;
    return awaited !== undefined && awaited < oldest ? awaited : oldest;
  }

  /**
   * The state to store before committing `retainedOffset() ?? processedEnd`, once the signals of
   * every closed trace are acknowledged (so the closed traces must have been taken). During a
   * replay it is the restored checkpoint's state (processedEnd included): the state at an earlier
   * offset is not known, and the restored one stays true until the replay ends.
   */
  checkpoint(processedEnd: bigint): TraceCheckpoint {
    if (this.closedSinceTake.length > 0) throw new InvariantError(`${this.closedSinceTake.length} closed traces not taken: take them, and have their signals acknowledged, before the checkpoint`);
    if (processedEnd <= this.lastOffset) throw new InvariantError(`processedEnd ${processedEnd} is not after the last applied offset ${this.lastOffset}`);
    const end = this.replayEnd !== undefined && this.replayEnd > processedEnd ? this.replayEnd : processedEnd;
    const open: CheckpointOpenSegment[] = [];
    for (const s of this.segments.byCreation) open.push({ tenantId: s.tenantId, traceId: s.traceId, segment: s.segment, firstOffset: s.firstOffset, firstIndex: s.firstIndex });
    for (const p of this.pending.values()) open.push(p.entry);
    const closed: CheckpointClosedTrace[] = [];
    for (const [key, next] of this.remembered) {
      const [tenantId, traceId] = splitKey(key);
      closed.push(next === FINISHED ? { tenantId, traceId } : { tenantId, traceId, continuesAs: next });
    }
    return { v: 1, processedEnd: end, streamTime: this.streamTime, open, closed };
  }

  /**
   * Before the first apply of a newly assigned partition: the state stored with the committed
   * offset (undefined: none, start fresh). The re-read records below its processedEnd are then a
   * replay:
   * - the span at the recorded first position of an open segment reopens it, with its segment
   *   number; later spans of that trace join it;
   * - every other span belongs to a trace closed (and its signals acknowledged) before the
   *   checkpoint: skipped (counted);
   * - nothing closes (no expiry, no cap, no idle_wall) and the closed-trace memory stays as
   *   restored.
   *
   * Why this rebuilds exactly the state the previous owner had at processedEnd P:
   * - Every segment open at P opened at a position >= the committed offset C (C is the smallest
   *   first offset of the segments open when it was computed; see the newer-checkpoint point
   *   below), so all its spans are re-read; all of the trace's spans from that position to P went
   *   to that segment (it stayed open), so the replay adds the same spans to it. Its first
   *   and latest record timestamps, offsets and span count come from those spans alone.
   * - A span below P that is not in an open segment belonged to a segment closed before P, or
   *   was late or untracked: its signals, if any, were acknowledged before the checkpoint was
   *   stored (checkpoint() refuses while closed traces are not taken), so skipping it loses
   *   nothing and produces no fragment.
   * - Nothing closed during the replay because nothing open at P had closed before P. The maps'
   *   orders (last activity, creation) are those of the spans' positions, hence the same; the
   *   stream time and the closed-trace memory (with its LRU order) are restored as they were.
   * From P on, the same input meets the same state, so the same traces close at the same spans
   * with the same content and the same signal ids.
   *
   * A newer checkpoint is right for an older committed offset too (the checkpoint is stored
   * before the commit, and the commit may fail): the committed offsets C are non-decreasing
   * (segments open at a later checkpoint opened after the earlier one's processedEnd or were open
   * then, hence start at or after its C), so re-reading from an older C' <= C re-reads every open
   * segment from its start, and the extra records in [C', C) belong to traces closed before the
   * newer checkpoint: they are skipped like any other. The argument above never used C itself.
   *
   * If the re-read starts after an open segment's first span (the records were deleted by
   * retention), that segment cannot be rebuilt: it is counted in `lostSegments` and its trace is
   * remembered as closed for good, so that its later spans are late rather than a fragment.
   */
  restore(checkpoint: TraceCheckpoint | undefined): void {
    if (this.lastOffset >= 0n || this.segments.size > 0 || this.remembered.size > 0) throw new InvariantError('restore must come before the first apply');
    if (checkpoint === undefined) return;
    const problem = checkpointProblem(checkpoint);
    if (problem) throw new TraceCheckpointError(problem);
    this.replayEnd = checkpoint.processedEnd;
    this.streamTime = checkpoint.streamTime;
    const open = [...checkpoint.open].sort((a, b) => (a.firstOffset !== b.firstOffset ? (a.firstOffset < b.firstOffset ? -1 : 1) : a.firstIndex - b.firstIndex));
    for (const entry of open) this.pending.set(positionKey(entry.firstOffset, entry.firstIndex), { key: keyOf(entry.tenantId, entry.traceId), entry });
    // A smaller memory than the previous owner's keeps the most recently used traces.
    for (const c of checkpoint.closed.slice(Math.max(0, checkpoint.closed.length - this.closedMemory))) {
      this.remembered.restore(keyOf(c.tenantId, c.traceId), c.continuesAs ?? FINISHED);
    }
  }

  /** Revoke or shutdown: forgets everything without closing (the next owner re-reads) and returns the budget; the instance is done. */
  drop(): void {
    this.segments.clear();
    this.pending.clear();
    this.remembered.clear();
    this.closedSinceTake = [];
  }

  private checkOrder(item: TraceItem): void {
    if (item.offset < this.lastOffset || (item.offset === this.lastOffset && item.index <= this.lastIndex)) {
      throw new InvariantError(`spans must come in (offset, index) order: ${item.offset}:${item.index} after ${this.lastOffset}:${this.lastIndex}`);
    }
    this.lastOffset = item.offset;
    this.lastIndex = item.index;
  }

  /**
   * The record timestamp. One without a usable timestamp (-1: the legacy message format) counts
   * as 0, a value of the record alone, as every input to a closure must be for a replay to
   * close what the first reading closed: it never moves the stream time, and a segment it opens
   * expires at the next advance.
   */
  private eventTime(item: TraceItem): number {
    return Number.isFinite(item.timestamp) && item.timestamp >= 0 ? item.timestamp : 0;
  }

  private closeExpired(streamTime: number): void {
    for (const segment of this.segments.byActivity) {
      if (streamTime - segment.lastTimestamp < this.idleMs) break;
      this.close(segment, 'idle');
    }
    for (const segment of this.segments.byCreation) {
      if (streamTime - segment.firstTimestamp < this.maxAgeMs) break;
      this.close(segment, 'max_age');
    }
  }

  private place(item: TraceItem, time: number): void {
    const segment = this.segments.find(item.tenantId, item.span.traceId);
    if (segment !== undefined) {
      this.join(segment, item, time);
      return;
    }
    const key = keyOf(item.tenantId, item.span.traceId);
    const rules = this.rulesOf(item.tenantId);
    if (rules === undefined) {
      this.counters.spansWithoutRules++;
      return;
    }
    const next = this.remembered.take(key);
    if (next === FINISHED) {
      // Still arriving: keep remembering it (moved to the most recently used end).
      this.remembered.remember(key, FINISHED);
      this.counters.lateSpans++;
      return;
    }
    // Overshoot: a partition without open traces opens anyway, so the budget is exceeded by at
    // most one trace per partition without one; closing another partition's trace would make
    // one partition's closures depend on another's timing.
    for (let oldest = this.segments.oldest(); this.budget.isFull && oldest !== undefined; oldest = this.segments.oldest()) this.close(oldest, 'cap');
    this.open(key, item, time, rules, next ?? 0);
  }

  private replay(item: TraceItem): void {
    const segment = this.segments.find(item.tenantId, item.span.traceId);
    if (segment !== undefined) {
      this.join(segment, item, this.eventTime(item));
      return;
    }
    const key = keyOf(item.tenantId, item.span.traceId);
    // Items come in position order: an awaited segment whose position has passed was not re-read.
    for (const awaited of this.pending.values()) {
      if (!isBefore(awaited.entry.firstOffset, awaited.entry.firstIndex, item)) break;
      this.lose(awaited);
    }
    const awaited = this.pending.get(positionKey(item.offset, item.index));
    if (awaited === undefined) {
      this.counters.replaySkippedSpans++;
      return;
    }
    if (awaited.key !== key) {
      throw new TraceCheckpointError(`offset ${item.offset} index ${item.index} holds a span of ${key}, not of ${awaited.key}: the checkpoint is not this partition's (${this.topic}[${this.partition}])`);
    }
    this.pending.delete(positionKey(item.offset, item.index));
    const rules = this.rulesOf(item.tenantId);
    if (rules === undefined) {
      // The tenant's rules are gone since: the tenant is no longer tracked.
      this.counters.replaySkippedSpans++;
      return;
    }
    this.open(key, item, this.eventTime(item), rules, awaited.entry.segment);
  }

  private endReplay(): void {
    for (const awaited of this.pending.values()) this.lose(awaited);
    this.replayEnd = undefined;
  }

  private lose(awaited: PendingSegment): void {
    this.pending.delete(positionKey(awaited.entry.firstOffset, awaited.entry.firstIndex));
    this.counters.lostSegments++;
    this.remembered.remember(awaited.key, FINISHED);
  }

  private rulesOf(tenantId: string): CompiledRuleSet | undefined {
    const rules = this.rulesFor(tenantId);
    return rules === undefined || rules.rules.length === 0 ? undefined : rules;
  }

  private open(key: string, item: TraceItem, time: number, rules: CompiledRuleSet, segmentNumber: number): void {
    const segment: OpenSegment = {
      key,
      tenantId: item.tenantId,
      traceId: item.span.traceId,
      segment: segmentNumber,
      evaluation: new TraceEvaluation(rules),
      firstOffset: item.offset,
      firstIndex: item.index,
      firstTimestamp: time,
      bytes: traceStateBytes(rules),
      lastOffset: item.offset,
      lastTimestamp: time,
    };
    segment.evaluation.add(item.span);
    this.counters.spansEvaluated++;
    this.segments.add(segment);
  }

  private join(segment: OpenSegment, item: TraceItem, time: number): void {
    segment.evaluation.add(item.span);
    this.counters.spansEvaluated++;
    segment.lastOffset = item.offset;
    if (time > segment.lastTimestamp) segment.lastTimestamp = time;
    this.segments.touch(segment);
  }

  private close(segment: OpenSegment, reason: CloseReason): void {
    this.segments.remove(segment);
    this.closedSinceTake.push({ segment, reason });
    this.remembered.remember(segment.key, reason === 'max_age' || reason === 'cap' ? segment.segment + 1 : FINISHED);
    const spans = segment.evaluation.state.spanCount;
    this.counters.closed[reason]++;
    this.counters.closedSpans += spans;
    if (spans > this.counters.largestClosed) this.counters.largestClosed = spans;
  }

}

function splitKey(key: string): [string, string] {
  const slash = key.lastIndexOf('/');
  return [key.slice(0, slash), key.slice(slash + 1)];
}
