/**
 * TigerBeetle sink for signals: one transfer of amount 1 per signal, from the tenant's account
 * (debited) to the tenant's signals account (credited). The README beside this file documents the
 * id derivations, the ledger/code/user_data mapping and the failure handling. Here: the sink's
 * configuration, a write of one flush (signals → transfers, accounts on first sight, the
 * transfers to the pump) and the balance look-up; derivation.ts holds the pure mapping,
 * transport.ts the client and the request pump, classify.ts what every answer means.
 */
import { createClient, type Transfer } from 'tigerbeetle-node';
import { InvariantError, RecordRejectedError } from '../../errors.js';
import type { Signal } from '../../model/signal.js';
import { isCanonicalUuid } from '../../model/tenant.js';
import type { FlushItem, FlushSink, SinkContext, SinkFlush, SinkWriteResult } from '../types.js';
import { classifyAccountResult, resultCountMismatch, sinkClosed } from './classify.js';
import { U128_MAX, accountIdFor, signalToTransfer, tenantAccount, type AccountRole } from './derivation.js';
import { tigerBeetleMetrics, type TigerBeetleMetrics } from './metrics.js';
import { singleFlight } from '../single-flight.js';
import { ClientSession, DEFAULT_MAX_ABANDONED_REQUESTS, TransferPump, type TigerBeetleClientFactory } from './transport.js';

export type { TigerBeetleClient, TigerBeetleClientFactory } from './transport.js';

/** The most transfers one request can carry with the default 1 MiB message size (8189 × 128 B). */
export const TIGERBEETLE_BATCH_MAX = 8189;

/** Defaults of maxBatch, ledger and requestTimeoutMs are in the settings table (TB_* in src/config/settings.ts). */
export interface TigerBeetleSinkConfig {
  clusterId: bigint;
  /** Replica addresses, e.g. ['127.0.0.1:3000'] (all replicas of the cluster, in order). */
  addresses: string[];
  /** Transfers per createTransfers call, 1..8189 (the cluster maximum). */
  maxBatch: number;
  /** Ledger of both tenant accounts and of every transfer. */
  ledger: number;
  /** A request that has not answered by then fails with a RetriableError. */
  requestTimeoutMs: number;
  /**
   * After this many timed-out requests are still pending in one client, the client is destroyed
   * and a new one made (default 8). See the README: normally a timed-out request is left alone.
   */
  maxAbandonedRequests?: number;
}

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

/**
 * The settings table validates what users configure (TB_*); this asserts the same bounds for code
 * that builds the config itself (tests, benches): a config outside them is the caller's bug.
 */
function checkConfig(config: TigerBeetleSinkConfig, maxAbandoned: number): void {
  const { clusterId, addresses, maxBatch, ledger, requestTimeoutMs } = config;
  if (typeof clusterId !== 'bigint' || clusterId < 0n || clusterId > U128_MAX) {
    throw new InvariantError('tigerbeetle.clusterId must be a bigint in 0..2^128-1');
  }
  if (!Array.isArray(addresses) || addresses.length === 0 || addresses.some((a) => !a)) {
    throw new InvariantError('tigerbeetle.addresses must list at least one replica address, e.g. 127.0.0.1:3000');
  }
  if (!Number.isInteger(maxBatch) || maxBatch < 1 || maxBatch > TIGERBEETLE_BATCH_MAX) {
    throw new InvariantError(`tigerbeetle.maxBatch must be an integer in 1..${TIGERBEETLE_BATCH_MAX}, got ${maxBatch}`);
  }
  if (!Number.isInteger(ledger) || ledger < 1 || ledger > 0xffff_ffff) {
    throw new InvariantError(`tigerbeetle.ledger must be an integer in 1..2^32-1, got ${ledger}`);
  }
  if (!Number.isFinite(requestTimeoutMs) || requestTimeoutMs <= 0) {
    throw new InvariantError(`tigerbeetle.requestTimeoutMs must be a positive number, got ${requestTimeoutMs}`);
  }
  if (!Number.isInteger(maxAbandoned) || maxAbandoned < 1) {
    throw new InvariantError(`tigerbeetle.maxAbandonedRequests must be a positive integer, got ${maxAbandoned}`);
  }
}

const ROLES: readonly AccountRole[] = ['tenant', 'signals'];

export class TigerBeetleSignalSink implements FlushSink<Signal> {
  readonly name = 'tigerbeetle';

  private readonly ledger: number;
  private readonly metrics: TigerBeetleMetrics;
  private readonly logger: SinkContext['logger'];
  private readonly session: ClientSession;
  private readonly pump: TransferPump;
  private closed = false;
  /** Tenants whose two accounts are known to exist in this process. */
  private readonly knownTenants = new Set<string>();
  private readonly pendingTenants = new Map<string, Promise<void>>();

