/**
 * The TigerBeetle classifier (src/sinks/tigerbeetle/classify.ts), one row per mapping: every
 * answer the sink handles, and the disposition the pipeline gives it (errors.ts).
 */
import { describe, expect, it } from 'vitest';
import { CreateAccountStatus, CreateTransferStatus, ErrorCodes, RequestError } from 'tigerbeetle-node';
import { FatalStoreError, InvariantError, RecordRejectedError, RetriableError, dispositionOf, type Disposition } from '../../../src/errors.js';
import {
  classifyAccountResult,
  classifyRequestError,
  classifyTransferResult,
  requestTimedOut,
  resultCountMismatch,
  sinkClosed,
  type Op,
} from '../../../src/sinks/tigerbeetle/classify.js';

const SIGNAL = '0b6a7c1d-2e3f-4a5b-9c6d-7e8f9a0b1c2d';
const TRANSFER_ID = 0x1234n;

describe('create_transfers results', () => {
  const rows: Array<{ status: number; kind: 'ok' | 'exists' | 'rejected'; errorClass?: string; accountsLost?: boolean; conflict?: boolean }> = [
    { status: CreateTransferStatus.created, kind: 'ok' },
    { status: CreateTransferStatus.exists, kind: 'exists' },
    { status: CreateTransferStatus.debit_account_not_found, kind: 'rejected', errorClass: 'debit_account_not_found', accountsLost: true },
    { status: CreateTransferStatus.credit_account_not_found, kind: 'rejected', errorClass: 'credit_account_not_found', accountsLost: true },
    { status: CreateTransferStatus.exists_with_different_code, kind: 'rejected', errorClass: 'exists_with_different_code', accountsLost: false, conflict: true },
    { status: CreateTransferStatus.id_already_failed, kind: 'rejected', errorClass: 'id_already_failed', accountsLost: false },
    { status: 9999, kind: 'rejected', errorClass: 'unknown_status_9999', accountsLost: false },
  ];
  it.each(rows)('status $status → $kind (errorClass $errorClass)', ({ status, kind, errorClass, accountsLost, conflict }) => {
    const outcome = classifyTransferResult(status, SIGNAL, TRANSFER_ID);
    expect(outcome.kind).toBe(kind);
    if (outcome.kind !== 'rejected') return;
    expect(outcome.error).toBeInstanceOf(RecordRejectedError);
    expect(outcome.error.errorClass).toBe(errorClass);
    expect(outcome.error.message).toContain(SIGNAL);
    expect(outcome.error.message).toContain(String(TRANSFER_ID));
    expect(outcome.error.message.includes('stored before with different content')).toBe(conflict === true);
    expect(outcome.accountsLost).toBe(accountsLost);
  });

  it('every other status of the enum is a record rejection named after it', () => {
    for (const [name, status] of Object.entries(CreateTransferStatus)) {
      if (typeof status !== 'number' || status === CreateTransferStatus.created || status === CreateTransferStatus.exists) continue;
      const outcome = classifyTransferResult(status, SIGNAL, TRANSFER_ID);
      expect(outcome.kind === 'rejected' && outcome.error.errorClass).toBe(name);
    }
  });
});

describe('create_accounts results', () => {
  const account = { tenantId: '6f1c2d3e-4a5b-4c6d-8e7f-901a2b3c4d5e', role: 'tenant', id: 7n, ledger: 1, code: 1 };
  const rows: Array<{ name: string; status: number; error: null | typeof FatalStoreError | typeof InvariantError; text?: string }> = [
    { name: 'created', status: CreateAccountStatus.created, error: null },
    { name: 'exists', status: CreateAccountStatus.exists, error: null },
    { name: 'exists_with_different_ledger', status: CreateAccountStatus.exists_with_different_ledger, error: FatalStoreError, text: 'exists with other settings' },
    { name: 'code_must_not_be_zero (any other known status)', status: CreateAccountStatus.code_must_not_be_zero, error: InvariantError, text: 'a bug in the account derivation' },
    { name: 'a status this client does not know', status: 9999, error: FatalStoreError, text: 'unknown_status_9999' },
  ];
  it.each(rows)('$name → $error.name (null: the account exists)', ({ status, error, text }) => {
    const result = classifyAccountResult(status, account);
    if (error === null) {
      expect(result).toBeNull();
      return;
    }
    expect(result).toBeInstanceOf(error);
    expect(dispositionOf(result)).toBe('fatal');
    expect(result!.message).toContain(text);
    expect(result!.message).toContain(account.tenantId);
  });

  it('every exists_with_different_* of the enum is a FatalStoreError, every other refusal an InvariantError', () => {
    for (const [name, status] of Object.entries(CreateAccountStatus)) {
      if (typeof status !== 'number' || status === CreateAccountStatus.created || status === CreateAccountStatus.exists) continue;
      const result = classifyAccountResult(status, account);
      expect(result).toBeInstanceOf(name.startsWith('exists_with_different_') ? FatalStoreError : InvariantError);
      expect(result!.message).toContain(name);
    }
  });
});

