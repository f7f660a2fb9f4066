import { FatalStoreError, RecordRejectedError, RetriableError, SpanledgerError } from '../../errors.js';

/**
 * What a DuckDB failure means for the sink. The DuckDB node API throws a plain Error whose message
 * starts with DuckDB's exception type ("Conversion Error: …"); there is no error-type property, so
 * this (and only this) reads messages.
 * - `row`: the data of a row being written (a bad cast, a value out of range): the write path
 *   bisects down to the row and rejects it in the result (`DuckDbRowRejected`), never thrown;
 * - `lock_conflict`: another process holds the file's lock: opening waits for a hand-over, then
 *   gives up as a RetriableError (the store is unavailable to this worker: its breaker counts it);
 * - `already_attached`: this instance still has the file attached after a failed DETACH: adopted;
 * - `out_of_memory`: memory_limit reached: RetriableError, and tenants are checkpointed at once;
 * - `invalidated`: DuckDB invalidated the whole instance: RetriableError, the instance is replaced;
 * - `unreadable_file`: a file this DuckDB can never read (not a DuckDB file, a newer storage
 *   version): FatalStoreError, the worker stops loudly until an operator moves it away;
 * - `typed`: already one of ours (InvariantError, LocalWaitError, …): thrown as it is;
 * - `store`: any other failure, and anything unknown: RetriableError. When unsure, retriable: a
 *   retried batch is visible (the partition stops advancing), a store problem misread as bad rows
 *   would quietly send whole batches to the dead-letter topic.
 */
export type DuckDbFailure = 'row' | 'lock_conflict' | 'already_attached' | 'out_of_memory' | 'invalidated' | 'unreadable_file' | 'typed' | 'store';

/** In order: the first match wins (store failures before the row patterns, as a Constraint Error can be either). */
const PATTERNS: ReadonlyArray<readonly [DuckDbFailure, RegExp]> = [
  ['invalidated', /database has been invalidated|^FATAL Error/i],
  ['out_of_memory', /out of memory|could not allocate|failed to allocate/i],
  ['lock_conflict', /could not set lock|conflicting lock/i],
  // ATTACH of a file this instance has attached: *Unique file handle conflict: … is already attached by database …*.
  ['already_attached', /is already attached by database/i],
  ['unreadable_file', /not a valid DuckDB database file|database file with version number .* but we can only read/i],
  ['store', /^IO Error|database is locked|no space left|disk (is )?full|quota exceeded|read-only file system/i],
  ['store', /^(INTERNAL|TransactionContext|Connection|Interrupt|Network|HTTP|Permission) Error|interrupted/i],
  ['store', /write-write conflict|duplicate key/i],
  ['row', /^(Conversion|Out of Range|Constraint) Error/i],
  // Invalid Input is also used for connection/result states, so only its data-related messages.
  ['row', /^Invalid Input Error.*(json|utf-?8|unicode|surrogate)/i],
];

/** Decides what a failure of a DuckDB call means (see DuckDbFailure). A typed error's DuckDB cause is not looked at. */
export function classifyDuckDbError(err: unknown): DuckDbFailure {
  if (err instanceof SpanledgerError) return 'typed';
  const message = duckDbMessage(err);
  return PATTERNS.find(([, re]) => re.test(message))?.[0] ?? 'store';
}

/**
 * The error the sink throws for a failed DuckDB call; `what` says what it was doing. A row error
 * outside bisecting (staging, a schema) is the store's: retriable.
 */
export function duckDbError(what: string, err: unknown): SpanledgerError {
  switch (classifyDuckDbError(err)) {
    case 'typed':
      return err as SpanledgerError;
    case 'unreadable_file':
      return new FatalStoreError('duckdb', `${what}: ${duckDbMessage(err)}`, err);
    default:
      return new RetriableError(`${what}: ${duckDbMessage(err)}`, err);
  }
}

/** A row DuckDB refuses for good (a `row` failure down to one row): returned in the write's result. */
export function rowRejection(signalId: string, err: unknown): RecordRejectedError {
  return new RecordRejectedError('DuckDbRowRejected', `DuckDB refused signal ${signalId}: ${duckDbMessage(err)}`, err);
}

/** The DuckDB error a typed error was made from (its cause, followed down), or the error itself. */
export function rawCause(err: unknown): unknown {
  let e = err;
  while (e instanceof SpanledgerError && e.cause !== undefined) e = e.cause;
  return e;
}

/** The kind of the DuckDB failure under a typed error (see rawCause). */
export function causeKind(err: unknown): DuckDbFailure {
  return classifyDuckDbError(rawCause(err));
}

/** The first line of a DuckDB error (the rest is the SQL excerpt with a caret). */
export function duckDbMessage(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0] ?? message;
}
