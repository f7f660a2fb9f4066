/**
 * An in-process stand-in for the tigerbeetle-node Client (0.17.x API), for unit tests of code
 * that talks to TigerBeetle. It answers createAccounts/createTransfers the way the cluster does:
 * one `{ timestamp, status }` per event, in event order, with the real CreateAccountStatus /
 * CreateTransferStatus enum values, checked in the same order as TigerBeetle 0.17.5's
 * state machine (src/state_machine.zig: create_account, create_transfer, *_exists), including
 * `exists` for an identical replay, `exists_with_different_*` naming the first differing field,
 * and `id_already_failed` for an id that failed before with a transient status.
 *
 * Modelled: single-phase transfers between accounts with flags none / debits_must_not_exceed_credits
 * / credits_must_not_exceed_debits / history; the request size limit (ERR_TOO_MUCH_DATA, thrown as
 * tigerbeetle-node's RequestError); destroy() (ERR_CLIENT_CLOSED). Not modelled (they throw):
 * linked chains, pending/post/void, balancing, closing and imported events.
 *
 * A `StandInCluster` holds the state; each client it makes (`cluster.factory`, which fits
 * TigerBeetleSignalSink's clientFactory) talks to it, so a replaced client sees the same data.
 * Test hooks on the cluster: `calls` records every request; `hang` makes new requests never answer
 * (like a client whose cluster is unreachable: tigerbeetle-node retries forever); `failNext` makes
 * the next request reject with the given error; `failWhen` rejects any request it returns an error
 * for (given the request and its position in `calls`); `batchLimit` is the events-per-request limit.
 */
import {
  AccountFlags,
  CreateAccountStatus,
  CreateTransferStatus,
  ErrorCodes,
  RequestError,
  TransferFlags,
  type Account,
  type ClientInitArgs,
  type CreateAccountResult,
  type CreateTransferResult,
  type Transfer,
} from 'tigerbeetle-node';

const U128_MAX = (1n << 128n) - 1n;

type Op = 'create_accounts' | 'create_transfers' | 'lookup_accounts';

const TRANSIENT_TRANSFER_STATUSES = new Set<CreateTransferStatus>([
  CreateTransferStatus.debit_account_not_found,
  CreateTransferStatus.credit_account_not_found,
  CreateTransferStatus.pending_transfer_not_found,
  CreateTransferStatus.exceeds_credits,
  CreateTransferStatus.exceeds_debits,
  CreateTransferStatus.debit_account_already_closed,
  CreateTransferStatus.credit_account_already_closed,
]);

const MODELLED_ACCOUNT_FLAGS =
  AccountFlags.debits_must_not_exceed_credits | AccountFlags.credits_must_not_exceed_debits | AccountFlags.history;

export class StandInCluster {
  /** Events per request the cluster accepts (8189 for the default 1 MiB message size). */
  batchLimit = 8189;
  /** When true, new requests never settle (until their client is destroyed). */
  hang = false;
  /** The next request rejects with this error (then it is cleared). */
  failNext: Error | null = null;
  /** Rejects a request with the returned error, if any (`index` = its position in `calls`). */
  failWhen: ((call: { op: Op; size: number }, index: number) => Error | undefined) | null = null;
  readonly calls: Array<{ op: Op; size: number }> = [];
  readonly clients: TigerBeetleStandIn[] = [];

  readonly accounts = new Map<bigint, Account>();
  readonly transfers = new Map<bigint, Transfer>();
  /** Transfer ids that failed with a transient status: they answer id_already_failed forever. */
  readonly failedTransferIds = new Set<bigint>();

  private clock = 1_700_000_000_000_000_000n;

  /** Fits TigerBeetleSignalSink's `clientFactory` option. */
  readonly factory = (args: ClientInitArgs): TigerBeetleStandIn => {
    const client = new TigerBeetleStandIn(this, args);
    this.clients.push(client);
    return client;
  };

  /** The most recently made client. */
  get current(): TigerBeetleStandIn {
    const client = this.clients[this.clients.length - 1];
    if (!client) throw new Error('StandInCluster: no client made yet');
    return client;
  }

  callsOf(op: Op): number[] {
    return this.calls.filter((c) => c.op === op).map((c) => c.size);
  }

  tick(): bigint {
    this.clock += 1n;
    return this.clock;
  }
}

export class TigerBeetleStandIn {
  readonly cluster: StandInCluster;
  readonly clusterId: bigint;
  readonly addresses: Array<string | number>;
  destroyed = false;
  private readonly hung: Array<(err: Error) => void> = [];

  constructor(
    cluster: StandInCluster = new StandInCluster(),
    args: ClientInitArgs = { cluster_id: 0n, replica_addresses: ['127.0.0.1:3000'] },
  ) {
    this.cluster = cluster;
    this.clusterId = args.cluster_id;
    this.addresses = args.replica_addresses;
  }

