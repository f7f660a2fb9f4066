import fsp from 'node:fs/promises';
import path from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import { E_TIMEOUT, Mutex, withTimeout } from 'async-mutex';
import type { MutexInterface } from 'async-mutex';
import type { Logger } from 'pino';
import { InvariantError, LocalWaitError, RetriableError } from '../../errors.js';
import { isCanonicalUuid } from '../../model/tenant.js';
import { causeKind, duckDbError } from './classify.js';
import type { DuckDbSinkConfig } from './config.js';
import { HANDOVER_COOL_DOWN_MS, isWanted, openWhenFree, sleep } from './handover.js';
import { ReplaceableInstance } from './instance.js';
import type { DuckDbMetrics } from './metrics.js';
import { singleFlight } from '../single-flight.js';
import { attachedTableSql, dropLegacyPrimaryKey, schemaSql, sqlString, tenantAlias } from './sql.js';

/**
 * Database files open in this process. DuckDB's file lock is a POSIX record lock, which does not
 * stop the same process from opening a file twice (two instances writing one file corrupt it),
 * so two sinks of one process (each has its own instance) must not share a file: the second one
 * waits (retriable). Within one instance DuckDB itself refuses to attach a file twice.
 */
export const openFiles = new Set<string>();

/** A tenant database attached to the sink's instance. */
export interface OpenTenant {
  readonly tenantId: string;
  readonly file: string;
  /** Name the database is attached under in the sink's instance. */
  readonly alias: string;
  /** When this process took the file lock: the hold time counts from here. */
  readonly openedAt: number;
  /** One writer per tenant: writes, checkpoints and the detach take turns. */
  readonly mutex: Mutex;
  /** Callers inside withTenant (waiting for or holding the tenant's turn). Never evicted while > 0. */
  users: number;
  lastUsedAt: number;
  /** Written since its last checkpoint (attach counts as one): holds blocks DuckDB cannot evict. */
  dirty: boolean;
  lastWrittenAt: number;
  /** `topic:partition` pairs that wrote to this tenant, for releasePartition. */
  readonly sources: Set<string>;
  /**
   * No stored signal is later than this (epoch ms; -Infinity: none): read from the table when
   * attached, raised by every commit. This process is the file's only writer while it holds it,
   * so a write whose signals are all later cannot meet a stored id and skips the lookup: signals
   * arriving in time order (the usual case) pay nothing for idempotency. Too high only costs a
   * lookup; it is never too low.
   */
  latestStoredMs: number;
  closing?: Promise<void>;
}

type RegistryConfig = Pick<DuckDbSinkConfig, 'maxOpenTenants' | 'idleTimeoutMs' | 'acquireTimeoutMs' | 'maxHoldMs'>;

/**
 * The tenant databases of the sink's one instance: each tenant's file is ATTACHed under an alias
 * derived from its id when first used and DETACHed (DuckDB checkpoints it and releases the file
 * lock) when idle, evicted (maxOpenTenants), released, handed over to another process waiting
 * for it (maxHoldMs), after a store error, or at close. An instance DuckDB invalidated is
 * replaced (ReplaceableInstance) and every tenant forgotten. A tenant's callers take turns on its
 * mutex: one writer per file.
 */
export class TenantRegistry {
  readonly root: string;
  readonly instance: ReplaceableInstance;
  /** Least recently used first. */
  private readonly tenants = new Map<string, OpenTenant>();
  private readonly opening = new Map<string, Promise<OpenTenant>>();
  /** Tenants handed over to another process: not reopened before this time (ms). */
  private readonly coolDownUntil = new Map<string, number>();
  private readonly config: RegistryConfig;
  private dirReady: Promise<void> | undefined;
  private capacityWarned = false;
  closed = false;

  constructor(
    config: DuckDbSinkConfig,
    private readonly logger: Logger,
    private readonly metrics: DuckDbMetrics,
  ) {
    this.config = config;
    this.root = path.resolve(config.dir);
    this.instance = new ReplaceableInstance(config, this.root, () => this.ensureDir(), logger, metrics, () => this.forgetAll());
  }

  /** Path of a tenant's database file. Tenant ids are checked by the decoders: anything else is a caller's bug. */
  tenantFile(tenantId: string): string {
    if (!isCanonicalUuid(tenantId)) throw new InvariantError(`tenant id ${JSON.stringify(tenantId)} is not a canonical UUID`);
    const file = path.resolve(this.root, `${tenantId}.duckdb`);
    if (path.dirname(file) !== this.root) throw new InvariantError(`tenant id ${JSON.stringify(tenantId)} escapes ${this.root}`);
    return file;
  }

  /** The tenant if attached and not being closed, after any open in flight. */
  async attached(tenantId: string): Promise<OpenTenant | undefined> {
    const opening = this.opening.get(tenantId);
    if (opening) await opening.catch(() => undefined);
    const tenant = this.tenants.get(tenantId);
    if (tenant?.closing) await tenant.closing;
    return tenant && !tenant.closing ? tenant : undefined;
  }

  /** Open tenants not being closed, least recently used first. */
  openList(): OpenTenant[] {
    return [...this.tenants.values()].filter((t) => !t.closing);
  }

