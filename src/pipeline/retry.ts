import { backOff } from 'exponential-backoff';
import { FatalStoreError, dispositionOf } from '../errors.js';

/**
 * Attempts an operation gets while it fails with errors no store classifier knows (see
 * `Disposition`): with 100 ms doubling backoff about 3 s of tries, the circuit breaker counting
 * each; then the failure is surfaced (the worker stops) instead of being retried silently forever.
 */
export const UNKNOWN_FAILURE_ATTEMPTS = 5;

/**
 * The longest pause between attempts while the failure is a wait inside this worker or for a peer
 * (`local_wait`: a partition lock being handed over, file descriptors closing). Such a wait ends
 * when the peer lets go, not when a store recovers, so it is polled at this bound rather than
 * backed off to RETRY_MAX_DELAY_MS: a hand-over done in 300 ms must not cost a 30 s sleep.
 */
export const LOCAL_WAIT_MAX_DELAY_MS = 1000;

/** True for failures that are retried (never dead-lettered, never committed past). */
export function isRetriable(error: unknown): boolean {
  const disposition = dispositionOf(error);
  return disposition === 'retry' || disposition === 'local_wait';
}

export interface RetryOptions {
  maxDelayMs: number;
  /** Stop retrying (and rethrow) once this says so, e.g. the partition was revoked. */
  shouldStop: () => boolean;
  onRetry: (error: unknown, attempt: number) => void;
  /** Which failures are worth another attempt (default: the Disposition rule, unknown errors bounded). */
  retriable?: (error: unknown) => boolean;
  /** Named in the error that surfaces an unknown failure after UNKNOWN_FAILURE_ATTEMPTS. */
  what?: string;
}

/**
 * Retries `fn` with exponential backoff and full jitter for as long as the failure is transient;
 * an unknown failure gets UNKNOWN_FAILURE_ATTEMPTS attempts in a row and then rejects as a
 * FatalStoreError whose cause is the last failure.
 */
export async function retrying<T>(fn: () => Promise<T>, options: RetryOptions): Promise<T> {
  let unknownInARow = 0;
  let surfaced = false;
  const decide =
    options.retriable ??
    ((error: unknown) => {
      const disposition = dispositionOf(error);
      if (disposition === 'retry' || disposition === 'local_wait') {
        unknownInARow = 0;
        return true;
      }
      if (disposition === 'fatal') return false;
      unknownInARow += 1;
      if (unknownInARow < UNKNOWN_FAILURE_ATTEMPTS) return true;
      surfaced = true;
      return false;
    });
  // Local waits are retried by an inner loop with a short cap; what escapes it (store failures,
  // unknown errors, or a stop) goes to the outer loop, which backs off to maxDelayMs.
  const localWaits = () =>
    backOff(fn, {
      numOfAttempts: Number.MAX_SAFE_INTEGER,
      startingDelay: 100,
      timeMultiple: 2,
      maxDelay: Math.min(LOCAL_WAIT_MAX_DELAY_MS, options.maxDelayMs),
      jitter: 'full',
      delayFirstAttempt: false,
      retry: (error: unknown, attempt: number) => {
        if (options.shouldStop() || dispositionOf(error) !== 'local_wait' || !decide(error)) return false;
        options.onRetry(error, attempt);
        return true;
      },
    });
  try {
    return await backOff(localWaits, {
      numOfAttempts: Number.MAX_SAFE_INTEGER,
      startingDelay: 100,
      timeMultiple: 2,
      maxDelay: options.maxDelayMs,
      jitter: 'full',
      delayFirstAttempt: false,
      retry: (error: unknown, attempt: number) => {
        if (options.shouldStop() || !decide(error)) return false;
        options.onRetry(error, attempt);
        return true;
      },
    });
  } catch (error) {
    if (!surfaced) throw error;
    throw new FatalStoreError(options.what ?? 'store', `failed ${UNKNOWN_FAILURE_ATTEMPTS} times in a row with an error no classifier knows: ${(error as Error)?.message ?? String(error)}`, error);
  }
}