  createAccounts = (batch: Account[]): Promise<CreateAccountResult[]> =>
    this.submit('create_accounts', batch.length, () => batch.map((a) => this.createAccount(a)));

  createTransfers = (batch: Transfer[]): Promise<CreateTransferResult[]> =>
    this.submit('create_transfers', batch.length, () => batch.map((t) => this.createTransfer(t)));

  lookupAccounts = (batch: bigint[]): Promise<Account[]> =>
    this.submit('lookup_accounts', batch.length, () =>
      batch.flatMap((id) => {
        const account = this.cluster.accounts.get(id);
        return account ? [{ ...account }] : [];
      }),
    );

  destroy = (): void => {
    this.destroyed = true;
    for (const reject of this.hung.splice(0)) reject(new RequestError(ErrorCodes.ERR_CLIENT_CLOSED));
  };

  private submit<T>(op: Op, size: number, run: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.destroyed) return reject(new RequestError(ErrorCodes.ERR_CLIENT_CLOSED));
      const cluster = this.cluster;
      if (size > cluster.batchLimit) return reject(new RequestError(ErrorCodes.ERR_TOO_MUCH_DATA));
      cluster.calls.push({ op, size });
      const failure = cluster.failWhen?.({ op, size }, cluster.calls.length - 1);
      if (failure) return reject(failure);
      if (cluster.failNext) {
        const err = cluster.failNext;
        cluster.failNext = null;
        return reject(err);
      }
      if (cluster.hang) {
        this.hung.push(reject);
        return;
      }
      // Answer asynchronously, like the real client.
      setImmediate(() => {
        try {
          resolve(run());
        } catch (err) {
          reject(err);
        }
      });
    });
  }

  private createAccount(a: Account): CreateAccountResult {
    const timestamp = this.cluster.tick();
    const result = (status: CreateAccountStatus, ts = timestamp): CreateAccountResult =>
      ({ timestamp: ts, status, reserved: 0 }) as CreateAccountResult;
    if (a.flags & (AccountFlags.linked | AccountFlags.imported | AccountFlags.closed)) {
      throw new Error('TigerBeetleStandIn: linked/imported/closed accounts are not modelled');
    }
    if (a.timestamp !== 0n) return result(CreateAccountStatus.timestamp_must_be_zero);
    if (a.reserved !== 0) return result(CreateAccountStatus.reserved_field);
    if ((a.flags & ~MODELLED_ACCOUNT_FLAGS) !== 0) return result(CreateAccountStatus.reserved_flag);
    if (a.id === 0n) return result(CreateAccountStatus.id_must_not_be_zero);
    if (a.id === U128_MAX) return result(CreateAccountStatus.id_must_not_be_int_max);
    const e = this.cluster.accounts.get(a.id);
    if (e) {
      if (a.flags !== e.flags) return result(CreateAccountStatus.exists_with_different_flags);
      if (a.user_data_128 !== e.user_data_128) return result(CreateAccountStatus.exists_with_different_user_data_128);
      if (a.user_data_64 !== e.user_data_64) return result(CreateAccountStatus.exists_with_different_user_data_64);
      if (a.user_data_32 !== e.user_data_32) return result(CreateAccountStatus.exists_with_different_user_data_32);
      if (a.ledger !== e.ledger) return result(CreateAccountStatus.exists_with_different_ledger);
      if (a.code !== e.code) return result(CreateAccountStatus.exists_with_different_code);
      return result(CreateAccountStatus.exists, e.timestamp);
    }
    if (
      a.flags & AccountFlags.debits_must_not_exceed_credits &&
      a.flags & AccountFlags.credits_must_not_exceed_debits
    ) {
      return result(CreateAccountStatus.flags_are_mutually_exclusive);
    }
    if (a.debits_pending !== 0n) return result(CreateAccountStatus.debits_pending_must_be_zero);
    if (a.debits_posted !== 0n) return result(CreateAccountStatus.debits_posted_must_be_zero);
    if (a.credits_pending !== 0n) return result(CreateAccountStatus.credits_pending_must_be_zero);
    if (a.credits_posted !== 0n) return result(CreateAccountStatus.credits_posted_must_be_zero);
    if (a.ledger === 0) return result(CreateAccountStatus.ledger_must_not_be_zero);
    if (a.code === 0) return result(CreateAccountStatus.code_must_not_be_zero);
    this.cluster.accounts.set(a.id, { ...a, timestamp });
    return result(CreateAccountStatus.created);
  }

  private createTransfer(t: Transfer): CreateTransferResult {
    const timestamp = this.cluster.tick();
    const result = (status: CreateTransferStatus, ts = timestamp): CreateTransferResult => {
      if (TRANSIENT_TRANSFER_STATUSES.has(status)) this.cluster.failedTransferIds.add(t.id);
      return { timestamp: ts, status, reserved: 0 } as CreateTransferResult;
    };
    const unmodelled =
      TransferFlags.linked |
      TransferFlags.pending |
      TransferFlags.post_pending_transfer |
      TransferFlags.void_pending_transfer |
      TransferFlags.balancing_debit |
      TransferFlags.balancing_credit |
      TransferFlags.closing_debit |
      TransferFlags.closing_credit |
      TransferFlags.imported;
    if (t.flags & unmodelled) throw new Error('TigerBeetleStandIn: only single-phase transfers are modelled');
    if (t.timestamp !== 0n) return result(CreateTransferStatus.timestamp_must_be_zero);
    if (t.flags !== 0) return result(CreateTransferStatus.reserved_flag);
    if (t.id === 0n) return result(CreateTransferStatus.id_must_not_be_zero);
    if (t.id === U128_MAX) return result(CreateTransferStatus.id_must_not_be_int_max);
    const e = this.cluster.transfers.get(t.id);
    if (e) {
      if (t.flags !== e.flags) return result(CreateTransferStatus.exists_with_different_flags);
      if (t.pending_id !== e.pending_id) return result(CreateTransferStatus.exists_with_different_pending_id);
      if (t.timeout !== e.timeout) return result(CreateTransferStatus.exists_with_different_timeout);
      if (t.debit_account_id !== e.debit_account_id) {
        return result(CreateTransferStatus.exists_with_different_debit_account_id);
      }
      if (t.credit_account_id !== e.credit_account_id) {
        return result(CreateTransferStatus.exists_with_different_credit_account_id);
      }
      if (t.amount !== e.amount) return result(CreateTransferStatus.exists_with_different_amount);
      if (t.user_data_128 !== e.user_data_128) return result(CreateTransferStatus.exists_with_different_user_data_128);
      if (t.user_data_64 !== e.user_data_64) return result(CreateTransferStatus.exists_with_different_user_data_64);
      if (t.user_data_32 !== e.user_data_32) return result(CreateTransferStatus.exists_with_different_user_data_32);
      if (t.ledger !== e.ledger) return result(CreateTransferStatus.exists_with_different_ledger);
      if (t.code !== e.code) return result(CreateTransferStatus.exists_with_different_code);
      return result(CreateTransferStatus.exists, e.timestamp);
    }
    if (this.cluster.failedTransferIds.has(t.id)) return result(CreateTransferStatus.id_already_failed);
    if (t.debit_account_id === 0n) return result(CreateTransferStatus.debit_account_id_must_not_be_zero);
    if (t.debit_account_id === U128_MAX) return result(CreateTransferStatus.debit_account_id_must_not_be_int_max);
    if (t.credit_account_id === 0n) return result(CreateTransferStatus.credit_account_id_must_not_be_zero);
    if (t.credit_account_id === U128_MAX) return result(CreateTransferStatus.credit_account_id_must_not_be_int_max);
    if (t.credit_account_id === t.debit_account_id) return result(CreateTransferStatus.accounts_must_be_different);
    if (t.pending_id !== 0n) return result(CreateTransferStatus.pending_id_must_be_zero);
    if (t.timeout !== 0) return result(CreateTransferStatus.timeout_reserved_for_pending_transfer);
    if (t.ledger === 0) return result(CreateTransferStatus.ledger_must_not_be_zero);
    if (t.code === 0) return result(CreateTransferStatus.code_must_not_be_zero);
    const dr = this.cluster.accounts.get(t.debit_account_id);
    if (!dr) return result(CreateTransferStatus.debit_account_not_found);
    const cr = this.cluster.accounts.get(t.credit_account_id);
    if (!cr) return result(CreateTransferStatus.credit_account_not_found);
    if (dr.ledger !== cr.ledger) return result(CreateTransferStatus.accounts_must_have_the_same_ledger);
    if (t.ledger !== dr.ledger) return result(CreateTransferStatus.transfer_must_have_the_same_ledger_as_accounts);
    if (dr.debits_posted + t.amount > U128_MAX) return result(CreateTransferStatus.overflows_debits_posted);
    if (cr.credits_posted + t.amount > U128_MAX) return result(CreateTransferStatus.overflows_credits_posted);
    if (dr.debits_pending + dr.debits_posted + t.amount > U128_MAX) return result(CreateTransferStatus.overflows_debits);
    if (cr.credits_pending + cr.credits_posted + t.amount > U128_MAX) {
      return result(CreateTransferStatus.overflows_credits);
    }
    if (
      dr.flags & AccountFlags.debits_must_not_exceed_credits &&
      dr.debits_pending + dr.debits_posted + t.amount > dr.credits_posted
    ) {
      return result(CreateTransferStatus.exceeds_credits);
    }
    if (
      cr.flags & AccountFlags.credits_must_not_exceed_debits &&
      cr.credits_pending + cr.credits_posted + t.amount > cr.debits_posted
    ) {
      return result(CreateTransferStatus.exceeds_debits);
    }
    this.cluster.transfers.set(t.id, { ...t, timestamp });
    dr.debits_posted += t.amount;
    cr.credits_posted += t.amount;
    return result(CreateTransferStatus.created);
  }
}
