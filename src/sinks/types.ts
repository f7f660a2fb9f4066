import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { RecordRejectedError } from '../errors.js';

/** What every sink gets from the worker that owns it. Sinks register their own metrics. */
export interface SinkContext {
  logger: Logger;
  registry: Registry;
}

/**
 * Where an item came from in Kafka: the record's offset and the item's place within its record
 * (0 for single-item records; an OTLP request holds many spans). One value from fetch to commit:
 * no sink parses an offset from text.
 */
export interface Position {
  readonly offset: bigint;
  readonly index: number;
}

/** One item of a flush as a sink sees it. */
export interface FlushItem<T> extends Position {
  readonly value: T;
}

/**
 * One flush of one partition, handed to each sink whole: the sink decides how to group its
 * requests (per tenant file, one request for all tenants, …); nobody batches twice.
 */
export interface SinkFlush<T> {
  readonly topic: string;
  readonly partition: number;
  /** The flush's valid items by tenant (tenant ids are canonical UUIDs), each group in (offset, index) order. */
  readonly tenants: ReadonlyMap<string, ReadonlyArray<FlushItem<T>>>;
  /**
   * Aborted once the partition is released (revoked, or the worker stopped taking it): a sink
   * whose calls can be cancelled (an object upload) cancels them, so that a worker that lost the
   * partition stops writing for it. Absent in tests that make flushes by hand.
   */
  readonly signal?: AbortSignal;
}

/**
 * Outcome of writing a flush. Resolving means every item not in `rejected` is durably stored (or
 * was already: replays count as success). `rejected` holds the items (by identity) that can never
 * be stored and why: their records go to the dead-letter topic. Record rejections travel only
 * here, never thrown.
 *
 * A failure of the store itself rejects the promise with an error the sink's classifier typed
 * (see `Disposition` in errors.ts): a RetriableError (the whole flush is retried with backoff,
 * which is safe because every write is idempotent), a LocalWaitError, a FatalStoreError, or an
 * InvariantError for a caller's bug.
 */
export interface SinkWriteResult<T> {
  readonly rejected: ReadonlyMap<FlushItem<T>, RecordRejectedError>;
}

/** One durable store, one small interface (Vector's sinks, the Collector's exporterhelper). */
export interface FlushSink<T> {
  readonly name: string;
  /**
   * True for a sink whose objects are named after the first position of each write (the
   * archive): each write of a partition then starts only once everything before it is committed
   * in Kafka, so that the writes made and not committed when a worker dies are always one flush
   * that began at the committed offset, which the replay overwrites (docs/archive.md).
   */
  readonly startsAtCommittedOffset?: boolean;
  start(): Promise<void>;
  write(flush: SinkFlush<T>): Promise<SinkWriteResult<T>>;
  /**
   * Make everything `write` accepted for this partition durable (e.g. fsync the files a flush
   * touched, once per flush). Sinks whose writes are durable when they resolve omit it. If it
   * fails, the worker repeats the whole flush, so a sink must forget what it had not synced.
   */
  sync?(topic: string, partition: number): Promise<void>;
  /** The worker no longer owns this partition: release anything tied to it (file handles, locks). */
  releasePartition?(topic: string, partition: number): Promise<void>;
  close(): Promise<void>;
}

/** A sink's result with nothing rejected. */
export function allStored<T>(): SinkWriteResult<T> {
  return { rejected: new Map() };
}
