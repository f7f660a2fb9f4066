/**
 * How the TigerBeetle sink talks to the cluster: a client session (requests with a timeout,
 * timed-out requests abandoned, the client replaced when needed) and the transfer pump that sends
 * the transfers of every write in shared create_transfers requests, one in flight at a time.
 * README.md beside this file ("One request for many writes", "Failure handling") says why.
 * What each answer means is decided in classify.ts.
 */
import type { Logger } from 'pino';
import type { Client, ClientInitArgs, Transfer } from 'tigerbeetle-node';
import { InvariantError, RetriableError, SpanledgerError, type RecordRejectedError } from '../../errors.js';
import type { Signal } from '../../model/signal.js';
import type { FlushItem } from '../types.js';
import { classifyRequestError, classifyTransferResult, requestTimedOut, resultCountMismatch, sinkClosed, type Op } from './classify.js';
import type { TigerBeetleMetrics } from './metrics.js';

/** The part of the tigerbeetle-node Client this sink uses: a test can hand in a stand-in. */
export type TigerBeetleClient = Pick<Client, 'createAccounts' | 'createTransfers' | 'lookupAccounts' | 'destroy'>;
export type TigerBeetleClientFactory = (args: ClientInitArgs) => TigerBeetleClient;

/** Timed-out requests still queued in one client before the session replaces that client. */
export const DEFAULT_MAX_ABANDONED_REQUESTS = 8;

export interface ClientSessionOptions {
  clusterId: bigint;
  addresses: string[];
  requestTimeoutMs: number;
  maxAbandonedRequests: number;
  clientFactory: TigerBeetleClientFactory;
  logger: Logger;
  metrics: TigerBeetleMetrics;
}

/** The cluster refused a create_transfers request as too large, but a smaller one may pass. */
export class RequestTooLargeError extends RetriableError {}

/** One tigerbeetle-node client at a time, replaced when it is evicted or too many requests hang in it. */
export class ClientSession {
  private client: TigerBeetleClient | null = null;
  /** Bumped whenever the client is replaced, so late settlements of old requests are ignored. */
  private generation = 0;
  private abandoned = 0;
  private closed = false;

  constructor(private readonly options: ClientSessionOptions) {}

  /** Makes the client. The client connects lazily, so this does not wait for the cluster. */
  start(): void {
    if (this.closed) throw new InvariantError('TigerBeetleSignalSink: start() after close()');
    if (this.client === null) this.client = this.makeClient();
  }

