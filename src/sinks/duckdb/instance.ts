import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import type { DuckDBConnection } from '@duckdb/node-api';
import genericPool from 'generic-pool';
import type { Pool } from 'generic-pool';
import type { Logger } from 'pino';
import { LocalWaitError, RetriableError } from '../../errors.js';
import { causeKind, duckDbError, duckDbMessage } from './classify.js';
import type { DuckDbSinkConfig } from './config.js';
import type { DuckDbMetrics } from './metrics.js';
import { BLOCK_SIZE, STAGING_SQL } from './sql.js';

/** One DuckDB instance (an in-memory catalog; tenants are attached) and its connections. */
interface Database {
  readonly instance: DuckDBInstance;
  readonly pool: Pool<DuckDBConnection>;
  /** Where this instance spills (its own folder: a retired instance removes it when closed). */
  readonly tempDir: string;
  lastCreateError?: unknown;
  createErrors: number;
  /** Set when DuckDB invalidated the instance (a FATAL error): nothing can use it any more. */
  dead?: unknown;
  /** Rejects when the instance dies, so that waits for one of its connections end at once. */
  readonly died: Promise<never>;
  die(err: unknown): void;
}

type InstanceConfig = Pick<DuckDbSinkConfig, 'threads' | 'memoryLimit' | 'checkpointWalSize' | 'connections' | 'acquireTimeoutMs'>;

/**
 * The sink's one DuckDB instance (DuckDB's advice: one per process) and a pool of `connections`
 * connections to it, each with its staging table. Created on first use; replaced as a whole when
 * DuckDB invalidates it (a FATAL error, e.g. a rollback that ran out of memory).
 */
export class ReplaceableInstance {
  private db: Promise<Database> | undefined;
  /** Instances made so far: each later one spills into a folder of its own. */
  private generation = 0;

  constructor(
    private readonly config: InstanceConfig,
    private readonly root: string,
    private readonly ensureDir: () => Promise<void>,
    private readonly logger: Logger,
    private readonly metrics: DuckDbMetrics,
    /** DuckDB invalidated the instance: everything attached to it is gone (the registry forgets its tenants). */
    private readonly onInvalidated: () => void,
  ) {}

  /** Creates the instance now (start()) rather than at the first write. */
  async ready(): Promise<void> {
    await this.database();
  }

  /**
   * Runs fn with a connection of the shared pool. A connection whose fn failed is destroyed
   * instead of returned (its next user starts with a fresh one and a fresh staging table).
   */
  async withConnection<R>(what: string, fn: (conn: DuckDBConnection) => Promise<R>): Promise<R> {
    const db = await this.database();
    let conn: DuckDBConnection;
    try {
      if (db.dead !== undefined) throw db.dead;
      const acquiring = db.pool.acquire();
      // If the instance dies meanwhile, this wait ends now; the pool's request ends by itself.
      acquiring.then((c) => (db.dead === undefined ? undefined : db.pool.destroy(c)), () => undefined).catch(() => undefined);
      conn = await Promise.race([acquiring, db.died]);
    } catch (err) {
      // Connections that cannot be made are the store failing; a wait for a busy pool is not.
      if (db.dead !== undefined) throw new RetriableError(`no DuckDB connection for ${what}: the instance was invalidated: ${duckDbMessage(db.dead)}`, db.dead);
      if (db.lastCreateError !== undefined) throw duckDbError(`no DuckDB connection for ${what}`, db.lastCreateError);
      throw new LocalWaitError(`no DuckDB connection for ${what} within ${this.config.acquireTimeoutMs} ms (all ${this.config.connections} busy): ${duckDbMessage(err)}`, err);
    }
    let failed = false;
    try {
      return await fn(conn);
    } catch (err) {
      failed = true;
      if (causeKind(err) === 'invalidated') this.invalidate(db, err);
      throw err;
    } finally {
      if (failed) await db.pool.destroy(conn).catch(() => undefined);
      else await db.pool.release(conn);
    }
  }

  /** Closes the instance (every tenant is detached by then): its connections, then the instance. */
  async close(): Promise<void> {
    const db = this.db;
    this.db = undefined;
    if (db) await this.closeInstance(await db.catch(() => undefined));
  }

  private database(): Promise<Database> {
    this.db ??= this.createDatabase().catch((err: unknown) => {
      this.db = undefined;
      throw err;
    });
    return this.db;
  }

