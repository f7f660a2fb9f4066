import { DuckDBDataChunk, DuckDBTimestampValue } from '@duckdb/node-api';
import type { DuckDBConnection } from '@duckdb/node-api';
import type { Logger } from 'pino';
import { RecordRejectedError } from '../../errors.js';
import { signalTime } from '../../model/signal.js';
import type { Signal } from '../../model/signal.js';
import { classifyDuckDbError, duckDbError, duckDbMessage, rowRejection } from './classify.js';
import type { DuckDbSinkConfig } from './config.js';
import type { DuckDbMetrics } from './metrics.js';
import { APPEND_TYPES, CHUNK_ROWS, conflictSql, insertSql, STAGING_SQL, STAGING_TABLE, STAGING_TYPES, storedIdAmongSql, timeRange } from './sql.js';
import type { OpenTenant } from './tenant-registry.js';

/** One signal of a tenant's batch and the partition it came from; its index in the batch is its `idx`. */
export interface BatchRow {
  readonly signal: Signal;
  readonly partition: number;
  readonly offset: bigint;
}

interface StagedRow {
  /** Index of the row in the tenant's batch. */
  idx: number;
  signal: Signal;
  metadataJson: string;
  partition: number;
  offset: bigint;
  /** The signal time, whole milliseconds since the epoch (signalTime). */
  timeMs: number;
}

interface WriteStats {
  duplicates: number;
}

/**
 * JSON.stringify escapes a lone UTF-16 surrogate as `\udXXX` (paired ones are written as they
 * are), which DuckDB's JSON cast refuses but the appender would store unchecked.
 */
const LONE_SURROGATE_ESCAPE = /\\ud[89a-f][0-9a-f]{2}/i;

/** The appender's write met a stored id: rolled back, the write takes the staged path. */
class StoredIdFound extends Error {}

/**
 * One data chunk per connection and use, reset and refilled for every write (the appender copies
 * its rows). A native chunk holds 2,048 rows of every column (~0.35 MB here) whatever its row
 * count and is freed only when the JS wrapper is collected, which the small wrappers do not
 * hurry: a chunk per write held ~120 MiB more RSS over 2,500 small writes (README).
 */
const appendChunks = new WeakMap<DuckDBConnection, DuckDBDataChunk>();
const stagingChunks = new WeakMap<DuckDBConnection, DuckDBDataChunk>();

/**
 * The write path of one tenant's batch, in the tenant's turn with a connection (README, *Write
 * path and idempotency*): rows are checked in JS and repeats within the batch dropped; a small
 * batch goes through an appender straight into the table (the fast path); otherwise (or when the
 * fast path fails) the rows are appended column-wise into the connection's TEMP staging table and
 * moved with `INSERT … SELECT` (skipping ids stored among the signals of the same times) in
 * transactions of at most maxRowsPerTransaction rows. A transaction failing on row data is rolled
 * back and bisected down to single rows, which are rejected; the same id with other content is
 * rejected as DuckDbConflict.
 */
export class TenantBatchWriter {
  constructor(
    private readonly config: Pick<DuckDbSinkConfig, 'maxRowsPerTransaction' | 'appendMaxRows'>,
    private readonly logger: Logger,
    private readonly metrics: DuckDbMetrics,
  ) {}

  /** Writes one (possibly coalesced) batch of a tenant; returns the rejects by index in `rows`. */
  async write(conn: DuckDBConnection, tenant: OpenTenant, rows: ReadonlyArray<BatchRow>): Promise<Map<number, RecordRejectedError>> {
    const rejected = new Map<number, RecordRejectedError>();
    const { staged, duplicates } = prepare(tenant.tenantId, rows, rejected);
    const stats: WriteStats = { duplicates };
    if (staged.length > 0) {
      const fast = staged.length <= this.config.appendMaxRows && !staged.some((r) => LONE_SURROGATE_ESCAPE.test(r.metadataJson))
        ? await this.append(conn, tenant, staged)
        : 'skipped';
      if (fast !== 'committed') {
        await stage(conn, tenant.tenantId, staged);
        const max = this.config.maxRowsPerTransaction;
        for (let lo = 0; lo < staged.length; lo += max) {
          await this.insertRange(conn, tenant, staged, lo, Math.min(staged.length, lo + max), rejected, stats);
        }
      }
    }
    this.metrics.rowsDuplicate.inc(stats.duplicates);
    for (const err of rejected.values()) this.metrics.rowsRejected.inc({ reason: err.errorClass });
    if (rejected.size > 0) {
      this.logger.warn({ tenantId: tenant.tenantId, records: rows.length, rejected: rejected.size }, 'DuckDB rejected signals');
    }
    return rejected;
  }

