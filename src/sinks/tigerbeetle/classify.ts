/**
 * The TigerBeetle sink's one error classifier: every answer of the cluster or the client that is
 * not plain success is typed here, and nowhere else (the `Disposition` rule in errors.ts then
 * decides what the pipeline does):
 * - a create_transfers result: success (`created`, `exists` for a replay) or a record rejection
 *   that travels in the write's result, named after the result (`exists_with_different_code`, …);
 * - a create_accounts result: success (`created`, `exists`), FatalStoreError (the cluster holds the
 *   accounts with other settings, or answers a status this client does not know), InvariantError
 *   (the sink built an account TigerBeetle refuses: a bug in the derivation);
 * - a request that failed as a whole: RetriableError (timeout, client closed or evicted, a code
 *   this client does not know), FatalStoreError (release mismatch, the cluster refuses even the
 *   smallest request, a result list of the wrong length, an error that is not the client's own),
 *   or "split" (the batch is too large for the cluster: halve it and resend).
 * The table test is test/unit/sinks/tigerbeetle-classify.test.ts.
 */
import { CreateAccountStatus, CreateTransferStatus } from 'tigerbeetle-node';
import { FatalStoreError, InvariantError, RecordRejectedError, RetriableError, type SpanledgerError } from '../../errors.js';

export const STORE = 'tigerbeetle';

export type Op = 'create_transfers' | 'create_accounts' | 'lookup_accounts';

export function createTransferStatusName(status: number): string {
  return (CreateTransferStatus as unknown as Record<number, string | undefined>)[status] ?? `unknown_status_${status}`;
}

export function createAccountStatusName(status: number): string {
  return (CreateAccountStatus as unknown as Record<number, string | undefined>)[status] ?? `unknown_status_${status}`;
}

// ---------------------------------------------------------------------------------------------
// create_transfers results

export type TransferOutcome =
  | { readonly kind: 'ok' }
  | { readonly kind: 'exists' }
  | {
      readonly kind: 'rejected';
      readonly error: RecordRejectedError;
      /** The debit or credit account is gone although this process created it (re-formatted cluster?). */
      readonly accountsLost: boolean;
    };

const CREATED: TransferOutcome = { kind: 'ok' };
const EXISTS: TransferOutcome = { kind: 'exists' };

/**
 * One create_transfers result for the transfer of signal `signalId`. Every status other than
 * `created` and `exists` refuses that one record for good (its id is then taken or burnt in the
 * cluster): it goes to the dead-letter topic under the result's name.
 */
export function classifyTransferResult(status: number, signalId: string, transferId: bigint): TransferOutcome {
  if (status === CreateTransferStatus.created) return CREATED;
  if (status === CreateTransferStatus.exists) return EXISTS;
  const name = createTransferStatusName(status);
  const conflict = name.startsWith('exists_with_different_') ? ' (a signal with this id was stored before with different content)' : '';
  return {
    kind: 'rejected',
    error: new RecordRejectedError(name, `TigerBeetle rejected the transfer for signal ${signalId} (transfer id ${transferId}): ${name}${conflict}`),
    accountsLost: status === CreateTransferStatus.debit_account_not_found || status === CreateTransferStatus.credit_account_not_found,
  };
}

// ---------------------------------------------------------------------------------------------
// create_accounts results

export interface AccountDescription {
  tenantId: string;
  role: string;
  id: bigint;
  ledger: number;
  code: number;
}

/** One create_accounts result: null when the account exists now, else the error to throw. */
export function classifyAccountResult(status: number, account: AccountDescription): FatalStoreError | InvariantError | null {
  if (status === CreateAccountStatus.created || status === CreateAccountStatus.exists) return null;
  const name = createAccountStatusName(status);
  const what = `TigerBeetle refused the ${account.role} account ${account.id} of tenant ${account.tenantId} (ledger ${account.ledger}, code ${account.code}): ${name}`;
  if (name.startsWith('exists_with_different_')) {
    return new FatalStoreError(
      STORE,
      `${what} — the account exists with other settings: the ledger or the account layout this process uses differs from the one it was created with (check tigerbeetle.ledger)`,
    );
  }
  if (!(status in CreateAccountStatus)) {
    return new FatalStoreError(STORE, `${what} — a status this client does not know: is the cluster of another release than tigerbeetle-node?`);
  }
  return new InvariantError(`${what} — the sink built an account TigerBeetle refuses (a bug in the account derivation)`);
}