describe('requests that fail as a whole', () => {
  type Row = { what: string; op: Op; err: unknown; events: number; type: Function; disposition: Disposition | 'split'; reason: string; replaceClient?: boolean };
  const rows: Row[] = [
    { what: 'client closed', op: 'create_transfers', err: new RequestError(ErrorCodes.ERR_CLIENT_CLOSED), events: 10, type: RetriableError, disposition: 'retry', reason: 'ERR_CLIENT_CLOSED' },
    { what: 'client evicted (replace it)', op: 'create_transfers', err: new RequestError(ErrorCodes.ERR_CLIENT_EVICTED), events: 10, type: RetriableError, disposition: 'retry', reason: 'ERR_CLIENT_EVICTED', replaceClient: true },
    { what: 'release too low', op: 'create_accounts', err: new RequestError(ErrorCodes.ERR_CLIENT_RELEASE_TOO_LOW), events: 2, type: FatalStoreError, disposition: 'fatal', reason: 'ERR_CLIENT_RELEASE_TOO_LOW' },
    { what: 'release too high', op: 'create_transfers', err: new RequestError(ErrorCodes.ERR_CLIENT_RELEASE_TOO_HIGH), events: 1, type: FatalStoreError, disposition: 'fatal', reason: 'ERR_CLIENT_RELEASE_TOO_HIGH' },
    { what: 'too much data, smaller may pass', op: 'create_transfers', err: new RequestError(ErrorCodes.ERR_TOO_MUCH_DATA), events: 2, type: Object, disposition: 'split', reason: 'ERR_TOO_MUCH_DATA' },
    { what: 'too much data for one transfer', op: 'create_transfers', err: new RequestError(ErrorCodes.ERR_TOO_MUCH_DATA), events: 1, type: FatalStoreError, disposition: 'fatal', reason: 'ERR_TOO_MUCH_DATA' },
    { what: 'too much data for two accounts', op: 'create_accounts', err: new RequestError(ErrorCodes.ERR_TOO_MUCH_DATA), events: 2, type: FatalStoreError, disposition: 'fatal', reason: 'ERR_TOO_MUCH_DATA' },
    { what: 'a code this client does not know', op: 'lookup_accounts', err: Object.assign(new Error('new'), { name: 'RequestError', code: 'ERR_SOMETHING_NEW' }), events: 2, type: RetriableError, disposition: 'retry', reason: 'ERR_SOMETHING_NEW' },
    { what: 'not the client\'s own error (unexpected)', op: 'create_transfers', err: new TypeError('invalid transfer'), events: 3, type: FatalStoreError, disposition: 'fatal', reason: 'unexpected' },
    { what: 'not even an Error', op: 'create_transfers', err: 'boom', events: 3, type: FatalStoreError, disposition: 'fatal', reason: 'unexpected' },
  ];
  it.each(rows)('$what → $disposition ($reason)', ({ op, err, events, type, disposition, reason, replaceClient }) => {
    const failure = classifyRequestError(op, err, events);
    expect(failure.reason).toBe(reason);
    if (disposition === 'split') {
      expect(failure.kind).toBe('split');
      return;
    }
    expect(failure.kind).toBe('failed');
    if (failure.kind !== 'failed') return;
    expect(failure.error).toBeInstanceOf(type);
    expect(dispositionOf(failure.error)).toBe(disposition);
    expect(failure.replaceClient).toBe(replaceClient === true);
    if (reason !== 'unexpected') expect(failure.error.message).toContain(reason);
  });

  it('a timeout, a closed sink → retry; a result list of the wrong length → fatal', () => {
    const timeout = requestTimedOut('create_accounts', 50);
    expect(timeout).toBeInstanceOf(RetriableError);
    expect(dispositionOf(timeout)).toBe('retry');
    expect(timeout.message).toMatch(/create_accounts did not answer within 50 ms/);
    expect(dispositionOf(sinkClosed())).toBe('retry');
    const mismatch = resultCountMismatch('create_transfers', 3, 4);
    expect(mismatch).toBeInstanceOf(FatalStoreError);
    expect(dispositionOf(mismatch)).toBe('fatal');
    expect(mismatch.message).toContain('3 results for 4 events');
  });
});
