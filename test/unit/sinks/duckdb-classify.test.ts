import { describe, expect, it } from 'vitest';
import { FatalStoreError, InvariantError, LocalWaitError, RecordRejectedError, RetriableError } from '../../../src/errors.js';
import { classifyDuckDbError, duckDbError, rowRejection } from '../../../src/sinks/duckdb/classify.js';
import type { DuckDbFailure } from '../../../src/sinks/duckdb/classify.js';

// One row per mapping: what DuckDB (or the sink itself) threw → what the sink makes of it.
// `row` failures are bisected down to one row and rejected in the write's result (rowRejection);
// outside bisecting (staging, the schema) the same error is the store's: retriable.
describe('classifyDuckDbError', () => {
  it.each<[string, unknown, DuckDbFailure, new (...a: never[]) => Error]>([
    ['bad JSON', new Error('Conversion Error: Malformed JSON at byte 12 of input: no low surrogate in string.'), 'row', RetriableError],
    ['bad date', new Error('Conversion Error: timestamp field value out of range: "2026-02-30"'), 'row', RetriableError],
    ['out of range', new Error('Out of Range Error: Overflow in multiplication'), 'row', RetriableError],
    ['NOT NULL', new Error('Constraint Error: NOT NULL constraint failed: signals.message'), 'row', RetriableError],
    ['invalid JSON input', new Error('Invalid Input Error: Malformed JSON: invalid unicode escape'), 'row', RetriableError],
    ['file lock held by another process', new Error('IO Error: Could not set lock on file "/x.duckdb": Conflicting lock is held in node (PID 1)'), 'lock_conflict', RetriableError],
    ['attached twice', new Error('Binder Error: Unique file handle conflict: Database "t_1" is already attached by database "t_1"'), 'already_attached', RetriableError],
    ['disk full', new Error('IO Error: Could not write file "/x.duckdb.wal": No space left on device'), 'store', RetriableError],
    ['out of memory', new Error('Out of Memory Error: could not allocate block of size 256.0 KiB'), 'out_of_memory', RetriableError],
    ['failed to allocate', new Error('Out of Memory Error: failed to allocate data of size 2.0 MiB (242.3 MiB/244.1 MiB used)'), 'out_of_memory', RetriableError],
    ['invalidated', new Error('FATAL Error: Failed: database has been invalidated because of a previous fatal error.'), 'invalidated', RetriableError],
    ['write-write conflict', new Error('TransactionContext Error: Catalog write-write conflict on create with "signals"'), 'store', RetriableError],
    ['duplicate key', new Error('Constraint Error: Duplicate key "id: 1" violates primary key constraint.'), 'store', RetriableError],
    ['result state', new Error('Invalid Input Error: Attempting to execute an unsuccessful or closed pending query result'), 'store', RetriableError],
    ['binder', new Error('Binder Error: Referenced column "x" not found'), 'store', RetriableError],
    ['unknown', new Error('something unexpected'), 'store', RetriableError],
    ['not a string error', 42, 'store', RetriableError],
    ['not a DuckDB file', new Error('IO Error: The file "/x.duckdb" exists, but it is not a valid DuckDB database file!'), 'unreadable_file', FatalStoreError],
    ['newer storage version', new Error('IO Error: Trying to read a database file with version number 99, but we can only read version 65.'), 'unreadable_file', FatalStoreError],
    ['typed: a wait inside the worker', new LocalWaitError('waited over 60000 ms for tenant x\'s turn to write DuckDB'), 'typed', LocalWaitError],
    ['typed: a caller bug', new InvariantError('tenant id "../x" is not a canonical UUID'), 'typed', InvariantError],
    ['typed: already retriable', new RetriableError('cannot open DuckDB database /x', new Error('IO Error: Could not set lock on file')), 'typed', RetriableError],
  ])('%s → %s', (_name, err, kind, thrown) => {
    expect(classifyDuckDbError(err)).toBe(kind);
    const typed = duckDbError('writing tenant x', err);
    expect(typed).toBeInstanceOf(thrown);
    if (kind === 'typed') expect(typed).toBe(err);
    else expect(typed.message).toMatch(/^(duckdb: )?writing tenant x: /);
    if (kind === 'unreadable_file') expect(typed).not.toBeInstanceOf(RetriableError);
  });

  it('rejects a row that still fails alone as DuckDbRowRejected, carried in the result', () => {
    const rejection = rowRejection('sig-1', new Error('Conversion Error: Malformed JSON at byte 12\nLINE 1: …'));
    expect(rejection).toBeInstanceOf(RecordRejectedError);
    expect(rejection.errorClass).toBe('DuckDbRowRejected');
    expect(rejection.message).toBe('DuckDB refused signal sig-1: Conversion Error: Malformed JSON at byte 12');
  });
});
