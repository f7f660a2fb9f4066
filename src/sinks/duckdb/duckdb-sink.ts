import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BIGINT, DuckDBDataChunk, DuckDBInstance, DuckDBTimestampValue, INTEGER, TIMESTAMP, VARCHAR } from '@duckdb/node-api';
import type { DuckDBConnection } from '@duckdb/node-api';
import { E_TIMEOUT, Mutex, withTimeout } from 'async-mutex';
import type { MutexInterface } from 'async-mutex';
import genericPool from 'generic-pool';
import type { Pool } from 'generic-pool';
import { Counter, Gauge, Histogram } from 'prom-client';
import type { Registry } from 'prom-client';
import type { Logger } from 'pino';
import { ConfigError, LocalWaitError, RecordRejectedError, RetriableError } from '../../errors.js';
import { SEVERITIES, signalTime } from '../../model/signal.js';
import type { Severity, Signal } from '../../model/signal.js';
import { isCanonicalUuid } from '../../model/tenant.js';
import type { SinkContext } from '../types.js';
import type { BatchWriteResult, SourcePosition, TenantBatchSink } from '../tenant-batch-adapter.js';

export interface DuckDbSinkConfig {
  /** DUCKDB_DIR: one `<tenantId>.duckdb` file per tenant; nothing is written outside it. */
  dir: string;
  /** Most rows one DuckDB transaction writes (a flush is split into transactions of this size). */
  maxRowsPerTransaction: number;
  /** Most tenant databases attached at once; the least recently used idle one is detached first. */
  maxOpenTenants: number;
  /** A tenant database unused for this long is detached (its file lock released). */
  idleTimeoutMs: number;
  /** DuckDB `threads` of the sink's one DuckDB instance (every tenant database is attached to it). */
  threads?: number;
  /** DuckDB `memory_limit` of the sink's one instance: one buffer pool for every attached tenant. */
  memoryLimit?: string;
  /**
   * Connections to the instance: how many tenants are written at the same time (each write holds
   * one connection; a transaction may write to one attached database only).
   */
  connections?: number;
  /**
   * Waiting longer than this for a tenant's turn or a connection, or for a tenant's file lock held
   * by another process, fails the write as retriable.
   */
  acquireTimeoutMs?: number;
  /**
   * A tenant database held open this long is handed over (closed, then not reopened for a short
   * random cool-down) as soon as another process is waiting for its file lock.
   */
  maxHoldMs?: number;
  /**
   * Writes of at most this many new rows go straight into the tenant's table through an appender
   * (one autocommit transaction, ~2 ms CPU for a few rows against ~4–6 ms for the staged path);
   * larger ones, and any write the appender fails (a stored id, a value DuckDB cannot cast), take
   * the staged path. 0 turns the fast path off. The appender's flush runs on the main thread.
   */
  appendMaxRows?: number;
  /**
   * When DuckDB's buffer-managed memory passes this fraction of memoryLimit (checked every
   * CHECKPOINT_CHECK_EVERY committed writes), tenants written since their last checkpoint are
   * checkpointed, least recently written first and only those without a write in flight, until it
   * is below three quarters of that. A written, not yet checkpointed database pins ~0.5 MB that
   * DuckDB cannot evict (README). 0 turns it off.
   */
  checkpointAtMemoryFraction?: number;
  /**
   * DuckDB's checkpoint_threshold: each attached database checkpoints by itself (at a commit)
   * once its WAL passes this size, which turns its written rows into blocks DuckDB can drop
   * rather than spill, and keeps the WAL a restart replays small. With 500 tenants none reached
   * DuckDB's 16 MB default within minutes (make bench --sustained; bench/README.md).
   */
  checkpointWalSize?: string;
}

export const DEFAULT_DUCKDB_SINK_CONFIG: Required<DuckDbSinkConfig> = {
  dir: './data/duckdb',
  // Measured (bench/duckdb-sink.mjs, README): ~73K rows/s at 1,000 rows per transaction, ~90K at
  // 2,000 and ~100K at 10,000, flat above that. 10,000 keeps bisecting and rollbacks small.
  maxRowsPerTransaction: 10_000,
  // Measured (README): an attached database costs 2 file descriptors and ~40 KB idle, ~0.5–1 MB
  // once written (until its next checkpoint); 1,024 keeps 500 active tenants attached.
  maxOpenTenants: 1024,
  idleTimeoutMs: 60_000,
  threads: 1,
  memoryLimit: '256MB',
  connections: 4,
  acquireTimeoutMs: 60_000,
  maxHoldMs: 5_000,
  appendMaxRows: 64,
  checkpointAtMemoryFraction: 0.6,
  checkpointWalSize: '256KB',
};

/** Committed writes between two looks at DuckDB's memory (duckdb_memory()). */
const CHECKPOINT_CHECK_EVERY = 50;
/** DuckDB's message when its memory_limit is reached ("could not allocate block of size …", "Out of Memory Error: …"). */
const OUT_OF_MEMORY = /could not allocate block|out of memory/i;
/** ATTACH of a file this instance already has attached: *Unique file handle conflict: … is already attached by database …*. */
const ALREADY_ATTACHED = /is already attached by database/i;

/** Longest pause between two attempts to open a file another process holds (capped, jittered). */
const LOCK_RETRY_MAX_DELAY_MS = 100;
/** A waiter refreshes its wait marker this often; a marker older than WAIT_MARKER_FRESH_MS is stale. */
const WAIT_MARKER_REFRESH_MS = 250;
const WAIT_MARKER_FRESH_MS = 2_000;
/**
 * After a handover the holder waits this long (plus up to as much again, at random) before it
 * opens the file again: longer than a waiter's longest pause between attempts, so the waiter
 * gets the lock.
 */
const HANDOVER_COOL_DOWN_MS = 250;

/**
 * Block size of databases this sink creates (DuckDB's default is 256 KiB). Every written, not yet
 * checkpointed database pins a few blocks (primary-key index, appended row groups) that the buffer
 * manager cannot evict: with 500 tenants attached to one instance, 256 KiB blocks pinned ~2 MB per
 * tenant and ran a 256MB instance out of memory; 16 KiB blocks pin ~0.2 MB (README). Files created
 * with another block size are opened with theirs.
 */
const BLOCK_SIZE = 16_384;

/** DuckDB's error when another process holds the database file's lock. */
const LOCK_CONFLICT = /could not set lock|conflicting lock/i;

/** Errors DuckDB raises about the data of a row (a bad cast, a value out of range). */
export type DuckDbErrorKind = 'row' | 'retriable';

const RETRIABLE_PATTERNS: readonly RegExp[] = [
  /^IO Error/i,
  /could not set lock|conflicting lock|database is locked/i,
  /no space left|disk (is )?full|quota exceeded|read-only file system/i,
  /out of memory|could not allocate|failed to allocate/i,
  /^(FATAL|INTERNAL) Error/i,
  /database has been invalidated/i,
  /^(TransactionContext|Connection|Interrupt|Network|HTTP|Permission) Error/i,
  /interrupted/i,
  /write-write conflict|duplicate key/i,
];

const ROW_PATTERNS: readonly RegExp[] = [
  /^Conversion Error/i,
  /^Out of Range Error/i,
  /^Constraint Error/i,
  // Invalid Input is also used for connection/result states, so only its data-related messages.
  /^Invalid Input Error.*(json|utf-?8|unicode|surrogate)/i,
];

/**
 * Decides whether a DuckDB error is about the data of the rows being written (then bisecting
 * finds the bad rows) or about the store (retry the whole batch). The DuckDB node API throws a
 * plain Error whose message starts with the DuckDB exception type ("Conversion Error: ...").
 * Anything not known to be row data is retriable: a wrongly retried batch is visible (the worker
 * stops advancing), a wrongly rejected one silently floods the dead-letter topic.
 */
export function classifyDuckDbError(err: unknown): DuckDbErrorKind {
  const message = err instanceof Error ? err.message : String(err);
  if (RETRIABLE_PATTERNS.some((re) => re.test(message))) return 'retriable';
  if (ROW_PATTERNS.some((re) => re.test(message))) return 'row';
  return 'retriable';
}

/** The first line of a DuckDB error (the rest is the SQL excerpt with a caret). */
function duckDbMessage(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0] ?? message;
}

const STAGING_TABLE = 'spanledger_staging';