  /**
   * Runs fn in the tenant's turn (its mutex) with a connection of the shared pool, attaching the
   * tenant's database if needed. After a store error the tenant is detached (attached afresh next time).
   */
  async withTenant<R>(tenantId: string, sources: ReadonlySet<string>, fn: (conn: DuckDBConnection, tenant: OpenTenant) => Promise<R>): Promise<R> {
    for (;;) {
      if (this.closed) throw new RetriableError('the DuckDB sink is closed');
      const tenant = this.tenants.get(tenantId) ?? (await this.open(tenantId));
      if (tenant.closing) {
        await tenant.closing;
        continue;
      }
      // No await between the closing check and queueing for the mutex: a close (which takes the
      // mutex too) cannot detach the database before this caller's turn.
      tenant.users++;
      this.touch(tenant);
      for (const s of sources) tenant.sources.add(s);
      let reset: unknown;
      try {
        let release: MutexInterface.Releaser;
        try {
          release = await withTimeout(tenant.mutex, this.config.acquireTimeoutMs).acquire();
        } catch (err) {
          if (err === E_TIMEOUT) throw new LocalWaitError(`waited over ${this.config.acquireTimeoutMs} ms for tenant ${tenantId}'s turn to write DuckDB`);
          throw err;
        }
        // Dropped while this caller waited (its instance was invalidated): start over.
        if (this.tenants.get(tenantId) !== tenant) {
          release();
          continue;
        }
        try {
          return await this.instance.withConnection(`tenant ${tenantId}`, (conn) => fn(conn, tenant));
        } catch (err) {
          if (err instanceof RetriableError) reset = err;
          throw err;
        } finally {
          release();
        }
      } finally {
        tenant.users--;
        tenant.lastUsedAt = Date.now();
        // An invalidated instance (withConnection saw it) has dropped its tenants already.
        if (reset !== undefined && causeKind(reset) !== 'invalidated' && this.tenants.get(tenantId) === tenant) {
          await this.closeTenant(tenant, 'store error').catch(() => undefined);
        }
      }
    }
  }

  /** Close one tenant's database (waits for its in-flight write); releases the file lock. */
  async releaseTenant(tenantId: string): Promise<void> {
    this.tenantFile(tenantId);
    const opening = this.opening.get(tenantId);
    if (opening) await opening.catch(() => undefined);
    const tenant = this.tenants.get(tenantId);
    if (tenant) await this.closeTenant(tenant, 'released');
  }

  /** Close every tenant database that received records from this partition. */
  async releasePartition(topic: string, partition: number): Promise<void> {
    const key = `${topic}:${partition}`;
    await Promise.all(this.openList().filter((t) => t.sources.has(key)).map((t) => this.closeTenant(t, 'partition released')));
  }

  /** Detaches idle tenants, hands over wanted ones, evicts beyond maxOpenTenants (the sink's timer). */
  async sweep(): Promise<void> {
    const now = Date.now();
    const idle = this.openList().filter((t) => t.users === 0 && now - t.lastUsedAt >= this.config.idleTimeoutMs);
    await Promise.all(idle.map((t) => this.closeTenant(t, 'idle')));
    await Promise.all(this.openList().map((t) => this.handOverIfWanted(t)));
    await this.enforceCapacity();
  }

  /** Detaches everything (DuckDB checkpoints each file), then closes the instance. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.opening.values()]);
    await Promise.all([...this.tenants.values()].map((t) => this.closeTenant(t, 'sink closed')));
    await this.instance.close();
  }

  ensureDir(): Promise<void> {
    this.dirReady ??= fsp.mkdir(this.root, { recursive: true }).then(
      () => undefined,
      (err: unknown) => {
        this.dirReady = undefined;
        throw duckDbError(`cannot create ${this.root}`, err);
      },
    );
    return this.dirReady;
  }

  private open(tenantId: string): Promise<OpenTenant> {
    return singleFlight(this.opening, tenantId, () => this.openAfterCoolDown(tenantId));
  }

  private async openAfterCoolDown(tenantId: string): Promise<OpenTenant> {
    const coolDown = (this.coolDownUntil.get(tenantId) ?? 0) - Date.now();
    if (coolDown > 0) await sleep(coolDown);
    this.coolDownUntil.delete(tenantId);
    const file = this.tenantFile(tenantId);
    return openWhenFree(() => this.attach(tenantId, file), {
      tenantId,
      file,
      timeoutMs: this.config.acquireTimeoutMs,
      stopped: () => this.closed,
      logger: this.logger,
      metrics: this.metrics,
    });
  }

  /**
   * Closes a database held for maxHoldMs or longer if another process waits for it (after the
   * write in flight), and keeps it closed for a random cool-down so that process gets the lock.
   */
  private async handOverIfWanted(tenant: OpenTenant): Promise<void> {
    const heldMs = Date.now() - tenant.openedAt;
    if (tenant.closing || heldMs < this.config.maxHoldMs || !(await isWanted(tenant.file, tenant.openedAt))) return;
    if (tenant.closing) return;
    this.coolDownUntil.set(tenant.tenantId, Date.now() + HANDOVER_COOL_DOWN_MS * (1 + Math.random()));
    this.metrics.handovers.inc();
    this.logger.info({ tenantId: tenant.tenantId, heldMs }, 'another process waits for this tenant DuckDB database: handing it over');
    await this.closeTenant(tenant, 'handed over');
  }

