import { describe, expect, it } from 'vitest';
import { FatalStoreError, InvariantError, LocalWaitError, RetriableError, dispositionOf, type Disposition } from '../../../src/errors.js';
import { SpanLogCondition, spanLogCondition, spanLogFailure } from '../../../src/sinks/spanlog/failures.js';

/** A raw failure as node:fs (or proper-lockfile) throws it. */
function errno(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: from the file system`), { code });
}

type ErrorClass = abstract new (...args: never[]) => Error;

/** One row per mapping: what the file system (or the lock) said, what the pipeline is told. */
const TABLE: Array<{ failure: string; raw: unknown; type: ErrorClass; disposition: Disposition }> = [
  { failure: 'partition lock held by another live owner (ELOCKED)', raw: errno('ELOCKED'), type: LocalWaitError, disposition: 'local_wait' },
  { failure: 'our stale lock taken over by a peer (ECOMPROMISED)', raw: spanLogCondition(SpanLogCondition.lockLost, 'lock compromised'), type: LocalWaitError, disposition: 'local_wait' },
  { failure: 'segment created by a peer meanwhile (EEXIST)', raw: errno('EEXIST'), type: LocalWaitError, disposition: 'local_wait' },
  { failure: 'process out of file descriptors (EMFILE)', raw: errno('EMFILE'), type: LocalWaitError, disposition: 'local_wait' },
  { failure: 'system file table full (ENFILE)', raw: errno('ENFILE'), type: LocalWaitError, disposition: 'local_wait' },
  { failure: 'disk full (ENOSPC)', raw: errno('ENOSPC'), type: RetriableError, disposition: 'retry' },
  { failure: 'quota exceeded (EDQUOT)', raw: errno('EDQUOT'), type: RetriableError, disposition: 'retry' },
  { failure: 'I/O error (EIO)', raw: errno('EIO'), type: RetriableError, disposition: 'retry' },
  { failure: 'short write', raw: spanLogCondition(SpanLogCondition.shortWrite, 'short write: 1 of 2 bytes'), type: RetriableError, disposition: 'retry' },
  { failure: 'segment with untrusted bytes not cut back yet', raw: spanLogCondition(SpanLogCondition.untrustedBytes, 'must be cut back'), type: RetriableError, disposition: 'retry' },
  { failure: 'any other errno code (ESTALE)', raw: errno('ESTALE'), type: RetriableError, disposition: 'retry' },
  { failure: 'permission denied (EACCES)', raw: errno('EACCES'), type: FatalStoreError, disposition: 'fatal' },
  { failure: 'operation not permitted (EPERM)', raw: errno('EPERM'), type: FatalStoreError, disposition: 'fatal' },
  { failure: 'read-only file system (EROFS)', raw: errno('EROFS'), type: FatalStoreError, disposition: 'fatal' },
  { failure: 'a file where a folder belongs (ENOTDIR)', raw: errno('ENOTDIR'), type: FatalStoreError, disposition: 'fatal' },
  { failure: 'a folder where a file belongs (EISDIR)', raw: errno('EISDIR'), type: FatalStoreError, disposition: 'fatal' },
  { failure: 'name too long (ENAMETOOLONG)', raw: errno('ENAMETOOLONG'), type: FatalStoreError, disposition: 'fatal' },
  { failure: 'a closed descriptor used (EBADF)', raw: errno('EBADF'), type: InvariantError, disposition: 'fatal' },
  { failure: 'node refusing an argument (ERR_INVALID_ARG_TYPE)', raw: errno('ERR_INVALID_ARG_TYPE'), type: InvariantError, disposition: 'fatal' },
];

describe('spanLogFailure: the span log error classifier', () => {
  for (const row of TABLE) {
    it(`${row.failure} → ${row.type.name} (${row.disposition})`, () => {
      const typed = spanLogFailure('appending to a segment failed', row.raw);
      expect(typed.constructor).toBe(row.type);
      expect(dispositionOf(typed)).toBe(row.disposition);
      expect(typed.message).toMatch(/appending to a segment failed$/);
      expect(typed.cause).toBe(row.raw);
    });
  }

  it('keeps a failure that is already typed', () => {
    const typed = new RetriableError('already typed');
    expect(spanLogFailure('appending failed', typed)).toBe(typed);
  });

  it('leaves a failure without a code (a bug, not the file system) untyped: retried a bounded number of times, then surfaced', () => {
    const bug = new TypeError('cannot read properties of undefined');
    const typed = spanLogFailure('cannot recover span log folder x', bug);
    expect(dispositionOf(typed)).toBe('unknown');
    expect(typed.message).toBe('cannot recover span log folder x');
    expect(typed.cause).toBe(bug);
  });
});
