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

export interface ValidEntry<T> {
  kind: 'valid';
  offset: bigint;
  tenantId: string;
  value: T;
  bytes: number;
  source: SourceMessage;
}

export interface RejectedEntry {
  kind: 'rejected';
  offset: bigint;
  error: RecordRejectedError;
  bytes: number;
  source: SourceMessage;
}

/** Everything one flush of one partition must make durable before its offset may be committed. */
export interface FlushPlan<T> {
  /** Valid records grouped by tenant; each group in offset order. */
  tenants: Map<string, ValidEntry<T>[]>;
  /** Records that failed decoding, in offset order: they go to the dead-letter topic. */
  rejected: RejectedEntry[];
  firstOffset: bigint;
  lastOffset: bigint;
  records: number;
  bytes: number;
  /** When the oldest record entered the buffer (ms, monotonic clock of the caller). */
  openedAt: number;
}

/** Why a flush happened. 'caught_up': the partition has nothing more waiting in Kafka. */
export type FlushReason = 'records' | 'bytes' | 'age' | 'caught_up';

/**
 * The buffer of one partition: records in offset order, grouped per tenant. Pure: no I/O, no
 * timers; the caller passes the clock. A flush always takes the whole buffer so that one commit
 * point (last offset + 1) covers it.
 */
export class PartitionBatch<T> {
  private tenants = new Map<string, ValidEntry<T>[]>();
  private rejected: RejectedEntry[] = [];
  private firstOffset: bigint | undefined;
  private lastOffset: bigint | undefined;
  private count = 0;
  private byteCount = 0;
  private openedAt = 0;

  get records(): number {
    return this.count;
  }

  get bytes(): number {
    return this.byteCount;
  }

  get isEmpty(): boolean {
    return this.count === 0;
  }

  add(entry: ValidEntry<T> | RejectedEntry, now: number): void {
    if (this.lastOffset !== undefined && entry.offset <= this.lastOffset) {
      throw new Error(`offsets must increase within a partition: ${entry.offset} after ${this.lastOffset}`);
    }
    if (this.count === 0) {
      this.firstOffset = entry.offset;
      this.openedAt = now;
    }
    this.lastOffset = entry.offset;
    this.count += 1;
    this.byteCount += entry.bytes;
    if (entry.kind === 'rejected') {
      this.rejected.push(entry);
      return;
    }
    const group = this.tenants.get(entry.tenantId);
    if (group === undefined) this.tenants.set(entry.tenantId, [entry]);
    else group.push(entry);
  }

  /** Which limit, if any, says the buffer must be flushed now. */
  flushReason(limits: FlushLimits, now: number): FlushReason | undefined {
    if (this.count === 0) return undefined;
    if (this.count >= limits.maxRecords) return 'records';
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
      rejected: this.rejected,
      firstOffset: this.firstOffset,
      lastOffset: this.lastOffset,
      records: this.count,
      bytes: this.byteCount,
      openedAt: this.openedAt,
    };
    this.tenants = new Map();
    this.rejected = [];
    this.firstOffset = undefined;
    this.lastOffset = undefined;
    this.count = 0;
    this.byteCount = 0;
    return plan;
  }
}

/**
 * Group commit: appends `later` (the next batch of the same partition) to `plan`, which is still
 * waiting to be written, keeping each tenant's records in offset order.
 */
export function mergePlans<T>(plan: FlushPlan<T>, later: FlushPlan<T>): void {
  for (const [tenantId, entries] of later.tenants) {
    const group = plan.tenants.get(tenantId);
    if (group === undefined) plan.tenants.set(tenantId, entries);
    else for (const e of entries) group.push(e);
  }
  for (const r of later.rejected) plan.rejected.push(r);
  plan.lastOffset = later.lastOffset;
  plan.records += later.records;
  plan.bytes += later.bytes;
}