/**
 * The signals table. No PRIMARY KEY: DuckDB keeps a table's ART index in memory for as long as
 * the database is attached (checkpoints do not release it, ~50 bytes a row), so 500 tenants'
 * indexes outgrew any memory_limit under sustained load and DuckDB failed (make bench
 * --sustained). A signal is stored once because every write first looks for its id among the
 * stored signals of the same time (see timeRange): the time column's zone maps keep that lookup
 * to the few recent blocks, however large the table grows.
 */
const schemaSql = (alias: string, table = 'signals'): string => `
CREATE TABLE IF NOT EXISTS "${alias}".main.${table} (
  id              UUID        NOT NULL,
  tenant_id       UUID        NOT NULL,
  rule_id         VARCHAR     NOT NULL,
  trace_id        VARCHAR     NOT NULL,
  ts              TIMESTAMPTZ NOT NULL,
  severity        VARCHAR     NOT NULL,
  message         VARCHAR     NOT NULL,
  metadata        JSON        NOT NULL,
  kafka_partition INTEGER     NOT NULL,
  kafka_offset    BIGINT      NOT NULL,
  ingested_at     TIMESTAMP   NOT NULL
)`;

/**
 * Per-connection staging table. Everything is VARCHAR so that appending can never fail on data:
 * the casts (UUID, TIMESTAMPTZ, JSON) happen in the INSERT ... SELECT, where a failing row can
 * be found by bisecting on `idx` (the record's index in the write() input).
 */
const STAGING_SQL = `
CREATE TEMP TABLE IF NOT EXISTS ${STAGING_TABLE} (
  idx             INTEGER NOT NULL,
  id              VARCHAR,
  rule_id         VARCHAR,
  trace_id        VARCHAR,
  ts              VARCHAR,
  severity        VARCHAR,
  message         VARCHAR,
  metadata        VARCHAR,
  kafka_partition INTEGER,
  kafka_offset    BIGINT
)`;
const STAGING_TYPES = [INTEGER, VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, INTEGER, BIGINT];
/** DuckDB's vector size: the most rows one data chunk holds. */
const CHUNK_ROWS = 2048;

// SQL below interpolates only a tenant id checked with isCanonicalUuid, the alias derived from it
// and integers we computed.
/** The name a tenant's database is attached under: `t_` and the UUID's hex digits. */
export function tenantAlias(tenantId: string): string {
  return `t_${tenantId.replace(/-/g, '')}`;
}

/** A half-open range [from, to) of signal times, as SQL TIMESTAMPTZ literals. */
interface TimeRange {
  from: string;
  to: string;
  minMs: number;
  maxMs: number;
}

/**
 * The times of some staged rows. A replayed signal has the time of the stored one (rule workers
 * derive both id and time from the trace), so its id is looked for only among stored signals of
 * these times. parseSignalTime drops sub-millisecond digits, hence the end one millisecond on.
 */
function timeRange(rows: ReadonlyArray<StagedRow>): TimeRange {
  let min = Infinity;
  let max = -Infinity;
  for (const r of rows) {
    if (r.timeMs < min) min = r.timeMs;
    if (r.timeMs > max) max = r.timeMs;
  }
  return { from: `TIMESTAMPTZ '${new Date(min).toISOString()}'`, to: `TIMESTAMPTZ '${new Date(max + 1).toISOString()}'`, minMs: min, maxMs: max };
}

/** DuckDB's memory by what holds it (duckdb_memory() tags), bytes. */
async function memoryByTag(conn: DuckDBConnection): Promise<Record<string, number>> {
  const rows = (await conn.runAndReadAll('SELECT tag, memory_usage_bytes::BIGINT FROM duckdb_memory()')).getRowsJS();
  return Object.fromEntries(rows.map(([tag, bytes]) => [String(tag), Number(bytes)]));
}

/** The appender's write met a stored id: rolled back, the write takes the staged path. */
class StoredIdFound extends Error {}

/** Inserts the staged rows whose id is not stored among the signals of their times. */
function insertSql(alias: string, tenantId: string, firstIdx: number, lastIdx: number, range: TimeRange | undefined): string {
  return `INSERT INTO "${alias}".main.signals
  (id, tenant_id, rule_id, trace_id, ts, severity, message, metadata, kafka_partition, kafka_offset, ingested_at)
SELECT id::UUID, '${tenantId}'::UUID, rule_id, trace_id, ts::TIMESTAMPTZ, severity, message, metadata::JSON,
  kafka_partition, kafka_offset, now() AT TIME ZONE 'UTC'
FROM temp.main.${STAGING_TABLE} s WHERE idx BETWEEN ${firstIdx} AND ${lastIdx}${range === undefined ? '' : `
  AND NOT EXISTS (SELECT 1 FROM "${alias}".main.signals t WHERE t.ts >= ${range.from} AND t.ts < ${range.to} AND t.id = s.id::UUID)`}`;
}

/**
 * Staged rows whose id is stored with different content (the rows just inserted are equal).
 * Two steps, because a plain join reads every column of every stored row: first the row ids of
 * the stored signals with a staged id (reads only the id column), then only those rows in full.
 * Measured on 1M stored rows, per 10,000 replayed rows: ~1 s for the plain join, ~80 ms this way.
 */
function conflictSql(alias: string, tenantId: string, firstIdx: number, lastIdx: number, range: TimeRange): string {
  return `WITH staged AS (
  SELECT idx, id::UUID AS id, rule_id, trace_id, ts::TIMESTAMPTZ AS ts, severity, message, metadata::JSON::VARCHAR AS metadata
  FROM temp.main.${STAGING_TABLE} WHERE idx BETWEEN ${firstIdx} AND ${lastIdx}
), stored AS (
  SELECT * FROM "${alias}".main.signals WHERE rowid IN (
    SELECT t.rowid FROM "${alias}".main.signals t SEMI JOIN staged s ON t.id = s.id WHERE t.ts >= ${range.from} AND t.ts < ${range.to})
)
SELECT s.idx FROM staged s JOIN stored t ON t.id = s.id
WHERE (t.tenant_id, t.rule_id, t.trace_id, t.ts, t.severity, t.message, t.metadata::VARCHAR)
  IS DISTINCT FROM ('${tenantId}'::UUID, s.rule_id, s.trace_id, s.ts, s.severity, s.message, s.metadata)
ORDER BY s.idx`;
}

const INT64_MAX = 2n ** 63n - 1n;

/**
 * Database files open in this process. DuckDB's file lock is a POSIX record lock, which does not
 * stop the same process from opening a file twice (two instances writing one file corrupt it),
 * so two sinks of one process (each has its own instance) must not share a file: the second one
 * waits (retriable). Within one instance DuckDB itself refuses to attach a file twice.
 */
const openFiles = new Set<string>();

interface StagedRow {
  /** Index of the record in the write() input. */
  idx: number;
  signal: Signal;
  metadataJson: string;
  partition: number;
  offset: bigint;
  /** The signal time, whole milliseconds since the epoch (parseSignalTime). */
  timeMs: number;
}

interface WriteStats {
  inserted: number;
  duplicates: number;
}
/**
 * JSON.stringify escapes a lone UTF-16 surrogate as `\udXXX` (paired ones are written as they
 * are), which DuckDB's JSON cast refuses but the appender would store unchecked.
 */
const LONE_SURROGATE_ESCAPE = /\\ud[89a-f][0-9a-f]{2}/i;

/** Column types of the appender fast path: the table's, with VARCHAR where DuckDB casts (UUID, TIMESTAMPTZ, JSON). */
const APPEND_TYPES = [VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, INTEGER, BIGINT, TIMESTAMP];

interface QueuedWrite {
  records: ReadonlyArray<{ value: Signal; source: SourcePosition }>;
  resolve: (result: BatchWriteResult) => void;
  reject: (err: unknown) => void;
}

/** Writes for one tenant waiting for the next run of its queue. */
interface TenantQueue {
  writes: QueuedWrite[];
  sources: Set<string>;
}

