import type { ValidEntry } from './partition-batch.js';
import type { FlushSink } from '../sinks/types.js';

export type { ValidEntry } from './partition-batch.js';

/** A stage that keeps state per partition (the rule worker's open traces) instead of storing tenant batches. */
export interface PartitionProcessor<T> {
  readonly name: string;
  /**
   * The store `sync` writes to, guarded by a circuit breaker of that name, and whether a
   * partition's sync has anything to write there now (a sync with nothing to write does not call
   * the store, so it neither counts for nor closes the breaker). Absent: sync is not guarded.
   */
  readonly syncStore?: { readonly name: string; hasPending(topic: string, partition: number): boolean };
  start(): Promise<void>;
  close(): Promise<void>;
  /** Awaited in the partition's chain before its first flush after assignment (e.g. load a checkpoint). A RetriableError is retried with backoff; any other error is fatal for the worker. */
  openPartition(topic: string, partition: number): Promise<void>;
  /** Applies one flush exactly once (never retried): the valid items of ALL tenants in (offset, index) order, plus the flush's last offset (rejected records included). Synchronous, in memory; must not throw because of a record. */
  apply(topic: string, partition: number, items: ReadonlyArray<ValidEntry<T>>, lastOffset: bigint, now: number): void;
  /** Wall-clock tick, every `tickIntervalMs` while the partition is assigned, run in the partition's chain (ordered with flushes; skip it while a flush is queued or running). Synchronous. */
  tick(topic: string, partition: number, now: number): void;
  /** Makes the effects of everything applied/ticked durable (e.g. produce signals and await broker acks). Retried with backoff (RetriableError / kafkajs retriable) — it must be idempotent: resend only what is not yet acknowledged. Called after every apply and after every tick. */
  sync(topic: string, partition: number): Promise<void>;
  /** After a successful sync: the offset a restart must re-read from (e.g. the first record of the oldest open trace), or undefined when nothing needs re-reading. The committed offset is min(durable offset, this). */
  committableOffset(topic: string, partition: number): bigint | undefined;
  /** Awaited right before committing `offset` (which came from committableOffset or the durable offset): persist what a restart from `offset` needs (a checkpoint). If it throws, that commit is skipped and tried again at the next opportunity (count it as a commit failure). */
  beforeCommit(topic: string, partition: number, offset: bigint): Promise<void>;
  /** The partition went to another worker or the worker stops: drop its state. */
  releasePartition(topic: string, partition: number): Promise<void>;
}

/**
 * What a pipeline does with each flush: store it in `sinks` (each takes the whole flush, in
 * order; a record one sink rejects is not given to the next), or hand it to a stateful
 * `processor`, which also gets a tick every `tickIntervalMs` per assigned partition.
 */
export type PipelineStages<T> =
  | { sinks: FlushSink<T>[]; processor?: undefined; tickIntervalMs?: undefined }
  | { processor: PartitionProcessor<T>; tickIntervalMs: number; sinks?: undefined };

/** Exactly one of `sinks` and `processor` (with a positive whole `tickIntervalMs`); throws otherwise. */
export function validateStages<T>(stages: PipelineStages<T>): void {
  const { sinks, processor, tickIntervalMs } = stages as { sinks?: unknown; processor?: unknown; tickIntervalMs?: unknown };
  if ((sinks === undefined) === (processor === undefined)) throw new Error('a pipeline takes either sinks or a processor, not both or neither');
  if (sinks !== undefined && tickIntervalMs !== undefined) throw new Error('tickIntervalMs goes with a processor, not with sinks');
  if (processor !== undefined && !(typeof tickIntervalMs === 'number' && Number.isInteger(tickIntervalMs) && tickIntervalMs > 0)) {
    throw new Error(`a processor needs tickIntervalMs, a positive whole number of milliseconds (got ${String(tickIntervalMs)})`);
  }
}