  private async createDatabase(): Promise<Database> {
    await this.ensureDir();
    const tempDir = this.tempDir(this.generation++);
    // DuckDB makes only the last folder of temp_directory: without .tmp, spilling failed.
    await fsp.mkdir(tempDir, { recursive: true });
    let instance: DuckDBInstance;
    try {
      instance = await DuckDBInstance.create(':memory:', {
        threads: String(this.config.threads),
        memory_limit: this.config.memoryLimit,
        checkpoint_threshold: this.config.checkpointWalSize,
        default_block_size: String(BLOCK_SIZE),
        // Spilled buffers stay inside dir too (an in-memory instance's default is ./.tmp), in a
        // folder of this process's own: signal workers may share DUCKDB_DIR (one volume for the
        // group), and two instances spilling into one folder could pick the same file names.
        temp_directory: tempDir,
      });
    } catch (err) {
      throw duckDbError('cannot create the DuckDB instance', err);
    }
    let die: (err: unknown) => void = () => undefined;
    const died = new Promise<never>((_, reject) => (die = reject));
    died.catch(() => undefined);
    const db: Database = {
      instance,
      tempDir,
      createErrors: 0,
      died,
      die: (err) => {
        db.dead ??= err;
        die(err);
      },
      pool: genericPool.createPool<DuckDBConnection>(
        {
          create: async () => {
            // The pool tries again at once for every waiting acquire: slow that down on a dead instance.
            if (db.dead !== undefined) await new Promise((r) => setTimeout(r, 1000));
            if (db.dead !== undefined) throw db.dead;
            const conn = await instance.connect();
            try {
              await conn.run(`SET TimeZone = 'UTC'`);
              await conn.run(STAGING_SQL);
            } catch (err) {
              conn.disconnectSync();
              throw err;
            }
            return conn;
          },
          destroy: async (conn) => {
            conn.disconnectSync();
          },
        },
        { max: this.config.connections, min: 0, acquireTimeoutMillis: this.config.acquireTimeoutMs },
      ),
    };
    db.pool.on('factoryCreateError', (err: unknown) => {
      db.lastCreateError = err;
      if (causeKind(err) === 'invalidated') this.invalidate(db, err);
      // Once, then every 1000th: a failing store makes the pool try again for every waiting write.
      if (db.createErrors++ % 1000 === 0 && db.dead === undefined) this.logger.warn({ err, failures: db.createErrors }, 'creating a DuckDB connection failed');
    });
    return db;
  }

  /**
   * DuckDB invalidated the instance: every query on it fails from now on. Its tenants are dropped
   * (their uncommitted writes were never committed past: they are retried) and a new instance is
   * made, but only once the old one is closed: its file handles hold the tenants' POSIX locks,
   * which closing any handle of a file releases for the whole process, so the two must not have a
   * file open at the same time.
   */
  private invalidate(db: Database, err: unknown): void {
    if (db.dead !== undefined) return;
    db.die(err);
    this.metrics.instancesInvalidated.inc();
    this.logger.error({ err: duckDbMessage(err) }, 'DuckDB invalidated its instance; closing it and starting a new one');
    this.onInvalidated();
    const retired = this.retire(db);
    this.db = retired.then(() => this.createDatabase());
    this.db.catch(() => (this.db = undefined));
  }

  /** Closes a dead instance once its lent connections are back (their queries fail at once). */
  private async retire(db: Database): Promise<void> {
    const deadline = Date.now() + this.config.acquireTimeoutMs;
    while (db.pool.borrowed > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (db.pool.borrowed > 0) this.logger.warn({ borrowed: db.pool.borrowed }, 'closing the invalidated DuckDB instance with connections still lent');
    await this.closeInstance(db, false);
  }

  private async closeInstance(db: Database | undefined, drain = true): Promise<void> {
    if (!db) return;
    try {
      // A dead instance's pool may still hold acquire requests (until their timeout): not waited for.
      if (drain) await db.pool.drain();
      await db.pool.clear();
    } catch (err) {
      this.logger.warn({ err }, 'draining the DuckDB connection pool failed');
    }
    try {
      // Releases the file locks of anything still attached once every connection is gone.
      db.instance.closeSync();
    } catch (err) {
      this.logger.warn({ err }, 'closing the DuckDB instance failed');
    }
    await fsp.rm(db.tempDir, { recursive: true, force: true }).catch((err: unknown) => this.logger.warn({ err, dir: db.tempDir }, 'removing the DuckDB spill folder failed'));
  }

  /** Where this process's DuckDB instance spills: DUCKDB_DIR/.tmp/<host>-<pid>, then -<n> for a replacement. */
  private tempDir(generation: number): string {
    return path.join(this.root, '.tmp', `${os.hostname()}-${process.pid}${generation > 0 ? `-${generation}` : ''}`);
  }
}