interface OpenTenant {
  readonly tenantId: string;
  readonly file: string;
  /** Name the database is attached under in the sink's instance. */
  readonly alias: string;
  /** When this process took the file lock: the hold time counts from here. */
  readonly openedAt: number;
  /** One writer per tenant: writes (and the detach) take turns. */
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

/** The sink's one DuckDB instance (an in-memory catalog; tenants are attached) and its connections. */
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

/** DuckDB invalidated the whole instance (e.g. a rollback that ran out of memory): it must be replaced. */
function isInvalidation(err: unknown): boolean {
  for (let e: unknown = err; e !== undefined && e !== null; e = (e as { cause?: unknown }).cause) {
    if (/database has been invalidated|^FATAL Error/i.test(duckDbMessage(e))) return true;
    if (!(e instanceof Error)) break;
  }
  return false;
}

/**
 * Signals into one DuckDB database file per tenant: `<dir>/<tenantId>.duckdb`, table `signals`.
 *
 * Write path (fastest idempotent one measured, see README): the batch is appended column-wise
 * (DuckDBDataChunk → appender) into a per-connection TEMP staging table, then moved with
 * `INSERT INTO signals SELECT ... FROM staging WHERE idx BETWEEN a AND b AND <id not stored among
 * the signals of those times>` in transactions of at most maxRowsPerTransaction rows. A failing transaction is rolled back and
 * bisected down to single rows (the staged rows stay, only the idx range shrinks): bad rows are
 * rejected, the rest stored. Same id with different content is reported as DuckDbConflict.
 *
 * One DuckDB instance per sink (DuckDB's advice: one instance per process): an in-memory
 * catalog with one memory_limit and one thread pool; each tenant's file is ATTACHed under an alias
 * derived from its id and DETACHed when idle, evicted, released or handed over. A shared pool of
 * `connections` connections (each with its staging table) writes that many tenants at the same
 * time; a tenant's writes take turns (its mutex).
 *
 * One writer per file: a DuckDB file is opened by one process at a time (DuckDB takes an
 * exclusive file lock, also for ATTACH). The worker must call releaseTenant (or
 * releasePartition) before giving up a partition so that the next owner can open the file.
 */
export class DuckDbSignalSink implements TenantBatchSink<Signal> {
  readonly name = 'duckdb';
  private readonly config: Required<DuckDbSinkConfig>;
  private readonly root: string;
  private readonly logger: Logger;
  private readonly tenants = new Map<string, OpenTenant>();
  private readonly opening = new Map<string, Promise<OpenTenant>>();
  /** Per tenant: writes waiting to be coalesced into the next run of its queue. */
  private readonly queued = new Map<string, TenantQueue>();
  /** Tenants handed over to another process: not reopened before this time (ms). */
  private readonly coolDownUntil = new Map<string, number>();
  private db: Promise<Database> | undefined;
  /** Instances made so far: each later one spills into a folder of its own. */
  private generation = 0;
  private sweepTimer: NodeJS.Timeout | undefined;
  private dirReady: Promise<void> | undefined;
  private closed = false;
  private capacityWarned = false;

  private readonly transactions: Counter<'outcome'>;
  private readonly rowsWritten: Counter;
  private readonly rowsDuplicate: Counter;
  private readonly rowsRejected: Counter<'reason'>;
  private readonly transactionDuration: Histogram;
  private readonly openTenants: Gauge;
  private readonly lockWaits: Counter;
  private readonly lockWaitDuration: Histogram;
  private readonly handovers: Counter;
  private readonly coalescedWrites: Counter;
  private readonly checkpoints: Counter;
  private readonly instancesInvalidated: Counter;
  private readonly memoryUsed: Gauge;
  private writesSinceMemoryCheck = 0;
  private checkpointing: Promise<void> | undefined;

