/**
 * Typed errors. Every error says whether retrying the same operation can succeed:
 * - retriable errors (a store is unreachable, a timeout, an I/O hiccup) are retried with backoff
 *   and never dead-lettered; no offset is committed past them;
 * - record errors (bad JSON, schema violation, a store rejecting one record for good) are
 *   poison: the record goes to the dead-letter topic and the worker keeps going.
 */
export class SpanledgerError extends Error {
  readonly retriable: boolean;
  constructor(message: string, options: { retriable: boolean; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.retriable = options.retriable;
  }
}

/** A store or the network failed in a way that may pass: retry, never dead-letter. */
export class RetriableError extends SpanledgerError {
  constructor(message: string, cause?: unknown) {
    super(message, { retriable: true, cause });
  }
}

/** Invalid configuration: fail at start with one clear line. */
export class ConfigError extends SpanledgerError {
  constructor(message: string) {
    super(message, { retriable: false });
  }
}

/**
 * One record cannot be processed, ever. `errorClass` is a short stable name that lands in the
 * dead-letter headers (e.g. InvalidJson, SchemaViolation, InvalidTenantId, RecordTooLarge,
 * TigerBeetle result names such as exists_with_different_amount, DuckDbRowRejected).
 */
export class RecordRejectedError extends SpanledgerError {
  readonly errorClass: string;
  constructor(errorClass: string, message: string, cause?: unknown) {
    super(message, { retriable: false, cause });
    this.errorClass = errorClass;
  }
}
