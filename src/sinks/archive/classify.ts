import { FatalStoreError, RetriableError } from '../../errors.js';

/** The archive's store name: its circuit breaker, its retry metrics and logs. */
export const ARCHIVE_STORE = 'archive';

/** S3 error codes that say the server is busy or failing, not that the request is wrong. */
const RETRIABLE_CODES = new Set([
  'SlowDown',
  'RequestTimeout',
  'RequestTimeTooSkewed',
  'InternalError',
  'ServiceUnavailable',
  'Throttling',
  'ThrottlingException',
  'RequestLimitExceeded',
  'ExpiredToken',
  'TimeoutError',
  'RequestTimeoutException',
  'NetworkingError',
]);

/** Node's network failures: the server is down, restarting or unreachable. */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNABORTED', 'UND_ERR_SOCKET', 'ERR_STREAM_PREMATURE_CLOSE']);

interface AwsLikeError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
  cause?: unknown;
}

/**
 * The one rule for the archive's S3 calls (uploads, lists, reads), at the store's boundary:
 *
 * - retriable (a RetriableError: retried with backoff, counted by the `archive` circuit breaker,
 *   never dead-lettered, never committed past): the server is unreachable or answers 5xx, 408 or
 *   429, a throttling or timeout code, an expired token (the credential chain refreshes it), a
 *   call aborted (the partition was released: its records are read again by their new owner);
 * - fatal (a FatalStoreError: the worker stops without committing, an operator fixes the
 *   configuration): any other 4xx (no such bucket, access denied, a bad signature), no
 *   credentials or no region from the AWS chain;
 * - anything else is returned as it is: the pipeline retries an unknown error a bounded number of
 *   times, then stops (errors.ts, `Disposition`).
 */
export function classifyS3Error(what: string, error: unknown): unknown {
  if (error instanceof RetriableError || error instanceof FatalStoreError) return error;
  const e = (error ?? {}) as AwsLikeError;
  const message = `${what}: ${e.name ?? 'Error'}: ${e.message ?? String(error)}`;
  if (e.name === 'AbortError' || e.name === 'RequestAbortedError') return new RetriableError(`${what} aborted (partition released or worker stopping)`, error);
  if (e.name === 'CredentialsProviderError') return new FatalStoreError(ARCHIVE_STORE, `${message} (no credentials from the AWS chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, web identity or instance metadata)`, error);
  if (/region is missing/i.test(e.message ?? '')) return new FatalStoreError(ARCHIVE_STORE, `${message} (set AWS_REGION or a profile's region)`, error);
  const status = e.$metadata?.httpStatusCode;
  if (RETRIABLE_CODES.has(e.name ?? '') || RETRIABLE_CODES.has(e.code ?? '')) return new RetriableError(message, error);
  if (networkCode(error) !== undefined) return new RetriableError(message, error);
  if (status !== undefined) {
    if (status >= 500 || status === 408 || status === 429) return new RetriableError(message, error);
    if (status >= 400) return new FatalStoreError(ARCHIVE_STORE, `${message} (HTTP ${status})`, error);
  }
  if (e.$retryable !== undefined) return new RetriableError(message, error);
  return error;
}

/** A Node network error code on the error or its causes, if any. */
function networkCode(error: unknown): string | undefined {
  for (let e = error as AwsLikeError | undefined, depth = 0; e !== undefined && e !== null && depth < 5; e = e.cause as AwsLikeError | undefined, depth += 1) {
    if (typeof e.code === 'string' && NETWORK_CODES.has(e.code)) return e.code;
  }
  return undefined;
}