  constructor(config: Partial<DuckDbSinkConfig>, context: SinkContext) {
    this.config = resolveConfig(config);
    this.root = path.resolve(this.config.dir);
    this.logger = context.logger.child({ sink: 'duckdb' });
    const registry = context.registry;
    this.transactions = metric(registry, 'spanledger_duckdb_transactions_total', () => new Counter({
      name: 'spanledger_duckdb_transactions_total',
      help: 'DuckDB write transactions by outcome (committed, rolled_back)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }));
    this.rowsWritten = metric(registry, 'spanledger_duckdb_rows_written_total', () => new Counter({
      name: 'spanledger_duckdb_rows_written_total',
      help: 'Signal rows newly inserted into DuckDB (replays of stored ids are not)',
      registers: [registry],
    }));
    this.rowsDuplicate = metric(registry, 'spanledger_duckdb_rows_duplicate_total', () => new Counter({
      name: 'spanledger_duckdb_rows_duplicate_total',
      help: 'Signal rows already stored with the same content (replays), not inserted again',
      registers: [registry],
    }));
    this.rowsRejected = metric(registry, 'spanledger_duckdb_rows_rejected_total', () => new Counter({
      name: 'spanledger_duckdb_rows_rejected_total',
      help: 'Signal rows rejected for good by the DuckDB sink, by error class',
      labelNames: ['reason'] as const,
      registers: [registry],
    }));
    this.transactionDuration = metric(registry, 'spanledger_duckdb_transaction_duration_seconds', () => new Histogram({
      name: 'spanledger_duckdb_transaction_duration_seconds',
      help: 'Duration of one DuckDB write transaction (BEGIN to COMMIT or ROLLBACK)',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }));
    this.openTenants = metric(registry, 'spanledger_duckdb_open_tenants', () => new Gauge({
      name: 'spanledger_duckdb_open_tenants',
      help: 'Tenant DuckDB databases currently open in this process',
      registers: [registry],
    }));
    this.lockWaits = metric(registry, 'spanledger_duckdb_lock_waits_total', () => new Counter({
      name: 'spanledger_duckdb_lock_waits_total',
      help: 'Times a write found its tenant database locked by another process and waited for it',
      registers: [registry],
    }));
    this.lockWaitDuration = metric(registry, 'spanledger_duckdb_lock_wait_seconds', () => new Histogram({
      name: 'spanledger_duckdb_lock_wait_seconds',
      help: 'How long each wait for a tenant database locked by another process lasted',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60],
      registers: [registry],
    }));
    this.handovers = metric(registry, 'spanledger_duckdb_handovers_total', () => new Counter({
      name: 'spanledger_duckdb_handovers_total',
      help: 'Tenant databases closed after DUCKDB_MAX_HOLD_MS because another process was waiting for them',
      registers: [registry],
    }));
    this.instancesInvalidated = metric(registry, 'spanledger_duckdb_instances_invalidated_total', () => new Counter({
      name: 'spanledger_duckdb_instances_invalidated_total',
      help: 'DuckDB instances replaced because DuckDB invalidated them (a FATAL error, e.g. a rollback out of memory)',
      registers: [registry],
    }));
    this.checkpoints = metric(registry, 'spanledger_duckdb_checkpoints_total', () => new Counter({
      name: 'spanledger_duckdb_checkpoints_total',
      help: 'Tenant databases checkpointed because DuckDB memory passed DUCKDB_CHECKPOINT_AT_MEMORY_FRACTION of its limit',
      registers: [registry],
    }));
    this.coalescedWrites = metric(registry, 'spanledger_duckdb_coalesced_writes_total', () => new Counter({
      name: 'spanledger_duckdb_coalesced_writes_total',
      help: 'write() calls for one tenant merged with others queued at the same time into one batch',
      registers: [registry],
    }));
    this.memoryUsed = metric(registry, 'spanledger_duckdb_memory_bytes', () => new Gauge({
      name: 'spanledger_duckdb_memory_bytes',
      help: 'Memory of the worker\'s DuckDB instance by what holds it (duckdb_memory() tags: BASE_TABLE, ART_INDEX, …; their sum is bounded by DUCKDB_MEMORY_LIMIT), sampled every 50 writes',
      labelNames: ['tag'],
      registers: [registry],
    }));
  }

  async start(): Promise<void> {
    this.closed = false;
    await this.ensureDir();
    await this.database();
    if (!this.sweepTimer) {
      // Often enough for idle closing and to hand a database over soon after maxHoldMs.
      const every = Math.min(30_000, Math.max(50, Math.floor(Math.min(this.config.idleTimeoutMs / 2, this.config.maxHoldMs / 5))));
      this.sweepTimer = setInterval(() => {
        this.sweep().catch((err: unknown) => this.logger.warn({ err }, 'closing idle DuckDB tenant databases failed'));
      }, every);
      this.sweepTimer.unref();
    }
  }

  async write(tenantId: string, records: ReadonlyArray<{ value: Signal; source: SourcePosition }>): Promise<BatchWriteResult> {
    const rejected = new Map<number, RecordRejectedError>();
    if (!isCanonicalUuid(tenantId)) {
      records.forEach((_, i) => rejected.set(i, new RecordRejectedError('InvalidTenantId', `tenant id ${JSON.stringify(tenantId)} is not a canonical UUID`)));
      this.rowsRejected.inc({ reason: 'InvalidTenantId' }, records.length);
      return { rejected };
    }
    if (this.closed) throw new RetriableError('the DuckDB sink is closed');
    return this.enqueue(tenantId, records);
  }

  /**
   * Coalescing: a write joins the tenant's queue; one run of the queue (in the tenant's turn, with
   * a connection) writes every write queued by then as one batch, so the partitions of a worker
   * that flush at the same time pay one set of transactions per tenant instead of one each. Each
   * caller gets the rejects of its own records (indexes into its own input) or the batch's error.
   */
  private enqueue(tenantId: string, records: ReadonlyArray<{ value: Signal; source: SourcePosition }>): Promise<BatchWriteResult> {
    return new Promise<BatchWriteResult>((resolve, reject) => {
      const write: QueuedWrite = { records, resolve, reject };
      const queue = this.queued.get(tenantId);
      if (queue) {
        queue.writes.push(write);
        addSources(queue.sources, records);
        return;
      }
      this.queued.set(tenantId, { writes: [write], sources: addSources(new Set(), records) });
      void this.runQueue(tenantId);
    });
  }

  private async runQueue(tenantId: string): Promise<void> {
    const queue = this.queued.get(tenantId)!;
    let taken = false;
    // Writes that arrive after this point start the next run (which waits for this one's turn).
    const take = (): QueuedWrite[] => {
      if (!taken) {
        taken = true;
        if (this.queued.get(tenantId) === queue) this.queued.delete(tenantId);
      }
      return queue.writes;
    };
    try {
      await this.withTenant(tenantId, queue.sources, async (conn, tenant) => {
        const writes = take();
        for (const s of queue.sources) tenant.sources.add(s);
        const records = writes.length === 1 ? writes[0]!.records : writes.flatMap((w) => w.records);
        if (writes.length > 1) this.coalescedWrites.inc(writes.length);
        const rejected = await this.writeBatch(conn, tenant, tenantId, records);
        tenant.dirty = true;
        tenant.lastWrittenAt = Date.now();
        let base = 0;
        for (const w of writes) {
          const own = new Map<number, RecordRejectedError>();
          for (let i = 0; i < w.records.length; i++) {
            const err = rejected.get(base + i);
            if (err) own.set(i, err);
          }
          base += w.records.length;
          w.resolve({ rejected: own });
        }
      });
    } catch (err) {
      for (const w of take()) w.reject(err); // a resolved write ignores this
      // Out of DuckDB memory: free some now, or every retry fails the same way.
      if (OUT_OF_MEMORY.test(duckDbMessage(err instanceof RetriableError ? (err.cause ?? err) : err))) this.checkMemory(true);
      return;
    }
    this.checkMemory(false);
  }

  /** Every CHECKPOINT_CHECK_EVERY writes (or `now`), checkpoint tenants if DuckDB memory is high. */
  private checkMemory(now: boolean): void {
    if (this.config.checkpointAtMemoryFraction <= 0 || this.checkpointing) return;
    if (++this.writesSinceMemoryCheck >= CHECKPOINT_CHECK_EVERY || now) {
      this.writesSinceMemoryCheck = 0;
      this.checkpointing = this.checkpointUnderPressure()
        .catch((err: unknown) => this.logger.warn({ err }, 'checkpointing DuckDB tenants under memory pressure failed'))
        .finally(() => (this.checkpointing = undefined));
    }
  }

  /** Buffer-managed memory of the instance, bytes (duckdb_memory(), which memory_limit bounds). */
  private async duckDbMemory(): Promise<number> {
    // By tag, so that an operator (and the bench) sees whether tables, primary-key indexes or
    // spills fill the limit.
    const byTag = await this.withConnection('memory', memoryByTag);
    let used = 0;
    for (const [tag, bytes] of Object.entries(byTag)) {
      this.memoryUsed.set({ tag }, bytes);
      used += bytes;
    }
    return used;
  }

  /**
   * Checkpoints written tenants, least recently written first, while DuckDB's memory is above
   * checkpointAtMemoryFraction of memoryLimit, down to three quarters of that. Runs beside the
   * writes (one at a time); each checkpoint takes the tenant's turn, so it waits for its write.
   */
  private async checkpointUnderPressure(): Promise<void> {
    const limit = memoryBytes(this.config.memoryLimit);
    const high = limit * this.config.checkpointAtMemoryFraction;
    let used = await this.duckDbMemory();
    if (used < high) return;
    const started = Date.now();
    // Busy tenants too: under a backlog every tenant has writes waiting, and skipping them let a
    // signal worker over 500 tenants run DuckDB out of memory (its transactions rolled back and
    // retried, its backlog grew). The checkpoint waits for the tenant's turn like a write.
    const candidates = this.openList().filter((t) => t.dirty).sort((a, b) => a.lastWrittenAt - b.lastWrittenAt);
    let done = 0;
    for (const tenant of candidates) {
      if (used < high * 0.75 || this.closed) break;
      if (tenant.closing || !tenant.dirty) continue;
      const release = await tenant.mutex.acquire();
      try {
        if (tenant.closing || !tenant.dirty) continue;
        await this.withConnection(`checkpointing ${tenant.file}`, (conn) => conn.run(`CHECKPOINT "${tenant.alias}"`));
        tenant.dirty = false;
        this.checkpoints.inc();
        done++;
      } finally {
        release();
      }
      if (done % 10 === 0) used = await this.duckDbMemory();
    }
    this.logger.debug({ checkpoints: done, ms: Date.now() - started, usedBytes: used, limitBytes: limit }, 'checkpointed DuckDB tenants under memory pressure');
  }

  /** Writes one (possibly coalesced) batch of a tenant in its turn; returns the rejects by index. */
  private async writeBatch(
    conn: DuckDBConnection,
    tenant: OpenTenant,
    tenantId: string,
    records: ReadonlyArray<{ value: Signal; source: SourcePosition }>,
  ): Promise<Map<number, RecordRejectedError>> {
    const rejected = new Map<number, RecordRejectedError>();
    const { staged, duplicates } = this.prepare(tenantId, records, rejected);
    const stats: WriteStats = { inserted: 0, duplicates };
    if (staged.length > 0) {
      const fast = staged.length <= this.config.appendMaxRows && !staged.some((r) => LONE_SURROGATE_ESCAPE.test(r.metadataJson))
        ? await this.append(conn, tenant, staged, stats)
        : 'skipped';
      if (fast !== 'committed') {
        await this.stage(conn, tenantId, staged);
        const max = this.config.maxRowsPerTransaction;
        for (let lo = 0; lo < staged.length; lo += max) {
          await this.insertRange(conn, tenant, tenantId, staged, lo, Math.min(staged.length, lo + max), rejected, stats);
        }
      }
    }
    this.rowsDuplicate.inc(stats.duplicates);
    for (const err of rejected.values()) this.rowsRejected.inc({ reason: err.errorClass });
    if (rejected.size > 0) {
      this.logger.warn({ tenantId, records: records.length, rejected: rejected.size }, 'DuckDB rejected signals');
    }
    return rejected;
  }

  /**
   * The fast path for small writes: one data chunk appended straight to the tenant's table inside
   * one explicit transaction (see below for why not autocommit). Atomic both ways (tested): a
   * value the appender cannot cast fails appendDataChunk for the whole chunk (nothing is buffered),
   * and a stored id (found after the append, inside the transaction) rolls it back. Either
   * failure returns without having written anything and the caller takes the staged path (a
   * stored id: its insert skips stored ids and checks their content; a bad value: it bisects).
   * Metadata with a lone surrogate never comes here: the appender takes JSON as VARCHAR unchecked.
   */
  private async append(conn: DuckDBConnection, tenant: OpenTenant, rows: StagedRow[], stats: WriteStats): Promise<'committed' | 'failed'> {
    const { alias } = tenant;
    const n = rows.length;
    const range = timeRange(rows);
    const cols: (number | bigint | string | DuckDBTimestampValue)[][] = APPEND_TYPES.map(() => new Array(n));
    // ingested_at: the staged path uses the transaction's start; here the JS clock at append, UTC.
    const now = new DuckDBTimestampValue(BigInt(Date.now()) * 1000n);
    for (let i = 0; i < n; i++) {
      const r = rows[i]!;
      cols[0]![i] = r.signal.id;
      cols[1]![i] = r.signal.tenantId;
      setSharedColumns(cols, i, r);
      cols[10]![i] = now;
    }
    const endTimer = this.transactionDuration.startTimer();
    let began = false;
    try {
      // In an explicit transaction: the appender's flush (on the main thread, closeSync) only
      // moves the rows into the transaction; the COMMIT with its WAL fsync runs off the main
      // thread like every other query, and any failure rolls back everything.
      await conn.run('BEGIN TRANSACTION');
      began = true;
      const appender = await conn.createAppender('signals', 'main', alias);
      try {
        const chunk = reusableChunk(appendChunks, conn, APPEND_TYPES, n);
        chunk.setColumns(cols);
        appender.appendDataChunk(chunk);
      } finally {
        appender.closeSync(); // flush into the transaction (nothing if the chunk was refused)
      }
      // A stored id among the appended ones (a replay): roll back, and the staged path sorts
      // replays from conflicts. One id seen twice among the signals of these times finds it,
      // with no list of the ids to parse (measured: 1.4 ms against 3.2 ms for 64 ids).
      if (range.minMs <= tenant.latestStoredMs) {
        const twice = await conn.runAndReadAll(`SELECT 1 FROM "${alias}".main.signals t WHERE t.ts >= ${range.from} AND t.ts < ${range.to} GROUP BY t.id HAVING count(*) > 1 LIMIT 1`);
        if (twice.currentRowCount > 0) throw new StoredIdFound();
      }
      await conn.run('COMMIT');
      tenant.latestStoredMs = Math.max(tenant.latestStoredMs, range.maxMs);
    } catch (err) {
      if (began) await conn.run('ROLLBACK').catch(() => undefined); // "no transaction is active" is fine
      endTimer();
      this.transactions.inc({ outcome: 'rolled_back' });
      this.logger.debug({ alias, rows: n, err: duckDbMessage(err) }, 'DuckDB append failed; staged path');
      return 'failed';
    }
    endTimer();
    this.transactions.inc({ outcome: 'committed' });
    this.rowsWritten.inc(n);
    stats.inserted += n;
    return 'committed';
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

  async close(): Promise<void> {
    this.closed = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    await Promise.allSettled([...this.opening.values()]);
    await this.checkpointing;
    await Promise.all([...this.tenants.values()].map((t) => this.closeTenant(t, 'sink closed')));
    await this.closeDatabase();
  }

  /**
   * What the sink's one DuckDB instance holds: the attached tenant databases (by alias) and the
   * instance's memory_limit and threads as DuckDB reports them. For diagnostics and tests.
   */
  async stats(): Promise<{ attached: string[]; memoryLimit: string; threads: number; memoryByTag: Record<string, number> }> {
    return this.withConnection('stats', async (conn) => {
      const attached = (await conn.runAndReadAll(`SELECT database_name FROM duckdb_databases() WHERE NOT internal AND database_name <> 'memory' ORDER BY 1`)).getRowsJS().map((r) => String(r[0]));
      const [memoryLimit, threads] = (await conn.runAndReadAll(`SELECT current_setting('memory_limit'), current_setting('threads')::INTEGER`)).getRowsJS()[0]!;
      return { attached, memoryLimit: String(memoryLimit), threads: Number(threads), memoryByTag: await memoryByTag(conn) };
    });
  }

  /** Tenant ids that have a database file in dir. */
  async listTenants(): Promise<string[]> {
    let names: string[];
    try {
      names = await fsp.readdir(this.root);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    return names
      .filter((n) => n.endsWith('.duckdb'))
      .map((n) => n.slice(0, -'.duckdb'.length))
      .filter((id) => isCanonicalUuid(id))
      .sort();
  }

  /**
   * Signals per severity for one tenant. Uses the open database if this sink has it open;
   * otherwise opens the file read-only for the query (fails as retriable while another process,
   * e.g. a running worker, holds the file). A tenant without a file has only zeros.
   */
  async countBySeverity(tenantId: string): Promise<Record<Severity, number>> {
    const file = this.tenantFile(tenantId);
    const counts = Object.fromEntries(SEVERITIES.map((s) => [s, 0])) as Record<Severity, number>;
    const sql = (alias: string) => `SELECT severity, count(*)::INTEGER AS n FROM "${alias}".main.signals GROUP BY severity`;
    let rows: unknown[][];
    const opening = this.opening.get(tenantId);
    if (opening) await opening.catch(() => undefined);
    const open = this.tenants.get(tenantId);
    if (open && !open.closing) {
      rows = await this.withTenant(tenantId, new Set(), async (conn, tenant) => (await conn.runAndReadAll(sql(tenant.alias))).getRowsJS());
    } else {
      if (open?.closing) await open.closing;
      if (!fs.existsSync(file)) return counts;
      if (openFiles.has(file)) throw new RetriableError(`${file} is open for writing by another DuckDbSignalSink in this process`);
      // Attached read-only for the query only, under an alias of its own (a write attaching the
      // tenant meanwhile fails as retriable: DuckDB refuses a file attached twice).
      const alias = `ro_${tenantAlias(tenantId)}`;
      rows = await this.withConnection(`reading ${file}`, async (conn) => {
        try {
          await conn.run(`ATTACH ${sqlString(file)} AS "${alias}" (READ_ONLY)`);
        } catch (err) {
          throw new RetriableError(`cannot open ${file} read-only (is a worker writing it?): ${duckDbMessage(err)}`, err);
        }
        try {
          return (await conn.runAndReadAll(sql(alias))).getRowsJS();
        } finally {
          await conn.run(`DETACH DATABASE IF EXISTS "${alias}"`).catch((err: unknown) => this.logger.warn({ tenantId, err }, 'detaching a read-only DuckDB database failed'));
        }
      });
    }
    for (const [severity, n] of rows) {
      if ((SEVERITIES as readonly unknown[]).includes(severity)) counts[severity as Severity] = Number(n);
    }
    return counts;
  }

  /** Path of a tenant's database file, refusing anything that is not a canonical UUID in dir. */
  tenantFile(tenantId: string): string {
    if (!isCanonicalUuid(tenantId)) {
      throw new RecordRejectedError('InvalidTenantId', `tenant id ${JSON.stringify(tenantId)} is not a canonical UUID`);
    }
    const file = path.resolve(this.root, `${tenantId}.duckdb`);
    if (path.dirname(file) !== this.root) {
      throw new RecordRejectedError('InvalidTenantId', `tenant id ${JSON.stringify(tenantId)} escapes ${this.root}`);
    }
    return file;
  }

  /** Checks records in JS and drops in-batch duplicates; returns the rows to stage, in input order. */
  private prepare(
    tenantId: string,
    records: ReadonlyArray<{ value: Signal; source: SourcePosition }>,
    rejected: Map<number, RecordRejectedError>,
  ): { staged: StagedRow[]; duplicates: number } {
    const staged: StagedRow[] = [];
    const firstById = new Map<string, StagedRow>();
    let duplicates = 0;
    records.forEach(({ value: signal, source }, idx) => {
      if (signal.tenantId !== tenantId) {
        rejected.set(idx, new RecordRejectedError('TenantMismatch', `signal ${signal.id} has tenantId ${signal.tenantId}, written as tenant ${tenantId}`));
        return;
      }
      let offset: bigint;
      let timeMs: number;
      let metadataJson: string;
      try {
        if (!/^\d{1,19}$/.test(source.offset) || BigInt(source.offset) > INT64_MAX) throw new Error(`Kafka offset ${JSON.stringify(source.offset)} is not an int64`);
        if (!Number.isInteger(source.partition) || source.partition < 0 || source.partition > 2 ** 31 - 1) throw new Error(`Kafka partition ${source.partition} is not an int32`);
        offset = BigInt(source.offset);
        const time = signalTime(signal);
        if (!time.ok) throw new Error(`timestamp ${JSON.stringify(signal.timestamp)} ${time.reason}`);
        timeMs = time.epochMs;
        metadataJson = JSON.stringify(signal.metadata);
        if (typeof metadataJson !== 'string') throw new Error('metadata does not serialize to JSON');
      } catch (err) {
        rejected.set(idx, new RecordRejectedError('DuckDbRowRejected', `signal ${signal.id}: ${(err as Error).message}`, err));
        return;
      }
      const row: StagedRow = { idx, signal, metadataJson, partition: source.partition, offset, timeMs };
      const first = firstById.get(signal.id);
      if (first) {
        if (sameContent(first, row)) {
          duplicates++;
        } else {
          rejected.set(idx, new RecordRejectedError('DuckDbConflict', `signal ${signal.id} appears twice in the batch with different content (first at index ${first.idx})`));
        }
        return;
      }
      firstById.set(signal.id, row);
      staged.push(row);
    });
    return { staged, duplicates };
  }

  /** Replaces the connection's staging table contents with `rows`, column-wise in data chunks. */
  private async stage(conn: DuckDBConnection, tenantId: string, rows: StagedRow[]): Promise<void> {
    try {
      // Dropped and made again, not TRUNCATEd: a truncated temp table keeps its row groups in
      // memory (DuckDB 1.5: 1.5 MiB per 5,000 staged rows, for the connection's lifetime), which
      // ran a signal worker's DuckDB out of memory under sustained load (make bench --sustained).
      await conn.run(`DROP TABLE IF EXISTS temp.main.${STAGING_TABLE}`);
      await conn.run(STAGING_SQL);
      const appender = await conn.createAppender(STAGING_TABLE, 'main', 'temp');
      try {
        for (let start = 0; start < rows.length; start += CHUNK_ROWS) {
          const n = Math.min(CHUNK_ROWS, rows.length - start);
          const cols: (number | bigint | string)[][] = STAGING_TYPES.map(() => new Array(n));
          for (let i = 0; i < n; i++) {
            const r = rows[start + i]!;
            cols[0]![i] = r.idx;
            cols[1]![i] = r.signal.id;
            setSharedColumns(cols, i, r);
          }
          const chunk = reusableChunk(stagingChunks, conn, STAGING_TYPES, n);
          chunk.setColumns(cols);
          appender.appendDataChunk(chunk);
        }
      } finally {
        appender.closeSync(); // flushes
      }
    } catch (err) {
      // Staging columns are VARCHAR/INTEGER/BIGINT of checked values: a failure here is the store's.
      throw new RetriableError(`staging signals for tenant ${tenantId} failed: ${duckDbMessage(err)}`, err);
    }
  }

  /**
   * One transaction for staged[lo, hi). On a row-data error: roll back, split in halves, retry
   * each, down to single rows, which are rejected. On any other error: RetriableError.
   */
  private async insertRange(
    conn: DuckDBConnection,
    tenant: OpenTenant,
    tenantId: string,
    staged: StagedRow[],
    lo: number,
    hi: number,
    rejected: Map<number, RecordRejectedError>,
    stats: WriteStats,
  ): Promise<void> {
    const first = staged[lo]!.idx;
    const last = staged[hi - 1]!.idx;
    const count = hi - lo;
    const endTimer = this.transactionDuration.startTimer();
    let conflicts: number[] = [];
    let inserted: number;
    const { alias } = tenant;
    const range = timeRange(staged.slice(lo, hi));
    // All later than every stored signal: no stored id to look for (see latestStoredMs).
    const lookup = range.minMs <= tenant.latestStoredMs;
    try {
      await conn.run('BEGIN TRANSACTION');
      inserted = (await conn.run(insertSql(alias, tenantId, first, last, lookup ? range : undefined))).rowsChanged;
      // Fewer rows inserted than staged: some ids exist. Only then pay for the content check.
      if (inserted < count) {
        const reader = await conn.runAndReadAll(conflictSql(alias, tenantId, first, last, range));
        conflicts = reader.getRowsJS().map((row) => Number(row[0]));
      }
      await conn.run('COMMIT');
      tenant.latestStoredMs = Math.max(tenant.latestStoredMs, range.maxMs);
    } catch (err) {
      await conn.run('ROLLBACK').catch(() => undefined); // "no transaction is active" is fine
      endTimer();
      this.transactions.inc({ outcome: 'rolled_back' });
      if (classifyDuckDbError(err) === 'retriable') {
        throw new RetriableError(`DuckDB write for tenant ${tenantId} failed: ${duckDbMessage(err)}`, err);
      }
      if (count === 1) {
        const row = staged[lo]!;
        rejected.set(row.idx, new RecordRejectedError('DuckDbRowRejected', `DuckDB refused signal ${row.signal.id}: ${duckDbMessage(err)}`, err));
        return;
      }
      this.logger.debug({ tenantId, rows: count, err: duckDbMessage(err) }, 'DuckDB transaction failed on row data; bisecting');
      const mid = lo + Math.floor(count / 2);
      await this.insertRange(conn, tenant, tenantId, staged, lo, mid, rejected, stats);
      await this.insertRange(conn, tenant, tenantId, staged, mid, hi, rejected, stats);
      return;
    }
    endTimer();
    this.transactions.inc({ outcome: 'committed' });
    this.rowsWritten.inc(inserted);
    stats.inserted += inserted;
    stats.duplicates += count - inserted - conflicts.length;
    if (conflicts.length > 0) {
      const byIdx = new Map(staged.slice(lo, hi).map((r) => [r.idx, r]));
      for (const idx of conflicts) {
        const id = byIdx.get(idx)?.signal.id ?? `#${idx}`;
        rejected.set(idx, new RecordRejectedError('DuckDbConflict', `signal ${id} is already stored with different content`));
      }
    }
  }

  /**
   * Runs fn in the tenant's turn (its mutex) with a connection of the shared pool, attaching the
   * tenant's database if needed.
   */
  private async withTenant<R>(tenantId: string, sources: Set<string>, fn: (conn: DuckDBConnection, tenant: OpenTenant) => Promise<R>): Promise<R> {
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
          return await this.withConnection(`tenant ${tenantId}`, (conn) => fn(conn, tenant));
        } catch (err) {
          // After a store error, attach the database afresh next time.
          if (err instanceof RetriableError) reset = err;
          throw err;
        } finally {
          release();
        }
      } finally {
        tenant.users--;
        tenant.lastUsedAt = Date.now();
        if (reset !== undefined) await this.afterStoreError(tenant, reset);
      }
    }
  }

  /**
   * Runs fn with a connection of the shared pool. A connection whose fn failed is destroyed
   * instead of returned (its next user starts with a fresh one and a fresh staging table).
   */
  private async withConnection<R>(what: string, fn: (conn: DuckDBConnection) => Promise<R>): Promise<R> {
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
      if (db.lastCreateError !== undefined) throw new RetriableError(`no DuckDB connection for ${what}: ${duckDbMessage(db.lastCreateError)}`, db.lastCreateError);
      throw new LocalWaitError(`no DuckDB connection for ${what} within ${this.config.acquireTimeoutMs} ms (all ${this.config.connections} busy): ${duckDbMessage(err)}`, err);
    }
    let failed = false;
    try {
      return await fn(conn);
    } catch (err) {
      failed = true;
      if (isInvalidation(err)) this.invalidate(db, err);
      throw err;
    } finally {
      if (failed) await db.pool.destroy(conn).catch(() => undefined);
      else await db.pool.release(conn);
    }
  }

