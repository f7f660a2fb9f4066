/**
 * TigerBeetle sink for signals: one transfer of amount 1 per signal, from the tenant's account
 * (debited) to the tenant's signals account (credited). The README beside this file documents the
 * id derivations, the ledger/code/user_data mapping and the failure handling.
 */
import { createHash, hash } from 'node:crypto';
import {
  AccountFlags,
  CreateAccountStatus,
  CreateTransferStatus,
  TransferFlags,
  createClient,
  type Account,
  type Client,
  type ClientInitArgs,
  type CreateTransferResult,
  type Transfer,
} from 'tigerbeetle-node';
import { Counter, Histogram, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import { ConfigError, FatalStoreError, InvariantError, RecordRejectedError, RetriableError } from '../../errors.js';
import { SEVERITIES, parseSignalTime, signalTime, type Severity, type Signal } from '../../model/signal.js';
import { isCanonicalUuid } from '../../model/tenant.js';
import type { SinkContext } from '../types.js';
import type { BatchWriteResult, SourcePosition, TenantBatchSink } from '../tenant-batch-adapter.js';

/** The most transfers one request can carry with the default 1 MiB message size (8189 × 128 B). */
export const TIGERBEETLE_BATCH_MAX = 8189;
export const DEFAULT_LEDGER = 1;
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** Timed-out requests still queued in one client before the sink replaces that client. */
export const DEFAULT_MAX_ABANDONED_REQUESTS = 8;

const U128_MAX = (1n << 128n) - 1n;

/** Transfer `code` (and nothing else) carries the severity: TigerBeetle requires code != 0. */
export const SEVERITY_CODES: Readonly<Record<Severity, number>> = {
  LOW: 1,
  MEDIUM: 2,
  HIGH: 3,
  CRITICAL: 4,
};

/** Account `code`s: which of a tenant's two accounts this is. */
export const ACCOUNT_CODES = {
  tenant: 1,
  signals: 2,
} as const;
export type AccountRole = keyof typeof ACCOUNT_CODES;

export interface TigerBeetleSinkConfig {
  clusterId: bigint;
  /** Replica addresses, e.g. ['127.0.0.1:3000'] (all replicas of the cluster, in order). */
  addresses: string[];
  /** Transfers per createTransfers call, 1..8189 (default 8189, the cluster maximum). */
  maxBatch?: number;
  /** Ledger of both tenant accounts and of every transfer (default 1). */
  ledger?: number;
  /** A request that has not answered by then fails with a RetriableError (default 10000). */
  requestTimeoutMs?: number;
  /**
   * After this many timed-out requests are still pending in one client, the client is destroyed
   * and a new one made (default 8). See the README: normally a timed-out request is left alone.
   */
  maxAbandonedRequests?: number;
}

/** The part of the tigerbeetle-node Client this sink uses: a test can hand in a stand-in. */
export type TigerBeetleClient = Pick<Client, 'createAccounts' | 'createTransfers' | 'lookupAccounts' | 'destroy'>;
export type TigerBeetleClientFactory = (args: ClientInitArgs) => TigerBeetleClient;

export interface TigerBeetleSinkOptions {
  /** Defaults to tigerbeetle-node's createClient. */
  clientFactory?: TigerBeetleClientFactory;
}

export interface AccountBalances {
  id: bigint;
  debitsPosted: bigint;
  creditsPosted: bigint;
  debitsPending: bigint;
  creditsPending: bigint;
}

export interface TenantBalances {
  tenantId: string;
  ledger: number;
  /** The tenant's account (debited once per signal); null if it does not exist (yet). */
  tenant: AccountBalances | null;
  /** The tenant's signals account (credited once per signal); null if it does not exist (yet). */
  signals: AccountBalances | null;
}

type Op = 'create_transfers' | 'create_accounts' | 'lookup_accounts';

// ---------------------------------------------------------------------------------------------
// Id and field derivations (documented in README.md; changing any of them breaks idempotency).
// ---------------------------------------------------------------------------------------------

/** A canonical UUID's 128 bits as an unsigned bigint (big-endian, i.e. the hex digits in order). */
export function uuidToU128(uuid: string): bigint {
  return BigInt(`0x${uuid.replace(/-/g, '')}`);
}

const TRANSFER_ID_DOMAIN = 'spanledger/tigerbeetle/transfer/v2\0';
/** transferIdFor's input (domain, tenant bytes, signal bytes, counter byte), reused: ~2x faster. */
const transferIdInput = Buffer.alloc(TRANSFER_ID_DOMAIN.length + 33);
transferIdInput.write(TRANSFER_ID_DOMAIN, 0, 'latin1');
const transferIdInputNoCounter = transferIdInput.subarray(0, TRANSFER_ID_DOMAIN.length + 32);

/**
 * Transfer id = the first 16 bytes (big-endian) of
 * SHA-256("spanledger/tigerbeetle/transfer/v2" NUL, tenant UUID's 16 bytes, signal UUID's 16 bytes),
 * with one counter byte (1, 2, …) appended only if that is 0 or 2^128-1 (ids TigerBeetle forbids).
 * Scoped by tenant, so one tenant's signal ids cannot take another tenant's transfer ids; the
 * same (tenant, signal) always maps to the same id, so a replay answers `exists`. A hash, not a
 * cheaper keyed permutation: the inputs are public, so only a preimage-resistant function keeps
 * a tenant from choosing a signal id that lands on another tenant's transfer id.
 */
export function transferIdFor(tenantId: string, signalId: string): bigint {
  const at = TRANSFER_ID_DOMAIN.length;
  if (!isCanonicalUuid(tenantId) || !isCanonicalUuid(signalId)) {
    throw new ConfigError(`transferIdFor: ${JSON.stringify(tenantId)} and ${JSON.stringify(signalId)} must be canonical UUIDs`);
  }
  transferIdInput.write(tenantId.replace(/-/g, ''), at, 'hex');
  transferIdInput.write(signalId.replace(/-/g, ''), at + 16, 'hex');
  for (let counter = 0; ; counter += 1) {
    transferIdInput[at + 32] = counter;
    const digest = hash('sha256', counter === 0 ? transferIdInputNoCounter : transferIdInput, 'hex');
    const id = BigInt(`0x${digest.slice(0, 32)}`);
    if (id !== 0n && id !== U128_MAX) return id;
  }
}

/**
 * Account id = the first 16 bytes (big-endian) of
 * SHA-256("spanledger/tigerbeetle/account/v1" NUL tenantId NUL role [NUL counter]),
 * where the counter is only appended (1, 2, …) in the astronomically unlikely case that the
 * value is 0 or 2^128-1, which TigerBeetle forbids as ids.
 */
export function accountIdFor(tenantId: string, role: AccountRole): bigint {
  for (let counter = 0; ; counter += 1) {
    const hash = createHash('sha256');
    hash.update(`spanledger/tigerbeetle/account/v1\0${tenantId}\0${role}`);
    if (counter > 0) hash.update(`\0${counter}`);
    const id = BigInt(`0x${hash.digest('hex').slice(0, 32)}`);
    if (id !== 0n && id !== U128_MAX) return id;
  }
}

/** Transfer user_data_32 = the first 4 bytes (big-endian) of SHA-256(ruleId): a rule tag. */
export function ruleTag(ruleId: string): number {
  let tag = ruleTags.get(ruleId);
  if (tag === undefined) {
    tag = createHash('sha256').update(ruleId).digest().readUInt32BE(0);
    if (ruleTags.size >= 10_000) ruleTags.clear(); // rule ids are few; bound the cache anyway
    ruleTags.set(ruleId, tag);
  }
  return tag;
}
const ruleTags = new Map<string, number>();

/**
 * Transfer user_data_64 = signal time in whole milliseconds since the Unix epoch (UTC), read by
 * the same strict parser as the decoder's, so the ledger and DuckDB hold the same instant.
 */
export function signalTimeMs(timestamp: string): bigint | null {
  const time = parseSignalTime(timestamp);
  return time.ok ? BigInt(time.epochMs) : null;
}

export function tenantAccount(tenantId: string, role: AccountRole, ledger: number): Account {
  return {
    id: accountIdFor(tenantId, role),
    debits_pending: 0n,
    debits_posted: 0n,
    credits_pending: 0n,
    credits_posted: 0n,
    user_data_128: uuidToU128(tenantId),
    user_data_64: 0n,
    user_data_32: 0,
    reserved: 0,
    ledger,
    code: ACCOUNT_CODES[role],
    // No debits_must_not_exceed_credits / credits_must_not_exceed_debits: balances never fail.
    flags: AccountFlags.none,
    timestamp: 0n,
  };
}

/** The transfer for one signal, or why the signal cannot become one. */
export function signalToTransfer(
  signal: Signal,
  tenantId: string,
  ledger: number,
  accounts: { debit: bigint; credit: bigint } = {
    debit: accountIdFor(tenantId, 'tenant'),
    credit: accountIdFor(tenantId, 'signals'),
  },
): Transfer | RecordRejectedError {
  if (signal.tenantId !== tenantId) {
    return new RecordRejectedError(
      'TenantMismatch',
      `signal ${signal.id} has tenantId ${signal.tenantId} but was written for tenant ${tenantId}`,
    );
  }
  if (!isCanonicalUuid(signal.id)) {
    return new RecordRejectedError('SchemaViolation', `signal id ${JSON.stringify(signal.id)} is not a canonical UUID`);
  }
  if (!/^[0-9a-f]{32}$/.test(signal.traceId)) {
    return new RecordRejectedError('SchemaViolation', `signal ${signal.id}: traceId is not 32 lower-case hex characters`);
  }
  const code = (SEVERITY_CODES as Record<string, number | undefined>)[signal.severity];
  if (code === undefined) {
    return new RecordRejectedError(
      'SchemaViolation',
      `signal ${signal.id}: severity ${JSON.stringify(signal.severity)} is not one of ${SEVERITIES.join(', ')}`,
    );
  }
  const time = signalTime(signal);
  const timeMs = time.ok ? BigInt(time.epochMs) : null;
  if (timeMs === null) {
    return new RecordRejectedError(
      'InvalidTimestamp',
      `signal ${signal.id}: timestamp ${JSON.stringify(signal.timestamp)} is not a valid time in 1970-01-01T00:00:00Z..9999-12-31T23:59:59.999Z`,
    );
  }
  return {
    id: transferIdFor(tenantId, signal.id),
    debit_account_id: accounts.debit,
    credit_account_id: accounts.credit,
    amount: 1n,
    pending_id: 0n,
    user_data_128: BigInt(`0x${signal.traceId}`),
    user_data_64: timeMs,
    user_data_32: ruleTag(signal.ruleId),
    timeout: 0,
    ledger,
    code,
    flags: TransferFlags.none,
    timestamp: 0n,
  };
}

export function createTransferStatusName(status: number): string {
  return (CreateTransferStatus as unknown as Record<number, string | undefined>)[status] ?? `unknown_status_${status}`;
}

export function createAccountStatusName(status: number): string {
  return (CreateAccountStatus as unknown as Record<number, string | undefined>)[status] ?? `unknown_status_${status}`;
}

// ---------------------------------------------------------------------------------------------

/** tigerbeetle-node's RequestError codes (matched by shape, so a stand-in's errors work too). */
function requestErrorCode(err: unknown): string | null {
  if (err instanceof Error && err.name === 'RequestError') {
    const code = (err as Error & { code?: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return null;
}

class TooMuchDataError extends Error {}

interface Metrics {
  requests: Counter<'op'>;
  duration: Histogram<'op'>;
  transfers: Counter<'result'>;
  requestErrors: Counter<'op' | 'reason'>;
  writesPerRequest: Histogram;
}

function counter<L extends string>(registry: Registry, name: string, help: string, labelNames: L[]): Counter<L> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Counter<L>;
  return new Counter({ name, help, labelNames, registers: [registry] });
}

function histogram<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: L[],
  buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
): Histogram<L> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Histogram<L>;
  return new Histogram({ name, help, labelNames, buckets, registers: [registry] });
}

// ---------------------------------------------------------------------------------------------
// Coalescing: one write's transfers in the shared queue.

interface TransferJob {
  tenantId: string;
  records: ReadonlyArray<{ value: Signal }>;
  transfers: Transfer[];
  /** recordIndexes[i] = index in `records` of transfers[i]. */
  recordIndexes: number[];
  /** The write's result, filled in as requests answer. */
  rejected: Map<number, RecordRejectedError>;
  /** First transfer not yet taken into a request. */
  next: number;
  /** Transfers not answered yet; the write resolves when this reaches 0. */
  unanswered: number;
  settled: boolean;
  resolve: () => void;
  reject: (err: Error) => void;
}

function settle(job: TransferJob, err?: Error): void {
  if (job.settled) return;
  job.settled = true;
  if (err) job.reject(err);
  else job.resolve();
}

export class TigerBeetleSignalSink implements TenantBatchSink<Signal> {
  readonly name = 'tigerbeetle';

  private readonly clusterId: bigint;
  private readonly addresses: string[];
  private readonly maxBatch: number;
  private readonly ledger: number;
  private readonly requestTimeoutMs: number;
  private readonly maxAbandonedRequests: number;
  private readonly clientFactory: TigerBeetleClientFactory;
  private readonly logger: Logger;
  private readonly metrics: Metrics;

  private client: TigerBeetleClient | null = null;
  /** Bumped whenever the client is replaced, so late settlements of old requests are ignored. */
  private generation = 0;
  private abandoned = 0;
  private closed = false;
  /** Lowered if the cluster says a batch is too large (a cluster started with a smaller limit). */
  private effectiveMaxBatch: number;
  /** Tenants whose two accounts are known to exist in this process. */
  private readonly knownTenants = new Set<string>();
  private readonly pendingTenants = new Map<string, Promise<void>>();
  /** Writes whose transfers are not all in a request yet, in arrival order (see pump()). */
  private readonly queue: TransferJob[] = [];
  private queuedTransfers = 0;
  /** The pump: scheduled for the next loop turn, or running (at most one create_transfers in flight). */
  private pumpScheduled: NodeJS.Immediate | null = null;
  private pumpRunning = false;

  constructor(config: TigerBeetleSinkConfig, context: SinkContext, options: TigerBeetleSinkOptions = {}) {
    const maxBatch = config.maxBatch ?? TIGERBEETLE_BATCH_MAX;
    const ledger = config.ledger ?? DEFAULT_LEDGER;
    const requestTimeoutMs = config.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    const maxAbandoned = config.maxAbandonedRequests ?? DEFAULT_MAX_ABANDONED_REQUESTS;
    if (typeof config.clusterId !== 'bigint' || config.clusterId < 0n || config.clusterId > U128_MAX) {
      throw new ConfigError('tigerbeetle.clusterId must be a bigint in 0..2^128-1');
    }
    if (!Array.isArray(config.addresses) || config.addresses.length === 0 || config.addresses.some((a) => !a)) {
      throw new ConfigError('tigerbeetle.addresses must list at least one replica address, e.g. 127.0.0.1:3000');
    }
    if (!Number.isInteger(maxBatch) || maxBatch < 1 || maxBatch > TIGERBEETLE_BATCH_MAX) {
      throw new ConfigError(`tigerbeetle.maxBatch must be an integer in 1..${TIGERBEETLE_BATCH_MAX}, got ${maxBatch}`);
    }
    if (!Number.isInteger(ledger) || ledger < 1 || ledger > 0xffff_ffff) {
      throw new ConfigError(`tigerbeetle.ledger must be an integer in 1..2^32-1, got ${ledger}`);
    }
    if (!Number.isFinite(requestTimeoutMs) || requestTimeoutMs <= 0) {
      throw new ConfigError(`tigerbeetle.requestTimeoutMs must be a positive number, got ${requestTimeoutMs}`);
    }
    if (!Number.isInteger(maxAbandoned) || maxAbandoned < 1) {
      throw new ConfigError(`tigerbeetle.maxAbandonedRequests must be a positive integer, got ${maxAbandoned}`);
    }
    this.clusterId = config.clusterId;
    this.addresses = [...config.addresses];
    this.maxBatch = maxBatch;
    this.effectiveMaxBatch = maxBatch;
    this.ledger = ledger;
    this.requestTimeoutMs = requestTimeoutMs;
    this.maxAbandonedRequests = maxAbandoned;
    this.clientFactory = options.clientFactory ?? createClient;
    this.logger = context.logger.child({ sink: this.name });
    const registry = context.registry;
    this.metrics = {
      requests: counter(registry, 'spanledger_tigerbeetle_requests_total', 'TigerBeetle requests issued by the sink', ['op']),
      duration: histogram(
        registry,
        'spanledger_tigerbeetle_request_duration_seconds',
        'Time from issuing a TigerBeetle request to its answer, error or timeout',
        ['op'],
      ),
      transfers: counter(
        registry,
        'spanledger_tigerbeetle_transfers_total',
        'Signal transfers by result: ok (created), exists (replay, counts as success), rejected',
        ['result'],
      ),
      requestErrors: counter(
        registry,
        'spanledger_tigerbeetle_request_errors_total',
        'TigerBeetle requests that failed as a whole, by reason',
        ['op', 'reason'],
      ),
      writesPerRequest: histogram(
        registry,
        'spanledger_tigerbeetle_writes_per_request',
        'Sink writes (one tenant of one flush each) whose transfers share one create_transfers request',
        [],
        [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000],
      ),
    };
  }

  /** Makes the client. The client connects lazily, so this does not wait for the cluster. */
  async start(): Promise<void> {
    if (this.closed) throw new Error('TigerBeetleSignalSink: start() after close()');
    if (this.client === null) this.client = this.makeClient();
  }

  async write(
    tenantId: string,
    records: ReadonlyArray<{ value: Signal; source: SourcePosition }>,
  ): Promise<BatchWriteResult> {
    const rejected = new Map<number, RecordRejectedError>();
    if (records.length === 0) return { rejected };
    if (!isCanonicalUuid(tenantId)) {
      // Tenant ids are validated before any sink sees them: this is a caller bug.
      throw new InvariantError(`TigerBeetleSignalSink.write: tenant id ${JSON.stringify(tenantId)} is not a canonical UUID`);
    }

    const transfers: Transfer[] = [];
    const recordIndexes: number[] = [];
    const accounts = { debit: accountIdFor(tenantId, 'tenant'), credit: accountIdFor(tenantId, 'signals') };
    records.forEach((record, index) => {
      const transfer = signalToTransfer(record.value, tenantId, this.ledger, accounts);
      if (transfer instanceof RecordRejectedError) {
        rejected.set(index, transfer);
      } else {
        transfers.push(transfer);
        recordIndexes.push(index);
      }
    });
    if (rejected.size > 0) this.metrics.transfers.inc({ result: 'rejected' }, rejected.size);
    if (transfers.length === 0) return { rejected };

    await this.ensureAccounts(tenantId);
    if (this.closed) throw new RetriableError('TigerBeetle sink is closed');

    // Into the shared queue: the write's transfers go out together with every other write queued
    // in the same event-loop turn (or behind the request in flight), see pump().
    await new Promise<void>((resolve, reject) => {
      const job: TransferJob = {
        tenantId,
        records,
        transfers,
        recordIndexes,
        rejected,
        next: 0,
        unanswered: transfers.length,
        settled: false,
        resolve,
        reject,
      };
      this.queue.push(job);
      this.queuedTransfers += transfers.length;
      this.schedulePump();
    });
    return { rejected };
  }

  /** Debits/credits posted (and pending) on both accounts of a tenant, for `signals stats`. */
  async lookupTenantBalances(tenantId: string): Promise<TenantBalances> {
    if (!isCanonicalUuid(tenantId)) throw new ConfigError(`tenant id ${JSON.stringify(tenantId)} is not a canonical UUID`);
    const tenantId128 = accountIdFor(tenantId, 'tenant');
    const signalsId128 = accountIdFor(tenantId, 'signals');
    const accounts = await this.request('lookup_accounts', (client) => client.lookupAccounts([tenantId128, signalsId128]));
    const view = (id: bigint): AccountBalances | null => {
      const account = accounts.find((a) => a.id === id);
      return account
        ? {
            id,
            debitsPosted: account.debits_posted,
            creditsPosted: account.credits_posted,
            debitsPending: account.debits_pending,
            creditsPending: account.credits_pending,
          }
        : null;
    };
    return { tenantId, ledger: this.ledger, tenant: view(tenantId128), signals: view(signalsId128) };
  }

  async close(): Promise<void> {
    this.closed = true;
    const closed = new RetriableError('TigerBeetle sink is closed');
    for (const job of this.queue.splice(0)) settle(job, closed);
    this.queuedTransfers = 0;
    if (this.pumpScheduled) clearImmediate(this.pumpScheduled);
    this.pumpScheduled = null;
    const client = this.client;
    this.client = null;
    this.generation += 1;
    client?.destroy();
  }

  // -------------------------------------------------------------------------------------------

  private makeClient(): TigerBeetleClient {
    return this.clientFactory({ cluster_id: this.clusterId, replica_addresses: [...this.addresses] });
  }

  private replaceClient(reason: string): void {
    const old = this.client;
    this.generation += 1;
    this.abandoned = 0;
    this.client = this.closed ? null : this.makeClient();
    this.logger.warn({ reason }, 'replacing the TigerBeetle client');
    try {
      old?.destroy();
    } catch (err) {
      this.logger.warn({ err }, 'destroying the old TigerBeetle client failed');
    }
  }

  /** Creates the tenant's two accounts once per process (concurrent callers share one request). */
  private async ensureAccounts(tenantId: string): Promise<void> {
    if (this.knownTenants.has(tenantId)) return;
    let pending = this.pendingTenants.get(tenantId);
    if (!pending) {
      pending = this.createAccounts(tenantId).finally(() => this.pendingTenants.delete(tenantId));
      this.pendingTenants.set(tenantId, pending);
    }
    await pending;
  }

  private async createAccounts(tenantId: string): Promise<void> {
    const accounts = [tenantAccount(tenantId, 'tenant', this.ledger), tenantAccount(tenantId, 'signals', this.ledger)];
    const results = await this.request('create_accounts', (client) => client.createAccounts(accounts));
    if (results.length !== accounts.length) {
      throw new RetriableError(
        `TigerBeetle create_accounts answered ${results.length} results for ${accounts.length} accounts (client/server mismatch?)`,
      );
    }
    const roles: AccountRole[] = ['tenant', 'signals'];
    results.forEach((result, i) => {
      if (result.status === CreateAccountStatus.created || result.status === CreateAccountStatus.exists) return;
      const name = createAccountStatusName(result.status);
      const account = accounts[i]!;
      const hint = name.startsWith('exists_with_different_')
        ? ' — the account exists with other settings: the ledger or the account layout this process uses differs from the one it was created with (check tigerbeetle.ledger)'
        : '';
      throw new ConfigError(
        `TigerBeetle refused the ${roles[i]} account ${account.id} of tenant ${tenantId} (ledger ${account.ledger}, code ${account.code}): ${name}${hint}`,
      );
    });
    this.knownTenants.add(tenantId);
    this.logger.debug({ tenantId }, 'TigerBeetle accounts ready');
  }

  /**
   * Starts a pump on the next turn of the event loop (setImmediate), or at once if the queue
   * already holds a full request and none is in flight. Every write queued before then — all
   * tenants of a flush, whose writes the pipeline starts together, and flushes of other
   * partitions that reach this sink in the same turn — goes out in the same request.
   * setImmediate rather than a microtask: it also takes the writes whose `await ensureAccounts`
   * (or whose flush's earlier stage) settles in the same turn; rather than a timer: no added
   * latency when the load is low (one loop turn, microseconds).
   */
  private schedulePump(): void {
    if (this.pumpRunning) return; // the running pump takes the queue when its request answers
    if (this.queuedTransfers >= this.effectiveMaxBatch) {
      if (this.pumpScheduled) clearImmediate(this.pumpScheduled);
      this.pumpScheduled = null;
      void this.pump();
    } else if (!this.pumpScheduled) {
      this.pumpScheduled = setImmediate(() => {
        this.pumpScheduled = null;
        void this.pump();
      });
    }
  }

  /**
   * Sends the queue in requests of at most effectiveMaxBatch transfers, one request at a time,
   * until the queue is empty. While a request is in flight, new writes queue behind it and go out
   * together when it answers (group commit): under load requests fill up to maxBatch, and a
   * write waits at most for the request ahead of it (itself bounded by requestTimeoutMs). One at a
   * time also keeps the order: a tenant's transfers reach the cluster in the order they were
   * written, and a write larger than maxBatch goes out in order, as before.
   */
  private async pump(): Promise<void> {
    this.pumpRunning = true;
    try {
      while (this.queuedTransfers > 0 && !this.closed) {
        const batch = this.takeBatch(this.effectiveMaxBatch);
        if (batch.transfers.length > 0) await this.sendBatch(batch);
      }
    } catch (err) {
      // sendBatch settles its writes itself; this is a bug. Fail what is queued rather than hang.
      this.logger.error({ err }, 'TigerBeetle sink: sending queued transfers failed');
      const error = err instanceof Error ? err : new Error(String(err));
      for (const job of this.queue.splice(0)) settle(job, error);
      this.queuedTransfers = 0;
    } finally {
      this.pumpRunning = false;
    }
  }

  /** Up to `max` transfers from the head of the queue; writes that already failed are dropped. */
  private takeBatch(max: number): { transfers: Transfer[]; owners: TransferJob[]; positions: number[] } {
    const transfers: Transfer[] = [];
    const owners: TransferJob[] = [];
    const positions: number[] = [];
    while (this.queue.length > 0 && transfers.length < max) {
      const job = this.queue[0]!;
      const left = job.transfers.length - job.next;
      if (job.settled) {
        // An earlier part of this write failed: the caller retries the whole write.
        this.queue.shift();
        this.queuedTransfers -= left;
        continue;
      }
      const n = Math.min(max - transfers.length, left);
      for (let i = job.next; i < job.next + n; i += 1) {
        transfers.push(job.transfers[i]!);
        owners.push(job);
        positions.push(job.recordIndexes[i]!);
      }
      job.next += n;
      this.queuedTransfers -= n;
      if (job.next === job.transfers.length) this.queue.shift();
    }
    return { transfers, owners, positions };
  }

  /**
   * One batch (several writes' transfers), split further only if the cluster refuses its size.
   * Never throws: each result goes to its write; a failed request rejects every write with a
   * transfer in it or after it in this batch (each caller retries its own write).
   */
  private async sendBatch(batch: { transfers: Transfer[]; owners: TransferJob[]; positions: number[] }): Promise<void> {
    const { transfers, owners, positions } = batch;
    const failFrom = (from: number, err: Error): void => {
      for (let i = from; i < owners.length; i += 1) settle(owners[i]!, err);
    };
    this.metrics.writesPerRequest.observe(new Set(owners).size);
    let offset = 0;
    while (offset < transfers.length) {
      const size = Math.min(this.effectiveMaxBatch, transfers.length - offset);
      const chunk = size === transfers.length ? transfers : transfers.slice(offset, offset + size);
      let results: CreateTransferResult[];
      try {
        results = await this.request('create_transfers', (client) => client.createTransfers(chunk));
      } catch (err) {
        if (err instanceof TooMuchDataError && size > 1) {
          this.effectiveMaxBatch = Math.max(1, Math.floor(size / 2));
          this.logger.warn(
            { maxBatch: this.maxBatch, tried: size, next: this.effectiveMaxBatch },
            'TigerBeetle cluster refused a batch as too large (is it started with a smaller request limit, e.g. --development?): halving the batch size; set maxBatch to the cluster limit',
          );
          continue;
        }
        failFrom(
          offset,
          err instanceof TooMuchDataError
            ? new FatalStoreError('tigerbeetle', 'the cluster refuses even a single transfer per request (ERR_TOO_MUCH_DATA)')
            : err instanceof Error
              ? err
              : new Error(String(err)),
        );
        return;
      }
      if (results.length !== chunk.length) {
        failFrom(
          offset,
          new RetriableError(
            `TigerBeetle create_transfers answered ${results.length} results for ${chunk.length} transfers (client/server mismatch?)`,
          ),
        );
        return;
      }
      let ok = 0;
      let exists = 0;
      let bad = 0;
      let lostTenants: Set<string> | undefined;
      for (let i = 0; i < chunk.length; i += 1) {
        const job = owners[offset + i]!;
        const status = results[i]!.status;
        if (status === CreateTransferStatus.created) {
          ok += 1;
        } else if (status === CreateTransferStatus.exists) {
          exists += 1;
        } else {
          bad += 1;
          const recordIndex = positions[offset + i]!;
          const signal = job.records[recordIndex]!.value;
          const name = createTransferStatusName(status);
          if (
            status === CreateTransferStatus.debit_account_not_found ||
            status === CreateTransferStatus.credit_account_not_found
          ) {
            (lostTenants ??= new Set()).add(job.tenantId);
          }
          job.rejected.set(
            recordIndex,
            new RecordRejectedError(
              name,
              `TigerBeetle rejected the transfer for signal ${signal.id} (transfer id ${chunk[i]!.id}): ${name}` +
                (name.startsWith('exists_with_different_')
                  ? ' (a signal with this id was stored before with different content)'
                  : ''),
            ),
          );
        }
        job.unanswered -= 1;
        if (job.unanswered === 0) settle(job);
      }
      if (ok > 0) this.metrics.transfers.inc({ result: 'ok' }, ok);
      if (exists > 0) this.metrics.transfers.inc({ result: 'exists' }, exists);
      if (bad > 0) this.metrics.transfers.inc({ result: 'rejected' }, bad);
      for (const tenantId of lostTenants ?? []) {
        // The accounts were created by this process, so the cluster lost them (re-formatted?).
        // Forget them so the next batch creates them again; these transfers' ids are now
        // burnt in TigerBeetle (id_already_failed), so they stay rejected.
        this.knownTenants.delete(tenantId);
        this.logger.error({ tenantId }, 'TigerBeetle does not know this tenant\'s accounts although they were created earlier: was the cluster re-formatted?');
      }
      offset += size;
    }
  }

  /**
   * One request with a timeout. tigerbeetle-node retries connection problems forever inside the
   * client, so without this a request to an unreachable cluster would never settle.
   */
  private async request<T>(op: Op, call: (client: TigerBeetleClient) => Promise<T>): Promise<T> {
    if (this.closed) throw new RetriableError('TigerBeetle sink is closed');
    if (this.client === null) this.client = this.makeClient();
    const client = this.client;
    const generation = this.generation;
    this.metrics.requests.inc({ op });
    const endTimer = this.metrics.duration.startTimer({ op });

    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    const requestPromise = Promise.resolve().then(() => call(client));
    const timeoutPromise = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        timedOut = true;
        reject(new RetriableError(`TigerBeetle ${op} did not answer within ${this.requestTimeoutMs} ms (cluster unreachable or overloaded?)`));
      }, this.requestTimeoutMs);
    });
    try {
      return await Promise.race([requestPromise, timeoutPromise]);
    } catch (err) {
      if (timedOut) {
        this.metrics.requestErrors.inc({ op, reason: 'timeout' });
        this.abandon(requestPromise, generation);
        throw err;
      }
      throw this.mapRequestError(op, err, generation);
    } finally {
      clearTimeout(timer);
      endTimer();
    }
  }

  /**
   * A timed-out request stays queued in the client and is sent once the cluster answers again;
   * its result is dropped (the batch is retried, and a retry is idempotent). If too many pile up,
   * the client is replaced, which fails the queued requests with ERR_CLIENT_CLOSED.
   */
  private abandon(request: Promise<unknown>, generation: number): void {
    this.abandoned += 1;
    request.then(
      () => undefined,
      () => undefined,
    ).finally(() => {
      if (generation === this.generation && this.abandoned > 0) this.abandoned -= 1;
    });
    if (generation === this.generation && this.abandoned >= this.maxAbandonedRequests) {
      this.replaceClient(`${this.abandoned} timed-out requests still pending`);
    }
  }

  private mapRequestError(op: Op, err: unknown, generation: number): Error {
    const code = requestErrorCode(err);
    if (code === null) {
      // Not the client's own error type: a bug (e.g. a malformed event), retrying cannot help.
      this.metrics.requestErrors.inc({ op, reason: 'unexpected' });
      return new FatalStoreError('tigerbeetle', `${op} failed with an error that is not the client's own: ${err instanceof Error ? err.message : String(err)}`, err);
    }
    this.metrics.requestErrors.inc({ op, reason: code });
    switch (code) {
      case 'ERR_TOO_MUCH_DATA':
        return new TooMuchDataError(code);
      case 'ERR_CLIENT_RELEASE_TOO_LOW':
      case 'ERR_CLIENT_RELEASE_TOO_HIGH':
        return new ConfigError(
          `TigerBeetle cluster evicted the client (${code}): the tigerbeetle-node version does not match the cluster's release; install the tigerbeetle-node version equal to the server's`,
        );
      case 'ERR_CLIENT_EVICTED':
        // Replace the client once, not once per request that was in flight when it was evicted.
        if (!this.closed && generation === this.generation) this.replaceClient('client evicted by the cluster');
        return new RetriableError(`TigerBeetle ${op} failed: client evicted by the cluster (it will reconnect)`, err);
      case 'ERR_CLIENT_CLOSED':
      default:
        return new RetriableError(`TigerBeetle ${op} failed: ${code}`, err);
    }
  }
}
