import { FatalStoreError, InvariantError, LocalWaitError, RetriableError, SpanledgerError } from '../../errors.js';

/**
 * The span log's one error classifier: every failure of the file system (or of the partition
 * lock) leaves the sink through `spanLogFailure`, which decides what the pipeline does with it
 * (see `Disposition` in errors.ts). The sink's own message says what failed; the class says
 * whether retrying can help and whether the span log's circuit breaker counts it.
 */

/** Conditions the sink detects itself, named like the errno codes they stand beside. */
export const SpanLogCondition = {
  /** The kernel wrote fewer bytes than asked (the disk filled up mid-buffer). */
  shortWrite: 'SPANLOG_SHORT_WRITE',
  /** A segment holds bytes nobody can vouch for (a failed fdatasync or cut back): it must be cut back first. */
  untrustedBytes: 'SPANLOG_UNTRUSTED_BYTES',
  /** This worker's partition lock went stale and another owner took it over (proper-lockfile's code). */
  lockLost: 'ECOMPROMISED',
} as const;

/** An Error carrying one of the conditions above as its `code`, as a raw fs error carries its errno code. */
export function spanLogCondition(code: (typeof SpanLogCondition)[keyof typeof SpanLogCondition], message: string, cause?: unknown): NodeJS.ErrnoException {
  return Object.assign(new Error(message, cause === undefined ? undefined : { cause }), { code });
}

type Outcome = 'local_wait' | 'retry' | 'fatal_store' | 'invariant';

/** What each known code means for the span log; any other errno code is an I/O failure that may pass (`retry`). */
const OUTCOMES: Readonly<Record<string, Outcome>> = {
  // A wait inside this worker or for a peer, not the disk failing: the breaker must not count it.
  ELOCKED: 'local_wait', // the partition lock is held by another live owner (a hand-over under way)
  ECOMPROMISED: 'local_wait', // our lock went stale and a peer took it over: wait to get it back
  EEXIST: 'local_wait', // a peer created this segment since we read the tenant-day: read it again
  EMFILE: 'local_wait', // this process is out of file descriptors: wait for some to close
  ENFILE: 'local_wait', // the system's file table is full: the same, machine-wide
  // The disk failing in a way that may pass: retried, and counted by the breaker.
  ENOSPC: 'retry',
  EDQUOT: 'retry',
  EIO: 'retry',
  [SpanLogCondition.shortWrite]: 'retry',
  [SpanLogCondition.untrustedBytes]: 'retry',
  // Answers retrying cannot change until an operator acts: stop without committing.
  EACCES: 'fatal_store',
  EPERM: 'fatal_store',
  EROFS: 'fatal_store', // e.g. ext4 remounted read-only after errors
  ENOTDIR: 'fatal_store', // something that is not a folder sits where the span log keeps one
  EISDIR: 'fatal_store',
  ENAMETOOLONG: 'fatal_store',
  // The sink used the file system wrongly: a bug.
  EBADF: 'invariant',
};

/**
 * Types a span log failure. `message` is the sink's account of what failed (kept as the error's
 * message); `failure` is what the file system or the lock library threw. A failure that is
 * already typed is kept; one without a code (no file system error: a bug in the sink or a
 * library) stays untyped, so the pipeline retries it a bounded number of times, then surfaces it.
 */
export function spanLogFailure(message: string, failure: unknown): Error {
  if (failure instanceof SpanledgerError) return failure;
  const code = (failure as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code !== 'string') return new Error(message, { cause: failure });
  // Node refusing an argument (ERR_INVALID_ARG_TYPE, ERR_OUT_OF_RANGE, …) is the sink's bug.
  const outcome = OUTCOMES[code] ?? (code.startsWith('ERR_') ? 'invariant' : 'retry');
  switch (outcome) {
    case 'local_wait':
      return new LocalWaitError(message, failure);
    case 'retry':
      return new RetriableError(message, failure);
    case 'fatal_store':
      return new FatalStoreError('spanlog', message, failure);
    case 'invariant':
      return new InvariantError(message, failure);
  }
}