  /**
   * After a store error: detach the tenant (the next write attaches it afresh). An invalidated
   * instance (withConnection saw it) has dropped its tenants already.
   */
  private async afterStoreError(tenant: OpenTenant, err: unknown): Promise<void> {
    if (isInvalidation(err) || this.tenants.get(tenant.tenantId) !== tenant) return;
    await this.closeTenant(tenant, 'store error').catch(() => undefined);
  }

  /** The sink's one instance and connection pool, created on first use. */
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
      throw new RetriableError(`cannot create the DuckDB instance: ${duckDbMessage(err)}`, err);
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
      if (isInvalidation(err)) this.invalidate(db, err);
      // Once, then every 1000th: a failing store makes the pool try again for every waiting write.
      if (db.createErrors++ % 1000 === 0 && db.dead === undefined) this.logger.warn({ err, failures: db.createErrors }, 'creating a DuckDB connection failed');
    });
    return db;
  }

  /**
   * DuckDB invalidated the instance (a FATAL error, e.g. a rollback that ran out of memory):
   * every query on it fails from now on. Its tenants are dropped (their uncommitted writes were
   * never committed past: they are retried) and a new instance is made, but only once the old
   * one is closed: its file handles hold the tenants' POSIX locks, which closing any handle of a
   * file releases for the whole process, so the two must not have a file open at the same time.
   */
  private invalidate(db: Database, err: unknown): void {
    if (db.dead !== undefined) return;
    db.die(err);
    this.instancesInvalidated.inc();
    this.logger.error({ err: duckDbMessage(err) }, 'DuckDB invalidated its instance; closing it and starting a new one');
    for (const tenant of this.tenants.values()) {
      openFiles.delete(tenant.file);
      tenant.closing ??= Promise.resolve();
    }
    this.tenants.clear();
    this.openTenants.set(0);
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

  /** Closes the instance once every tenant is detached (close()). */
  private async closeDatabase(): Promise<void> {
    const db = this.db;
    this.db = undefined;
    if (db) await this.closeInstance(await db.catch(() => undefined));
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

  private open(tenantId: string): Promise<OpenTenant> {
    let opening = this.opening.get(tenantId);
    if (!opening) {
      opening = this.openWhenFree(tenantId).finally(() => this.opening.delete(tenantId));
      this.opening.set(tenantId, opening);
    }
    return opening;
  }

  /**
   * Opens the tenant's database, waiting while another process holds its file lock: retries every
   * few tens of milliseconds (so it takes the lock as soon as the holder hands it over) and keeps a
   * wait marker fresh beside the file, which tells the holder someone waits. Gives up as retriable
   * after acquireTimeoutMs.
   */
  private async openWhenFree(tenantId: string): Promise<OpenTenant> {
    const coolDown = (this.coolDownUntil.get(tenantId) ?? 0) - Date.now();
    if (coolDown > 0) await sleep(coolDown);
    this.coolDownUntil.delete(tenantId);
    const marker = this.waitMarker(tenantId);
    let waitStarted: number | undefined;
    let markerTouched = 0;
    let delay = 10;
    for (;;) {
      try {
        const tenant = await this.doOpen(tenantId);
        if (waitStarted !== undefined) {
          const waitedMs = Date.now() - waitStarted;
          this.lockWaitDuration.observe(waitedMs / 1000);
          this.logger.info({ tenantId, waitedMs }, 'took over the tenant DuckDB database from another process');
          // Ours is no longer a reason to hand it back; other waiters refresh theirs at once.
          await fsp.rm(marker, { force: true }).catch(() => undefined);
        }
        return tenant;
      } catch (err) {
        const lockConflict = err instanceof RetriableError && LOCK_CONFLICT.test(duckDbMessage(err.cause));
        if (!lockConflict || this.closed || (waitStarted !== undefined && Date.now() - waitStarted >= this.config.acquireTimeoutMs)) {
          if (waitStarted !== undefined) {
            this.lockWaitDuration.observe((Date.now() - waitStarted) / 1000);
            this.logger.warn({ tenantId, waitedMs: Date.now() - waitStarted, err: duckDbMessage(err) }, 'gave up waiting for the tenant DuckDB database held by another process');
          }
          throw err;
        }
        if (waitStarted === undefined) {
          waitStarted = Date.now();
          this.lockWaits.inc();
          this.logger.info({ tenantId, holder: duckDbMessage(err.cause) }, 'tenant DuckDB database is locked by another process; waiting for it to be handed over');
        }
        if (Date.now() - markerTouched >= WAIT_MARKER_REFRESH_MS) {
          markerTouched = Date.now();
          await fsp.writeFile(marker, `${process.pid}\n`).catch((e: unknown) => this.logger.warn({ err: e, marker }, 'cannot write the DuckDB wait marker'));
        }
        await sleep(Math.random() * delay);
        delay = Math.min(LOCK_RETRY_MAX_DELAY_MS, delay * 2);
      }
    }
  }

  /** `<dir>/<tenantId>.duckdb.wait`: a process waiting for the file lock keeps it fresh. */
  private waitMarker(tenantId: string): string {
    return `${this.tenantFile(tenantId)}.wait`;
  }

  /** True when another process has been waiting for this tenant's file lock in the last moments. */
  private async isWanted(tenant: OpenTenant): Promise<boolean> {
    try {
      const { mtimeMs } = await fsp.stat(this.waitMarker(tenant.tenantId));
      return mtimeMs > tenant.openedAt && Date.now() - mtimeMs < WAIT_MARKER_FRESH_MS;
    } catch {
      return false; // no marker: nobody waits
    }
  }

  /**
   * Closes a database held for maxHoldMs or longer if another process waits for it (after the
   * write in flight), and keeps it closed for a random cool-down so that process gets the lock.
   */
  private async handOverIfWanted(tenant: OpenTenant): Promise<void> {
    const heldMs = Date.now() - tenant.openedAt;
    if (tenant.closing || heldMs < this.config.maxHoldMs || !(await this.isWanted(tenant))) return;
    if (tenant.closing) return;
    this.coolDownUntil.set(tenant.tenantId, Date.now() + HANDOVER_COOL_DOWN_MS * (1 + Math.random()));
    this.handovers.inc();
    this.logger.info({ tenantId: tenant.tenantId, heldMs }, 'another process waits for this tenant DuckDB database: handing it over');
    await this.closeTenant(tenant, 'handed over');
  }

  private async doOpen(tenantId: string): Promise<OpenTenant> {
    const file = this.tenantFile(tenantId);
    const alias = tenantAlias(tenantId);
    await this.ensureDir();
    if (openFiles.has(file)) throw new RetriableError(`${file} is already open in this process (another DuckDbSignalSink?)`);
    openFiles.add(file);
    let latestStoredMs = -Infinity;
    try {
      await this.withConnection(`attaching ${file}`, async (conn) => {
        try {
          await conn.run(`ATTACH ${sqlString(file)} AS "${alias}"`);
        } catch (err) {
          // Still attached under its alias though this sink let it go: its DETACH failed (no
          // connection in time, or out of memory in the checkpoint DETACH makes). Adopt it: this
          // process is its only user (openFiles). Refusing it stopped the tenant for good.
          if (ALREADY_ATTACHED.test(duckDbMessage(err))) this.logger.warn({ tenantId, file }, 'tenant DuckDB database was still attached after a failed detach; using it');
          // Another process holds the file: *IO Error: Could not set lock on file … Conflicting lock is held*.
          else throw new RetriableError(`cannot open DuckDB database ${file}: ${duckDbMessage(err)}`, err);
        }
        try {
          await conn.run(schemaSql(alias));
          // One round trip: whether the table still has the old primary key, and its latest signal
          // time, rounded down to the ms (a stored signal in the same ms as a new one gets looked for).
          const [pk, latest] = (await conn.runAndReadAll(
            `SELECT (SELECT count(*)::INTEGER FROM duckdb_constraints() WHERE database_name = '${alias}' AND schema_name = 'main' AND table_name = 'signals' AND constraint_type = 'PRIMARY KEY'),
                    (SELECT epoch_ms(max(ts)) FROM "${alias}".main.signals)`,
          )).getRowsJS()[0]!;
          if (Number(pk) > 0) await this.dropPrimaryKey(conn, alias, file);
          if (latest !== null && latest !== undefined) latestStoredMs = Number(latest);
        } catch (err) {
          await conn.run(`DETACH DATABASE IF EXISTS "${alias}"`).catch(() => undefined);
          throw new RetriableError(`cannot create the signals table in ${file}: ${duckDbMessage(err)}`, err);
        }
      });
    } catch (err) {
      openFiles.delete(file);
      throw err;
    }
    const tenant: OpenTenant = {
      tenantId,
      file,
      alias,
      openedAt: Date.now(),
      mutex: new Mutex(),
      users: 0,
      lastUsedAt: Date.now(),
      dirty: false,
      lastWrittenAt: 0,
      sources: new Set(),
      latestStoredMs,
    };
    this.tenants.set(tenantId, tenant);
    this.openTenants.set(this.openList().length);
    this.logger.debug({ tenantId, file }, 'attached tenant DuckDB database');
    await this.enforceCapacity(tenant);
    return tenant;
  }

  /**
   * Files made by spanledger before 2026-12-02 have `id UUID PRIMARY KEY`, whose index DuckDB
   * holds in memory while the file is attached (schemaSql): the table is rebuilt once without
   * it, in one transaction, rows in time order (the time range lookups then read fewer blocks).
   */
  private async dropPrimaryKey(conn: DuckDBConnection, alias: string, file: string): Promise<void> {
    const started = Date.now();
    await conn.run('BEGIN TRANSACTION');
    try {
      await conn.run(`DROP TABLE IF EXISTS "${alias}".main.signals_rebuilt`);
      await conn.run(schemaSql(alias, 'signals_rebuilt'));
      const rows = (await conn.run(`INSERT INTO "${alias}".main.signals_rebuilt SELECT * FROM "${alias}".main.signals ORDER BY ts`)).rowsChanged;
      await conn.run(`DROP TABLE "${alias}".main.signals`);
      await conn.run(`ALTER TABLE "${alias}".main.signals_rebuilt RENAME TO signals`);
      await conn.run('COMMIT');
      await conn.run(`CHECKPOINT "${alias}"`);
      this.logger.info({ file, rows, ms: Date.now() - started }, 'rebuilt a tenant signals table without its primary key (made by an earlier spanledger)');
    } catch (err) {
      await conn.run('ROLLBACK').catch(() => undefined);
      throw err;
    }
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

  private async sweep(): Promise<void> {
    const now = Date.now();
    const idle = this.openList().filter((t) => t.users === 0 && now - t.lastUsedAt >= this.config.idleTimeoutMs);
    await Promise.all(idle.map((t) => this.closeTenant(t, 'idle')));
    await Promise.all(this.openList().map((t) => this.handOverIfWanted(t)));
    await this.enforceCapacity();
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
          await this.withConnection(`detaching ${tenant.file}`, (conn) => conn.run(`DETACH DATABASE IF EXISTS "${tenant.alias}"`));
        } catch (err) {
          this.logger.warn({ tenantId: tenant.tenantId, err }, 'detaching the tenant DuckDB database failed');
        } finally {
          release();
          openFiles.delete(tenant.file);
          if (this.tenants.get(tenant.tenantId) === tenant) this.tenants.delete(tenant.tenantId);
          this.openTenants.set(this.openList().length);
          this.logger.debug({ tenantId: tenant.tenantId, why }, 'detached tenant DuckDB database');
        }
      })();
    }
    return tenant.closing;
  }

  /** Open tenants not being closed, least recently used first. */
  private openList(): OpenTenant[] {
    return [...this.tenants.values()].filter((t) => !t.closing);
  }

  private touch(tenant: OpenTenant): void {
    tenant.lastUsedAt = Date.now();
    this.tenants.delete(tenant.tenantId);
    this.tenants.set(tenant.tenantId, tenant);
  }

  private ensureDir(): Promise<void> {
    this.dirReady ??= fsp.mkdir(this.root, { recursive: true }).then(
      () => undefined,
      (err: unknown) => {
        this.dirReady = undefined;
        throw new RetriableError(`cannot create ${this.root}: ${(err as Error).message}`, err);
      },
    );
    return this.dirReady;
  }
}