  /**
   * The fast path for small writes: one data chunk appended straight to the tenant's table inside
   * one explicit transaction. Atomic both ways (tested): a value the appender cannot cast fails
   * appendDataChunk for the whole chunk (nothing is buffered), and a stored id (found after the
   * append, inside the transaction) rolls it back. Either failure returns without having written
   * anything and the caller takes the staged path (a stored id: its insert skips stored ids and
   * checks their content; a bad value: it bisects). Metadata with a lone surrogate never comes
   * here: the appender takes JSON as VARCHAR unchecked.
   */
  private async append(conn: DuckDBConnection, tenant: OpenTenant, rows: StagedRow[]): Promise<'committed' | 'failed'> {
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
    const endTimer = this.metrics.transactionDuration.startTimer();
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
      // replays from conflicts.
      if (range.minMs <= tenant.latestStoredMs) {
        const twice = await conn.runAndReadAll(storedIdAmongSql(alias, range));
        if (twice.currentRowCount > 0) throw new StoredIdFound();
      }
      await conn.run('COMMIT');
      tenant.latestStoredMs = Math.max(tenant.latestStoredMs, range.maxMs);
    } catch (err) {
      if (began) await conn.run('ROLLBACK').catch(() => undefined); // "no transaction is active" is fine
      endTimer();
      this.metrics.transactions.inc({ outcome: 'rolled_back' });
      this.logger.debug({ alias, rows: n, err: duckDbMessage(err) }, 'DuckDB append failed; staged path');
      return 'failed';
    }
    endTimer();
    this.metrics.transactions.inc({ outcome: 'committed' });
    this.metrics.rowsWritten.inc(n);
    return 'committed';
  }

  /**
   * One transaction for staged[lo, hi). On a row-data error: roll back, split in halves, retry
   * each, down to single rows, which are rejected. On any other error: the classifier's error.
   */
  private async insertRange(conn: DuckDBConnection, tenant: OpenTenant, staged: StagedRow[], lo: number, hi: number, rejected: Map<number, RecordRejectedError>, stats: WriteStats): Promise<void> {
    const { alias, tenantId } = tenant;
    const first = staged[lo]!.idx;
    const last = staged[hi - 1]!.idx;
    const count = hi - lo;
    const endTimer = this.metrics.transactionDuration.startTimer();
    let conflicts: number[] = [];
    let inserted: number;
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
      this.metrics.transactions.inc({ outcome: 'rolled_back' });
      if (classifyDuckDbError(err) !== 'row') throw duckDbError(`DuckDB write for tenant ${tenantId} failed`, err);
      if (count === 1) {
        rejected.set(staged[lo]!.idx, rowRejection(staged[lo]!.signal.id, err));
        return;
      }
      this.logger.debug({ tenantId, rows: count, err: duckDbMessage(err) }, 'DuckDB transaction failed on row data; bisecting');
      const mid = lo + Math.floor(count / 2);
      await this.insertRange(conn, tenant, staged, lo, mid, rejected, stats);
      await this.insertRange(conn, tenant, staged, mid, hi, rejected, stats);
      return;
    }
    endTimer();
    this.metrics.transactions.inc({ outcome: 'committed' });
    this.metrics.rowsWritten.inc(inserted);
    stats.duplicates += count - inserted - conflicts.length;
    if (conflicts.length > 0) {
      const byIdx = new Map(staged.slice(lo, hi).map((r) => [r.idx, r]));
      for (const idx of conflicts) {
        const id = byIdx.get(idx)?.signal.id ?? `#${idx}`;
        rejected.set(idx, new RecordRejectedError('DuckDbConflict', `signal ${id} is already stored with different content`));
      }
    }
  }
}

/** Checks rows in JS and drops repeats within the batch; returns the rows to stage, in batch order. */
function prepare(tenantId: string, rows: ReadonlyArray<BatchRow>, rejected: Map<number, RecordRejectedError>): { staged: StagedRow[]; duplicates: number } {
  const staged: StagedRow[] = [];
  const firstById = new Map<string, StagedRow>();
  let duplicates = 0;
  rows.forEach(({ signal, partition, offset }, idx) => {
    if (signal.tenantId !== tenantId) {
      rejected.set(idx, new RecordRejectedError('TenantMismatch', `signal ${signal.id} has tenantId ${signal.tenantId}, written as tenant ${tenantId}`));
      return;
    }
    let timeMs: number;
    let metadataJson: string;
    try {
      const time = signalTime(signal);
      if (!time.ok) throw new Error(`timestamp ${JSON.stringify(signal.timestamp)} ${time.reason}`);
      timeMs = time.epochMs;
      metadataJson = JSON.stringify(signal.metadata);
      if (typeof metadataJson !== 'string') throw new Error('metadata does not serialize to JSON');
    } catch (err) {
      rejected.set(idx, new RecordRejectedError('DuckDbRowRejected', `signal ${signal.id}: ${(err as Error).message}`, err));
      return;
    }
    const row: StagedRow = { idx, signal, metadataJson, partition, offset, timeMs };
    const first = firstById.get(signal.id);
    if (first) {
      if (sameContent(first, row)) duplicates++;
      else rejected.set(idx, new RecordRejectedError('DuckDbConflict', `signal ${signal.id} appears twice in the batch with different content (first at index ${first.idx})`));
      return;
    }
    firstById.set(signal.id, row);
    staged.push(row);
  });
  return { staged, duplicates };
}

/** Replaces the connection's staging table contents with `rows`, column-wise in data chunks. */
async function stage(conn: DuckDBConnection, tenantId: string, rows: StagedRow[]): Promise<void> {
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
    throw duckDbError(`staging signals for tenant ${tenantId} failed`, err);
  }
}

function sameContent(a: StagedRow, b: StagedRow): boolean {
  const x = a.signal;
  const y = b.signal;
  return x.ruleId === y.ruleId && x.traceId === y.traceId && x.timestamp === y.timestamp && x.severity === y.severity
    && x.message === y.message && a.metadataJson === b.metadataJson;
}

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
