import type { TraceEvaluation } from './evaluate.js';
import type { OpenTraceBudget } from './open-trace-budget.js';

/** One open segment of a trace: its evaluation so far and where it started. */
export interface OpenSegment {
  readonly key: string;
  readonly tenantId: string;
  readonly traceId: string;
  readonly segment: number;
  readonly evaluation: TraceEvaluation;
  readonly firstOffset: bigint;
  readonly firstIndex: number;
  readonly firstTimestamp: number;
  /** What it counts against the budget (traceStateBytes of its rules). */
  readonly bytes: number;
  lastOffset: bigint;
  lastTimestamp: number;
}

/**
 * The open segments of one partition, found by (tenant, trace id) and kept in two orders, by
 * last activity and by creation, whose fronts are what expires first; each segment counted
 * against the worker's budget while it is here. Iterating an order while removing the segments
 * already visited is safe (a Set's iteration).
 */
export class OpenSegments {
  /** By tenant and trace id (two lookups: cheaper than building a key per span). */
  private readonly byTenant = new Map<string, Map<string, OpenSegment>>();
  /** In order of last activity (a touched segment moves to the end). */
  private readonly activity = new Set<OpenSegment>();
  /** In order of creation, which is also the order of their first offsets. */
  private readonly creation = new Set<OpenSegment>();
  /** The last entry of `activity`: touching it again needs no move. */
  private lastTouched: OpenSegment | undefined;
  /** Budget bytes of these segments (returned whole on clear). */
  private bytes = 0;

  constructor(private readonly budget: OpenTraceBudget) {}

  get size(): number {
    return this.creation.size;
  }

  /** Oldest activity first. */
  get byActivity(): ReadonlySet<OpenSegment> {
    return this.activity;
  }

  /** Oldest first (smallest first offset first). */
  get byCreation(): ReadonlySet<OpenSegment> {
    return this.creation;
  }

  oldest(): OpenSegment | undefined {
    return first(this.creation);
  }

  find(tenantId: string, traceId: string): OpenSegment | undefined {
    return this.byTenant.get(tenantId)?.get(traceId);
  }

  add(segment: OpenSegment): void {
    let tenantSegments = this.byTenant.get(segment.tenantId);
    if (tenantSegments === undefined) this.byTenant.set(segment.tenantId, (tenantSegments = new Map()));
    tenantSegments.set(segment.traceId, segment);
    this.creation.add(segment);
    this.activity.add(segment);
    this.lastTouched = segment;
    this.bytes += segment.bytes;
    this.budget.acquire(segment.bytes);
  }

  /** The segment got a span: it moves to the end of the activity order. */
  touch(segment: OpenSegment): void {
    if (this.lastTouched === segment) return;
    this.activity.delete(segment);
    this.activity.add(segment);
    this.lastTouched = segment;
  }

  remove(segment: OpenSegment): void {
    const tenantSegments = this.byTenant.get(segment.tenantId)!;
    tenantSegments.delete(segment.traceId);
    if (tenantSegments.size === 0) this.byTenant.delete(segment.tenantId);
    this.creation.delete(segment);
    this.activity.delete(segment);
    if (this.lastTouched === segment) this.lastTouched = undefined;
    this.bytes -= segment.bytes;
    this.budget.release(1, segment.bytes);
  }

  /** Forgets every segment and returns its budget. */
  clear(): void {
    this.budget.release(this.creation.size, this.bytes);
    this.bytes = 0;
    this.byTenant.clear();
    this.creation.clear();
    this.activity.clear();
    this.lastTouched = undefined;
  }
}

/** Value of a remembered closed trace whose later spans are late (closed for good). */
export const FINISHED = -1;

/**
 * Closed traces of one partition, least recently used first, at most `capacity`: per
 * `<tenant>/<trace id>`, the number of the segment its next span opens, or FINISHED.
 */
export class ClosedTraceMemory {
  private readonly entries = new Map<string, number>();

  constructor(private readonly capacity: number) {}

  get size(): number {
    return this.entries.size;
  }

  /** The trace's entry, taken out (undefined: not remembered). */
  take(key: string): number | undefined {
    const next = this.entries.get(key);
    if (next !== undefined) this.entries.delete(key);
    return next;
  }

  /** Remembers the trace as the most recently used, forgetting the least recently used beyond capacity. */
  remember(key: string, next: number): void {
    this.entries.delete(key);
    this.entries.set(key, next);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value as string);
  }

  /** Puts back an entry of a checkpoint, in the checkpoint's order (the caller keeps within capacity). */
  restore(key: string, next: number): void {
    this.entries.set(key, next);
  }

  /** Least recently used first. */
  [Symbol.iterator](): IterableIterator<[string, number]> {
    return this.entries.entries();
  }

  clear(): void {
    this.entries.clear();
  }
}

export function first<V>(collection: ReadonlySet<V> | ReadonlyMap<unknown, V>): V | undefined {
  for (const value of collection.values()) return value;
  return undefined;
}