/**
 * Adds the `topic:partition` of the records to `sources`: one string per run of records from one
 * partition (a flush's records all come from one), not one per record.
 */
function addSources(sources: Set<string>, records: ReadonlyArray<{ source: SourcePosition }>): Set<string> {
  let topic: string | undefined;
  let partition: number | undefined;
  for (const { source } of records) {
    if (source.topic === topic && source.partition === partition) continue;
    topic = source.topic;
    partition = source.partition;
    sources.add(`${topic}:${partition}`);
  }
  return sources;
}

function sameContent(a: StagedRow, b: StagedRow): boolean {
  const x = a.signal;
  const y = b.signal;
  return x.ruleId === y.ruleId && x.traceId === y.traceId && x.timestamp === y.timestamp && x.severity === y.severity
    && x.message === y.message && a.metadataJson === b.metadataJson;
}

function resolveConfig(partial: Partial<DuckDbSinkConfig>): Required<DuckDbSinkConfig> {
  const defined = Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined));
  const config = { ...DEFAULT_DUCKDB_SINK_CONFIG, ...defined } as Required<DuckDbSinkConfig>;
  for (const key of ['maxRowsPerTransaction', 'maxOpenTenants', 'idleTimeoutMs', 'threads', 'connections', 'acquireTimeoutMs', 'maxHoldMs'] as const) {
    if (!Number.isInteger(config[key]) || config[key] <= 0) throw new ConfigError(`DuckDB sink: ${key} must be a positive integer, got ${config[key]}`);
  }
  if (!(config.checkpointAtMemoryFraction >= 0 && config.checkpointAtMemoryFraction < 1)) throw new ConfigError(`DuckDB sink: checkpointAtMemoryFraction must be in [0, 1), got ${config.checkpointAtMemoryFraction}`);
  if (!Number.isInteger(config.appendMaxRows) || config.appendMaxRows < 0) throw new ConfigError(`DuckDB sink: appendMaxRows must be a non-negative integer, got ${config.appendMaxRows}`);
  if (typeof config.dir !== 'string' || config.dir.length === 0) throw new ConfigError('DuckDB sink: dir must be a non-empty path');
  if (!MEMORY_LIMIT.test(config.memoryLimit)) {
    throw new ConfigError(`DuckDB sink: memoryLimit must look like 256MB, got ${config.memoryLimit}`);
  }
  if (!MEMORY_LIMIT.test(config.checkpointWalSize)) {
    throw new ConfigError(`DuckDB sink: checkpointWalSize must look like 256KB, got ${config.checkpointWalSize}`);
  }
  return config;
}