  /**
   * One request of `events` events with a timeout. tigerbeetle-node retries connection problems
   * forever inside the client, so without it a request to an unreachable cluster would never
   * settle. Rejects only with a classified error (classify.ts).
   */
  async request<T>(op: Op, events: number, call: (client: TigerBeetleClient) => Promise<T>): Promise<T> {
    if (this.closed) throw sinkClosed();
    if (this.client === null) this.client = this.makeClient();
    const { metrics, requestTimeoutMs } = this.options;
    const client = this.client;
    const generation = this.generation;
    metrics.requests.inc({ op });
    const endTimer = metrics.duration.startTimer({ op });

    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    const requestPromise = Promise.resolve().then(() => call(client));
    const timeoutPromise = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        timedOut = true;
        reject(requestTimedOut(op, requestTimeoutMs));
      }, requestTimeoutMs);
    });
    try {
      return await Promise.race([requestPromise, timeoutPromise]);
    } catch (err) {
      if (timedOut) {
        metrics.requestErrors.inc({ op, reason: 'timeout' });
        this.abandon(requestPromise, generation);
        throw err;
      }
      const failure = classifyRequestError(op, err, events);
      metrics.requestErrors.inc({ op, reason: failure.reason });
      if (failure.kind === 'split') throw new RequestTooLargeError(`TigerBeetle ${op} of ${events} events is too large for the cluster`, err);
      // Replace the client once, not once per request that was in flight when it was evicted.
      if (failure.replaceClient && !this.closed && generation === this.generation) this.replaceClient('client evicted by the cluster');
      throw failure.error;
    } finally {
      clearTimeout(timer);
      endTimer();
    }
  }

  close(): void {
    this.closed = true;
    const client = this.client;
    this.client = null;
    this.generation += 1;
    client?.destroy();
  }

  private makeClient(): TigerBeetleClient {
    const { clientFactory, clusterId, addresses } = this.options;
    return clientFactory({ cluster_id: clusterId, replica_addresses: [...addresses] });
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
    if (generation === this.generation && this.abandoned >= this.options.maxAbandonedRequests) {
      this.replaceClient(`${this.abandoned} timed-out requests still pending`);
    }
  }

  private replaceClient(reason: string): void {
    const old = this.client;
    this.generation += 1;
    this.abandoned = 0;
    this.client = this.closed ? null : this.makeClient();
    this.options.logger.warn({ reason }, 'replacing the TigerBeetle client');
    try {
      old?.destroy();
    } catch (err) {
      this.options.logger.warn({ err }, 'destroying the old TigerBeetle client failed');
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The transfer pump: the transfers of every write, in shared create_transfers requests.

/** One write's transfers in the pump's queue. */
interface TransferJob {
  transfers: Transfer[];
  /** items[i] is the flush item transfers[i] was made from. */
  items: ReadonlyArray<FlushItem<Signal>>;
  /** The write's result, filled in as requests answer. */
  rejected: Map<FlushItem<Signal>, RecordRejectedError>;
  /** First transfer not yet taken into a request. */
  next: number;
  /** Transfers not answered yet; the write resolves when this reaches 0. */
  unanswered: number;
  settled: boolean;
  resolve: () => void;
  reject: (err: Error) => void;
}

interface Batch {
  transfers: Transfer[];
  owners: TransferJob[];
  /** indexes[i] = the index of transfers[i] in its owner's transfers (and items). */
  indexes: number[];
  /** How many writes (one tenant of one flush each) have transfers in the batch. */
  writes: number;
}

function settle(job: TransferJob, err?: Error): void {
  if (job.settled) return;
  job.settled = true;
  if (err) job.reject(err);
  else job.resolve();
}

export interface TransferPumpOptions {
  maxBatch: number;
  session: ClientSession;
  logger: Logger;
  metrics: TigerBeetleMetrics;
  /** A transfer found its tenant's accounts gone although they were created: forget the tenant. */
  onAccountsLost: (tenantId: string) => void;
}

export class TransferPump {
  /** Lowered if the cluster says a batch is too large (a cluster started with a smaller limit). */
  private effectiveMaxBatch: number;
  /** Writes whose transfers are not all in a request yet, in arrival order (see pump()). */
  private readonly queue: TransferJob[] = [];
  private queuedTransfers = 0;
  /** Scheduled for the next loop turn, or running (at most one create_transfers in flight). */
  private pumpScheduled: NodeJS.Immediate | null = null;
  private pumpRunning = false;
  private closed = false;

  constructor(private readonly options: TransferPumpOptions) {
    this.effectiveMaxBatch = options.maxBatch;
  }

  /**
   * Sends `transfers` (transfers[i] made from items[i]) and resolves once every one is answered,
   * with the refused ones in `rejected`; rejects with a classified error if a request they were
   * in failed as a whole (the caller retries the whole write: replayed transfers answer `exists`).
   */
  send(transfers: Transfer[], items: ReadonlyArray<FlushItem<Signal>>, rejected: Map<FlushItem<Signal>, RecordRejectedError>): Promise<void> {
    if (this.closed) return Promise.reject(sinkClosed());
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ transfers, items, rejected, next: 0, unanswered: transfers.length, settled: false, resolve, reject });
      this.queuedTransfers += transfers.length;
      this.schedulePump();
    });
  }

  /** Rejects the writes still queued as retriable; the request in flight settles its own writes. */
  close(): void {
    this.closed = true;
    const closed = sinkClosed();
    for (const job of this.queue.splice(0)) settle(job, closed);
    this.queuedTransfers = 0;
    if (this.pumpScheduled) clearImmediate(this.pumpScheduled);
    this.pumpScheduled = null;
  }

  /**
   * Starts a pump on the next turn of the event loop (setImmediate), or at once if the queue
   * already holds a full request and none is in flight. Every write queued before then — flushes
   * of other partitions that reach this sink in the same turn — goes out in the same request.
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
   * written, and a write larger than maxBatch goes out in order.
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
      this.options.logger.error({ err }, 'TigerBeetle sink: sending queued transfers failed');
      const error = err instanceof SpanledgerError ? err : new InvariantError('TigerBeetle sink: sending queued transfers failed', err);
      for (const job of this.queue.splice(0)) settle(job, error);
      this.queuedTransfers = 0;
    } finally {
      this.pumpRunning = false;
    }
  }

  /** Up to `max` transfers from the head of the queue; writes that already failed are dropped. */
  private takeBatch(max: number): Batch {
    const transfers: Transfer[] = [];
    const owners: TransferJob[] = [];
    const indexes: number[] = [];
    let writes = 0;
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
      let tenant: string | undefined;
      for (let i = job.next; i < job.next + n; i += 1) {
        transfers.push(job.transfers[i]!);
        owners.push(job);
        indexes.push(i);
        // A write's transfers are grouped by tenant: each run of one tenant is one (tenant, flush) write.
        const tenantId = job.items[i]!.value.tenantId;
        if (tenantId !== tenant) {
          tenant = tenantId;
          writes += 1;
        }
      }
      job.next += n;
      this.queuedTransfers -= n;
      if (job.next === job.transfers.length) this.queue.shift();
    }
    return { transfers, owners, indexes, writes };
  }

  /**
   * One batch (several writes' transfers), split further only if the cluster refuses its size.
   * Never throws: each result goes to its write; a failed request rejects every write with a
   * transfer in it or after it in this batch (each caller retries its own write).
   */
  private async sendBatch(batch: Batch): Promise<void> {
    const { transfers, owners } = batch;
    const { session, metrics, logger } = this.options;
    const failFrom = (from: number, err: Error): void => {
      for (let i = from; i < owners.length; i += 1) settle(owners[i]!, err);
    };
    metrics.writesPerRequest.observe(batch.writes);
    let offset = 0;
    while (offset < transfers.length) {
      const size = Math.min(this.effectiveMaxBatch, transfers.length - offset);
      const chunk = size === transfers.length ? transfers : transfers.slice(offset, offset + size);
      let results: Awaited<ReturnType<TigerBeetleClient['createTransfers']>>;
      try {
        results = await session.request('create_transfers', chunk.length, (client) => client.createTransfers(chunk));
      } catch (err) {
        if (err instanceof RequestTooLargeError) {
          this.effectiveMaxBatch = Math.max(1, Math.floor(size / 2));
          logger.warn(
            { maxBatch: this.options.maxBatch, tried: size, next: this.effectiveMaxBatch },
            'TigerBeetle cluster refused a batch as too large (is it started with a smaller request limit, e.g. --development?): halving the batch size; set maxBatch to the cluster limit',
          );
          continue;
        }
        failFrom(offset, err as Error);
        return;
      }
      if (results.length !== chunk.length) {
        failFrom(offset, resultCountMismatch('create_transfers', results.length, chunk.length));
        return;
      }
      this.answer(batch, offset, chunk, results);
      offset += size;
    }
  }

  /** Hands each result of one request (its transfers start at `offset` of the batch) to its write. */
  private answer(batch: Batch, offset: number, chunk: Transfer[], results: ReadonlyArray<{ status: number }>): void {
    let ok = 0;
    let exists = 0;
    let bad = 0;
    let lostTenants: Set<string> | undefined;
    for (let i = 0; i < chunk.length; i += 1) {
      const job = batch.owners[offset + i]!;
      const item = job.items[batch.indexes[offset + i]!]!;
      const outcome = classifyTransferResult(results[i]!.status, item.value.id, chunk[i]!.id);
      if (outcome.kind === 'ok') ok += 1;
      else if (outcome.kind === 'exists') exists += 1;
      else {
        bad += 1;
        job.rejected.set(item, outcome.error);
        if (outcome.accountsLost) (lostTenants ??= new Set()).add(item.value.tenantId);
      }
      job.unanswered -= 1;
      if (job.unanswered === 0) settle(job);
    }
    const { metrics, logger, onAccountsLost } = this.options;
    if (ok > 0) metrics.transfers.inc({ result: 'ok' }, ok);
    if (exists > 0) metrics.transfers.inc({ result: 'exists' }, exists);
    if (bad > 0) metrics.transfers.inc({ result: 'rejected' }, bad);
    for (const tenantId of lostTenants ?? []) {
      // The accounts were created by this process, so the cluster lost them (re-formatted?).
      // Forget them so the next batch creates them again; these transfers' ids are now
      // burnt in TigerBeetle (id_already_failed), so they stay rejected.
      onAccountsLost(tenantId);
      logger.error({ tenantId }, 'TigerBeetle does not know this tenant\'s accounts although they were created earlier: was the cluster re-formatted?');
    }
  }
}
