import { backOff } from 'exponential-backoff';
import { SpanledgerError } from '../errors.js';

/** True for failures that may pass on their own (never dead-lettered, never committed past). */
export function isRetriable(error: unknown): boolean {
  // Unknown errors are treated as transient: dead-lettering a record for a failure that is not
  // the record's fault would lose it, and committing past it is worse.
  if (error instanceof SpanledgerError) return error.retriable;
  return true;
}

export interface RetryOptions {
  maxDelayMs: number;
  /** Stop retrying (and rethrow) once this says so, e.g. the partition was revoked. */
  shouldStop: () => boolean;
  onRetry: (error: unknown, attempt: number) => void;
  /** Which failures are worth another attempt (default: isRetriable). */
  retriable?: (error: unknown) => boolean;
}

/** Retries `fn` with exponential backoff and full jitter for as long as the failure is transient. */
export function retrying<T>(fn: () => Promise<T>, options: RetryOptions): Promise<T> {
  const retriable = options.retriable ?? isRetriable;
  return backOff(fn, {
    numOfAttempts: Number.MAX_SAFE_INTEGER,
    startingDelay: 100,
    timeMultiple: 2,
    maxDelay: options.maxDelayMs,
    jitter: 'full',
    delayFirstAttempt: false,
    retry: (error: unknown, attempt: number) => {
      if (!retriable(error) || options.shouldStop()) return false;
      options.onRetry(error, attempt);
      return true;
    },
  });
}
