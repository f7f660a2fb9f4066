import type { RecordRejectedError } from '../errors.js';
import type { RecordHeaders } from '../model/headers.js';

/** When a partition's buffer must be flushed. All three are hard limits: the first one reached wins. */
export interface FlushLimits {
  maxRecords: number;
  maxBytes: number;
  maxAgeMs: number;
}

/** A record in custody, as the Kafka message it came from. */
export interface SourceMessage {
  offset: bigint;
  key: Buffer | null;
  value: Buffer | null;
  headers: RecordHeaders;
  timestamp: string;
}

/** One item (a span, a signal) of a valid record: a record may hold several (an OTLP request). */
export interface ValidEntry<T> {
  offset: bigint;
  /** Position of the item within its record (0 for single-item records). */
  index: number;
  tenantId: string;
  value: T;
  source: SourceMessage;
}

/** A record that failed decoding: it is dead-lettered whole. */
export interface RejectedEntry {
  offset: bigint;
  error: RecordRejectedError;
  source: SourceMessage;
}

/** Everything one flush of one partition must make durable before its offset may be committed. */
export interface FlushPlan<T> {
  /** Valid records grouped by tenant; each group in offset order (empty for a batch 'by-offset'). */
  tenants: Map<string, ValidEntry<T>[]>;
  /** Valid records of all tenants in (offset, index) order (empty for a batch 'by-tenant'). */
  ordered: ValidEntry<T>[];
  /** Records that failed decoding, in offset order: they go to the dead-letter topic. */
  rejected: RejectedEntry[];
  firstOffset: bigint;
  lastOffset: bigint;
  /** Kafka records (the unit of custody and commit). */
  records: number;
  /** Items of the valid records plus rejected records: what BATCH_MAX_RECORDS counts. */
  items: number;
  /** In-flight bytes the records are counted with. */
  bytes: number;
  /** When the oldest record entered the buffer (ms, monotonic clock of the caller). */
  openedAt: number;
}

/**
 * Why a flush happened. 'caught_up': the partition has nothing more waiting in Kafka; 'paused':
 * fetching is paused (the in-flight budget is short), so what is buffered goes now.
 */
export type FlushReason = 'records' | 'bytes' | 'age' | 'caught_up' | 'paused';

/**
 * How a batch hands over its valid items: grouped per tenant (for sinks that store tenant
 * batches) or all tenants in one list in (offset, index) order (for a stateful processor).
 */
export type BatchOrder = 'by-tenant' | 'by-offset';

/**
 * The buffer of one partition: records in offset order, grouped per tenant or kept in one list
 * (see BatchOrder). Pure: no I/O, no timers; the caller passes the clock. A flush always takes
 * the whole buffer so that one commit point (last offset + 1) covers it.
 */
export class PartitionBatch<T> {
  private tenants = new Map<string, ValidEntry<T>[]>();
  private ordered: ValidEntry<T>[] = [];
  private rejected: RejectedEntry[] = [];
  private firstOffset: bigint | undefined;
  private lastOffset: bigint | undefined;
  private count = 0;
  private itemCount = 0;
  private byteCount = 0;
  private openedAt = 0;

  constructor(private readonly order: BatchOrder = 'by-tenant') {}

  get records(): number {
    return this.count;
  }

  get bytes(): number {
    return this.byteCount;
  }

  get isEmpty(): boolean {
    return this.count === 0;
  }

  /** A decoded record and its items, each to its tenant's group (in offset, then item order). */
  addValid(offset: bigint, items: ReadonlyArray<{ tenantId: string; value: T }>, bytes: number, source: SourceMessage, now: number): void {
    this.admit(offset, bytes, now);
    this.itemCount += items.length;
    items.forEach((item, index) => {
      if (this.order === 'by-offset') {
        this.ordered.push({ offset, index, tenantId: item.tenantId, value: item.value, source });
        return;
      }
      const group = this.tenants.get(item.tenantId);
      if (group === undefined) this.tenants.set(item.tenantId, [{ offset, index, tenantId: item.tenantId, value: item.value, source }]);
      // The group's own tenant id string, not the item's: a tenant id cut from a record's text is
      // a slice of it, which would keep the whole text alive until the flush (an archive cycle
      // holds its spans up to a minute; bench/README, ninth session).
      else group.push({ offset, index, tenantId: group[0]!.tenantId, value: item.value, source });
    });
  }

  addRejected(offset: bigint, error: RecordRejectedError, bytes: number, source: SourceMessage, now: number): void {
    this.admit(offset, bytes, now);
    this.itemCount += 1;
    this.rejected.push({ offset, error, source });
  }

  private admit(offset: bigint, bytes: number, now: number): void {
    if (this.lastOffset !== undefined && offset <= this.lastOffset) {
      throw new Error(`offsets must increase within a partition: ${offset} after ${this.lastOffset}`);
    }
    if (this.count === 0) {
      this.firstOffset = offset;
      this.openedAt = now;
    }
    this.lastOffset = offset;
    this.count += 1;
    this.byteCount += bytes;
  }

  /** Which limit, if any, says the buffer must be flushed now. */
  flushReason(limits: FlushLimits, now: number): FlushReason | undefined {
    if (this.count === 0) return undefined;
    if (this.itemCount >= limits.maxRecords) return 'records';
    if (this.byteCount >= limits.maxBytes) return 'bytes';
    if (now - this.openedAt >= limits.maxAgeMs) return 'age';
    return undefined;
  }

  /** Milliseconds until the age limit is reached, or undefined when empty. */
  msUntilDue(limits: FlushLimits, now: number): number | undefined {
    if (this.count === 0) return undefined;
    return Math.max(0, this.openedAt + limits.maxAgeMs - now);
  }

  /** Hands the whole buffer over as a flush plan and starts empty. */
  drain(): FlushPlan<T> | undefined {
    if (this.count === 0 || this.firstOffset === undefined || this.lastOffset === undefined) return undefined;
    const plan: FlushPlan<T> = {
      tenants: this.tenants,
      ordered: this.ordered,
      rejected: this.rejected,
      firstOffset: this.firstOffset,
      lastOffset: this.lastOffset,
      records: this.count,
      items: this.itemCount,
      bytes: this.byteCount,
      openedAt: this.openedAt,
    };
    this.tenants = new Map();
    this.ordered = [];
    this.rejected = [];
    this.firstOffset = undefined;
    this.lastOffset = undefined;
    this.count = 0;
    this.itemCount = 0;
    this.byteCount = 0;
    return plan;
  }
}

/**
 * Group commit: appends `later` (the next batch of the same partition) to `plan`, which is still
 * waiting to be written, keeping each tenant's records (and the ordered list) in offset order.
 */
export function mergePlans<T>(plan: FlushPlan<T>, later: FlushPlan<T>): void {
  for (const [tenantId, entries] of later.tenants) {
    const group = plan.tenants.get(tenantId);
    if (group === undefined) plan.tenants.set(tenantId, entries);
    else for (const e of entries) group.push(e);
  }
  for (const e of later.ordered) plan.ordered.push(e);
  for (const r of later.rejected) plan.rejected.push(r);
  plan.lastOffset = later.lastOffset;
  plan.records += later.records;
  plan.items += later.items;
  plan.bytes += later.bytes;
}