/** Bytes of a DuckDB memory size as DuckDB reads it (KB/MB/GB/TB powers of 1000, KiB/… of 1024). */
export function memoryBytes(size: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT])(i?)B$/i.exec(size.trim());
  if (!m) throw new ConfigError(`not a memory size: ${size}`);
  const power = 'KMGT'.indexOf(m[2]!.toUpperCase()) + 1;
  return Number(m[1]) * (m[3] ? 1024 : 1000) ** power;
}

/** A DuckDB memory size: 256MB, 1.5GiB, … */
export const MEMORY_LIMIT = /^\d+(\.\d+)?\s*[KMGT]i?B$/i;

/**
 * One data chunk per connection and use, reset and refilled for every write (the appender copies
 * its rows). A native chunk holds 2,048 rows of every column (~0.35 MB here) whatever its row
 * count and is freed only when the JS wrapper is collected, which the small wrappers do not
 * hurry: a chunk per write held ~120 MiB more RSS over 2,500 small writes (README).
 */
const appendChunks = new WeakMap<DuckDBConnection, DuckDBDataChunk>();
const stagingChunks = new WeakMap<DuckDBConnection, DuckDBDataChunk>();
/**
 * Columns 2–9 of a row, the same in the staging table and in the fast path's chunk (rule_id,
 * trace_id, ts, severity, message, metadata, kafka_partition, kafka_offset); the two differ only
 * in columns 0–1 (staging: idx, id; fast path: id, tenant_id) and the fast path's ingested_at.
 */
function setSharedColumns(cols: unknown[][], i: number, r: StagedRow): void {
  const s = r.signal;
  cols[2]![i] = s.ruleId;
  cols[3]![i] = s.traceId;
  cols[4]![i] = s.timestamp;
  cols[5]![i] = s.severity;
  cols[6]![i] = s.message;
  cols[7]![i] = r.metadataJson;
  cols[8]![i] = r.partition;
  cols[9]![i] = r.offset;
}

function reusableChunk(cache: WeakMap<DuckDBConnection, DuckDBDataChunk>, conn: DuckDBConnection, types: typeof APPEND_TYPES, rows: number): DuckDBDataChunk {
  let chunk = cache.get(conn);
  if (!chunk) {
    chunk = DuckDBDataChunk.create(types);
    cache.set(conn, chunk);
  }
  chunk.reset();
  chunk.rowCount = rows;
  return chunk;
}

/** A string literal for SQL. */
function sqlString(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Returns the metric already registered under `name` (several sinks may share a registry). */
function metric<M>(registry: Registry, name: string, create: () => M): M {
  return (registry.getSingleMetric(name) as M | undefined) ?? create();
}