// ---------------------------------------------------------------------------------------------
// Requests that fail as a whole

export type RequestFailure =
  /** The cluster refuses the request as too large but a smaller one may pass: halve it and resend. */
  | { readonly kind: 'split'; readonly reason: string }
  | {
      readonly kind: 'failed';
      readonly error: SpanledgerError;
      /** The metric label `reason` of spanledger_tigerbeetle_request_errors_total. */
      readonly reason: string;
      /** The cluster evicted the client: make a new one (once per eviction). */
      readonly replaceClient: boolean;
    };

/** tigerbeetle-node's RequestError code (matched by shape, so a stand-in's errors work too). */
function requestErrorCode(err: unknown): string | null {
  if (err instanceof Error && err.name === 'RequestError') {
    const code = (err as Error & { code?: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return null;
}

/** A request of `events` events (transfers, accounts, ids) rejected with `err`. */
export function classifyRequestError(op: Op, err: unknown, events: number): RequestFailure {
  const failed = (error: SpanledgerError, reason: string, replaceClient = false): RequestFailure => ({ kind: 'failed', error, reason, replaceClient });
  const code = requestErrorCode(err);
  if (code === null) {
    // Not the client's own error type: a bug (e.g. a malformed event) or a broken client;
    // retrying the same request cannot help.
    const message = err instanceof Error ? err.message : String(err);
    return failed(new FatalStoreError(STORE, `${op} failed with an error that is not the client's own: ${message}`, err), 'unexpected');
  }
  switch (code) {
    case 'ERR_TOO_MUCH_DATA':
      if (op === 'create_transfers' && events > 1) return { kind: 'split', reason: code };
      return failed(
        new FatalStoreError(STORE, `the cluster refuses even a request of ${events} ${op === 'create_transfers' ? 'transfer' : 'event'}${events === 1 ? '' : 's'} (ERR_TOO_MUCH_DATA): its request limit is too small`),
        code,
      );
    case 'ERR_CLIENT_RELEASE_TOO_LOW':
    case 'ERR_CLIENT_RELEASE_TOO_HIGH':
      return failed(
        new FatalStoreError(
          STORE,
          `the cluster evicted the client (${code}): the tigerbeetle-node version does not match the cluster's release; install the tigerbeetle-node version equal to the server's`,
          err,
        ),
        code,
      );
    case 'ERR_CLIENT_EVICTED':
      return failed(new RetriableError(`TigerBeetle ${op} failed: client evicted by the cluster (${code}; it will reconnect)`, err), code, true);
    case 'ERR_CLIENT_CLOSED':
    default:
      return failed(new RetriableError(`TigerBeetle ${op} failed: ${code}`, err), code);
  }
}

/** tigerbeetle-node retries connection problems forever inside the client: a request that does not answer in time. */
export function requestTimedOut(op: Op, timeoutMs: number): RetriableError {
  return new RetriableError(`TigerBeetle ${op} did not answer within ${timeoutMs} ms (cluster unreachable or overloaded?)`);
}

/** tigerbeetle-node 0.17 answers one result per event: another count is an answer it must never give. */
export function resultCountMismatch(op: Op, results: number, events: number): FatalStoreError {
  return new FatalStoreError(STORE, `${op} answered ${results} results for ${events} events (client/server mismatch?)`);
}

/** A write or request after close(): the records are read again by whoever owns them next. */
export function sinkClosed(): RetriableError {
  return new RetriableError('TigerBeetle sink is closed');
}
