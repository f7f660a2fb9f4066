import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { RecordRejectedError } from '../errors.js';

/** What every sink gets from the worker that owns it. Sinks register their own metrics. */
export interface SinkContext {
  logger: Logger;
  registry: Registry;
}

/** Where a record came from: used for idempotency bookkeeping and dead-letter headers. */
export interface SourcePosition {
  topic: string;
  partition: number;
  /** Kafka offset as a decimal string (int64). */
  offset: string;
  /** The item's position within its record when a record holds several (OTLP); absent: 0. */
  index?: number;
}

/**
 * Outcome of writing one tenant's batch. Resolving means every record not listed in `rejected`
 * is durably stored (or was already stored: replays count as success). `rejected` maps the index
 * of a record in the input array to why it can never be stored: those go to the dead-letter topic.
 *
 * A transient failure (store unreachable, timeout, I/O error) must reject the promise with a
 * RetriableError instead: the worker retries the whole batch with backoff, which is safe
 * because every write is idempotent.
 */
export interface BatchWriteResult {
  rejected: Map<number, RecordRejectedError>;
}

/** One durable store, one small interface (Vector / Redpanda Connect style). */
export interface TenantBatchSink<T> {
  readonly name: string;
  start(): Promise<void>;
  /** Write one tenant's records (all from one partition, in offset order). */
  write(tenantId: string, records: ReadonlyArray<{ value: T; source: SourcePosition }>): Promise<BatchWriteResult>;
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