  private async attach(tenantId: string, file: string): Promise<OpenTenant> {
    const alias = tenantAlias(tenantId);
    await this.ensureDir();
    if (openFiles.has(file)) throw new RetriableError(`${file} is already open in this process (another DuckDbSignalSink?)`);
    openFiles.add(file);
    let latestStoredMs = -Infinity;
    try {
      await this.instance.withConnection(`attaching ${file}`, async (conn) => {
        try {
          await conn.run(`ATTACH ${sqlString(file)} AS "${alias}"`);
        } catch (err) {
          // Still attached under its alias though this sink let it go: its DETACH failed (no
          // connection in time, or out of memory in the checkpoint DETACH makes). Adopt it: this
          // process is its only user (openFiles). Refusing it stopped the tenant for good.
          if (causeKind(err) === 'already_attached') this.logger.warn({ tenantId, file }, 'tenant DuckDB database was still attached after a failed detach; using it');
          // Another process holds the file: *IO Error: Could not set lock on file … Conflicting lock is held*.
          else throw duckDbError(`cannot open DuckDB database ${file}`, err);
        }
        try {
          await conn.run(schemaSql(alias));
          const [pk, latest] = (await conn.runAndReadAll(attachedTableSql(alias))).getRowsJS()[0]!;
          if (Number(pk) > 0) {
            const started = Date.now();
            const rows = await dropLegacyPrimaryKey(conn, alias);
            this.logger.info({ file, rows, ms: Date.now() - started }, 'rebuilt a tenant signals table without its primary key (made by an earlier spanledger)');
          }
          // Rounded down to the ms: a stored signal in the same ms as a new one gets looked for.
          if (latest !== null && latest !== undefined) latestStoredMs = Number(latest);
        } catch (err) {
          await conn.run(`DETACH DATABASE IF EXISTS "${alias}"`).catch(() => undefined);
          throw duckDbError(`cannot create the signals table in ${file}`, err);
        }
      });
    } catch (err) {
      openFiles.delete(file);
      throw err;
    }
    const now = Date.now();
    const tenant: OpenTenant = { tenantId, file, alias, openedAt: now, mutex: new Mutex(), users: 0, lastUsedAt: now, dirty: false, lastWrittenAt: 0, sources: new Set(), latestStoredMs };
    this.tenants.set(tenantId, tenant);
    this.metrics.openTenants.set(this.openList().length);
    this.logger.debug({ tenantId, file }, 'attached tenant DuckDB database');
    await this.enforceCapacity(tenant);
    return tenant;
  }

  /** Closes least-recently-used idle tenants while more than maxOpenTenants are open. */
  private async enforceCapacity(keep?: OpenTenant): Promise<void> {
    while (this.openList().length > this.config.maxOpenTenants) {
      const victim = this.openList().find((t) => t !== keep && t.users === 0);
      if (!victim) {
        if (!this.capacityWarned) {
          this.logger.warn({ open: this.openList().length, max: this.config.maxOpenTenants }, 'more tenant databases busy than maxOpenTenants; closing when idle');
          this.capacityWarned = true;
        }
        return;
      }
      await this.closeTenant(victim, 'evicted (maxOpenTenants)');
    }
    this.capacityWarned = false;
  }

  /**
   * Waits for the tenant's write in flight (its mutex), then detaches its database: DuckDB
   * checkpoints it and releases the file lock.
   */
  private closeTenant(tenant: OpenTenant, why: string): Promise<void> {
    if (!tenant.closing) {
      tenant.closing = (async () => {
        const release = await tenant.mutex.acquire();
        try {
          await this.instance.withConnection(`detaching ${tenant.file}`, (conn) => conn.run(`DETACH DATABASE IF EXISTS "${tenant.alias}"`));
        } catch (err) {
          this.logger.warn({ tenantId: tenant.tenantId, err }, 'detaching the tenant DuckDB database failed');
        } finally {
          release();
          openFiles.delete(tenant.file);
          if (this.tenants.get(tenant.tenantId) === tenant) this.tenants.delete(tenant.tenantId);
          this.metrics.openTenants.set(this.openList().length);
          this.logger.debug({ tenantId: tenant.tenantId, why }, 'detached tenant DuckDB database');
        }
      })();
    }
    return tenant.closing;
  }

  /** The instance was invalidated: its tenants are gone with it (their files' locks too, once it is closed). */
  private forgetAll(): void {
    for (const tenant of this.tenants.values()) {
      openFiles.delete(tenant.file);
      tenant.closing ??= Promise.resolve();
    }
    this.tenants.clear();
    this.metrics.openTenants.set(0);
  }

  private touch(tenant: OpenTenant): void {
    tenant.lastUsedAt = Date.now();
    this.tenants.delete(tenant.tenantId);
    this.tenants.set(tenant.tenantId, tenant);
  }
}
