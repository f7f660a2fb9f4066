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

/**
 * A call waited too long for something inside this worker (a connection of its own pool, its
 * tenant's turn behind the worker's other writes): retriable, but the worker is busy, not the
 * store failing, so circuit breakers do not count it. Counting it opened the DuckDB breaker of a
 * signal worker under load over 500 tenants, whose probes then released every waiting write at
 * once, which timed out again: the worker stalled instead of working through its backlog.
 */
export class LocalWaitError extends RetriableError {}

/**
 * A store call waited for the store's open circuit breaker and was told to stop waiting (its
 * partition was released, the worker stops). Retriable: the records are read again, never
 * dead-lettered.
 */
export class BreakerOpenError extends RetriableError {
  constructor(readonly store: string) {
    super(`circuit breaker of ${store} is open`);
  }
}

/** Invalid configuration: fail at start with one clear line. Only for what a user configured. */
export class ConfigError extends SpanledgerError {
  constructor(message: string) {
    super(message, { retriable: false });
  }
}

/**
 * A caller broke a contract (a bug, neither the input's fault nor the store's): e.g. a sink given
 * a tenant id the decoder should have refused. Never retried, never dead-lettered: the worker
 * stops loudly without committing, so the bug is seen instead of papered over.
 */
export class InvariantError extends SpanledgerError {
  constructor(message: string, cause?: unknown) {
    super(message, { retriable: false, cause });
  }
}

/**
 * A store answered in a way that retrying cannot change (its configuration, an outcome it must
 * never give). The worker stops without committing past the records; a restart (after an
 * operator fixed the store) reads them again.
 */
export class FatalStoreError extends SpanledgerError {
  constructor(
    readonly store: string,
    message: string,
    cause?: unknown,
  ) {
    super(`${store}: ${message}`, { retriable: false, cause });
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
    // A reason may quote the input (a field name, a value): capped, so that a hostile record
    // cannot make its own dead letter (or a log line) larger than the record.
    super(capReason(message), { retriable: false, cause });
    this.errorClass = errorClass;
  }
}

/**
 * What the pipeline does with a failure, decided here only (each store's classifier turns its
 * raw errors into the typed errors above at the store's boundary):
 * - `retry`: a store or the network failed and may recover: retried with backoff, without bound
 *   (the store's circuit breaker watches, /readyz shows it); never dead-lettered or committed past;
 * - `local_wait`: retried like `retry`, but the wait was inside this worker, so breakers do not count it;
 * - `fatal`: retrying cannot help (an InvariantError, a FatalStoreError, a thrown record
 *   rejection, which must travel in a sink's result instead): the worker stops without committing;
 * - `unknown`: an error no classifier knows: retried a bounded number of times, then fatal.
 */
export type Disposition = 'retry' | 'local_wait' | 'fatal' | 'unknown';

export function dispositionOf(error: unknown): Disposition {
  if (error instanceof LocalWaitError) return 'local_wait';
  if (error instanceof SpanledgerError) return error.retriable ? 'retry' : 'fatal';
  return 'unknown';
}

/** Of several failures of one call (tenants written side by side), the one to report: fatal first, then unknown, retry, local_wait. */
const SEVERITY: Readonly<Record<Disposition, number>> = { fatal: 0, unknown: 1, retry: 2, local_wait: 3 };

export function worstFailure(failures: readonly unknown[]): unknown {
  return failures.reduce((worst, e) => (SEVERITY[dispositionOf(e)] < SEVERITY[dispositionOf(worst)] ? e : worst));
}

/** Longest reason text carried in a dead-letter header or a log line, in UTF-16 code units. */
export const MAX_REASON_LENGTH = 1024;

export function capReason(message: string): string {
  if (message.length <= MAX_REASON_LENGTH) return message;
  const cut = message.slice(0, MAX_REASON_LENGTH - 1);
  // Never end on half of a surrogate pair: the header must stay valid UTF-8.
  return `${/[\uD800-\uDBFF]$/.test(cut) ? cut.slice(0, -1) : cut}…`;
}

/**
 * A trace rule's condition does not parse (or compares what can never match). `line` and
 * `column` (1-based) are positions in the condition text; `expected` lists what would have been
 * accepted there (empty when the text parsed but says something impossible, e.g. `amount > USD`).
 * The message reads `rule high-value-payment: 2:31: expected ")" but found "{"`.
 */
export class RuleSyntaxError extends SpanledgerError {
  readonly reason: string;
  readonly line: number;
  readonly column: number;
  readonly expected: readonly string[];
  readonly ruleId: string | undefined;
  constructor(reason: string, position: { line: number; column: number; expected?: readonly string[]; ruleId?: string }) {
    super(`${position.ruleId === undefined ? '' : `rule ${position.ruleId}: `}${position.line}:${position.column}: ${reason}`, { retriable: false });
    this.reason = reason;
    this.line = position.line;
    this.column = position.column;
    this.expected = position.expected ?? [];
    this.ruleId = position.ruleId;
  }

  /** The same error, named after the rule whose condition it is in. */
  inRule(ruleId: string): RuleSyntaxError {
    return new RuleSyntaxError(this.reason, { line: this.line, column: this.column, expected: this.expected, ruleId });
  }
}

/** A rule file is refused as a whole; `problems` lists every error found in it, one line each. */
export class RuleFileError extends SpanledgerError {
  readonly problems: readonly string[];
  constructor(file: string, problems: readonly string[]) {
    super(`${file}: ${problems.length} error${problems.length === 1 ? '' : 's'}:\n${problems.map((p) => `  ${p}`).join('\n')}`, { retriable: false });
    this.problems = problems;
  }
}