  constructor(config: TigerBeetleSinkConfig, context: SinkContext, options: TigerBeetleSinkOptions = {}) {
    const maxAbandonedRequests = config.maxAbandonedRequests ?? DEFAULT_MAX_ABANDONED_REQUESTS;
    checkConfig(config, maxAbandonedRequests);
    this.ledger = config.ledger;
    this.logger = context.logger.child({ sink: this.name });
    this.metrics = tigerBeetleMetrics(context.registry);
    const { logger, metrics } = this;
    this.session = new ClientSession({
      clusterId: config.clusterId,
      addresses: [...config.addresses],
      requestTimeoutMs: config.requestTimeoutMs,
      maxAbandonedRequests,
      clientFactory: options.clientFactory ?? createClient,
      logger,
      metrics,
    });
    this.pump = new TransferPump({
      maxBatch: config.maxBatch,
      session: this.session,
      logger,
      metrics,
      onAccountsLost: (tenantId) => this.knownTenants.delete(tenantId),
    });
  }

  /** Makes the client. The client connects lazily, so this does not wait for the cluster. */
  async start(): Promise<void> {
    this.session.start();
  }

  /**
   * One partition's flush: every tenant's transfers go to the pump as one write, in requests of
   * at most maxBatch shared with the flushes of other partitions written meanwhile (README.md).
   */
  async write(flush: SinkFlush<Signal>): Promise<SinkWriteResult<Signal>> {
    const rejected = new Map<FlushItem<Signal>, RecordRejectedError>();
    const transfers: Transfer[] = [];
    const items: FlushItem<Signal>[] = [];
    const newTenants: string[] = [];
    for (const [tenantId, group] of flush.tenants) {
      if (!isCanonicalUuid(tenantId)) {
        // Tenant ids are validated by the decoders before any sink sees them: a caller's bug.
        throw new InvariantError(`TigerBeetleSignalSink.write: tenant id ${JSON.stringify(tenantId)} is not a canonical UUID`);
      }
      const accounts = { debit: accountIdFor(tenantId, 'tenant'), credit: accountIdFor(tenantId, 'signals') };
      const before = transfers.length;
      for (const item of group) {
        const transfer = signalToTransfer(item.value, tenantId, this.ledger, accounts);
        if (transfer instanceof RecordRejectedError) {
          rejected.set(item, transfer);
        } else {
          transfers.push(transfer);
          items.push(item);
        }
      }
      if (transfers.length > before && !this.knownTenants.has(tenantId)) newTenants.push(tenantId);
    }
    if (rejected.size > 0) this.metrics.transfers.inc({ result: 'rejected' }, rejected.size);
    if (transfers.length === 0) return { rejected };

    // Accounts always exist before their transfers are sent.
    if (newTenants.length > 0) await Promise.all(newTenants.map((tenantId) => this.ensureAccounts(tenantId)));
    if (this.closed) throw sinkClosed();
    await this.pump.send(transfers, items, rejected);
    return { rejected };
  }

  /** Debits/credits posted (and pending) on both accounts of a tenant, for `signals stats`. */
  async lookupTenantBalances(tenantId: string): Promise<TenantBalances> {
    if (!isCanonicalUuid(tenantId)) throw new InvariantError(`tenant id ${JSON.stringify(tenantId)} is not a canonical UUID`);
    const tenantId128 = accountIdFor(tenantId, 'tenant');
    const signalsId128 = accountIdFor(tenantId, 'signals');
    const accounts = await this.session.request('lookup_accounts', 2, (client) => client.lookupAccounts([tenantId128, signalsId128]));
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
    this.pump.close();
    this.session.close();
  }

  /** Creates the tenant's two accounts once per process (concurrent callers share one request). */
  private async ensureAccounts(tenantId: string): Promise<void> {
    if (this.knownTenants.has(tenantId)) return;
    await singleFlight(this.pendingTenants, tenantId, () => this.createAccounts(tenantId));
  }

  private async createAccounts(tenantId: string): Promise<void> {
    const accounts = ROLES.map((role) => tenantAccount(tenantId, role, this.ledger));
    const results = await this.session.request('create_accounts', accounts.length, (client) => client.createAccounts(accounts));
    if (results.length !== accounts.length) throw resultCountMismatch('create_accounts', results.length, accounts.length);
    results.forEach((result, i) => {
      const account = accounts[i]!;
      const error = classifyAccountResult(result.status, { tenantId, role: ROLES[i]!, id: account.id, ledger: account.ledger, code: account.code });
      if (error) throw error;
    });
    this.knownTenants.add(tenantId);
    this.logger.debug({ tenantId }, 'TigerBeetle accounts ready');
  }
}
