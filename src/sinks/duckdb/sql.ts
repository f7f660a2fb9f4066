import { BIGINT, INTEGER, TIMESTAMP, VARCHAR } from '@duckdb/node-api';
import type { DuckDBConnection } from '@duckdb/node-api';

// The sink's SQL text. It interpolates only a tenant id checked with isCanonicalUuid, the alias
// derived from it, file paths through sqlString, and numbers and timestamps we computed.

export const STAGING_TABLE = 'spanledger_staging';

/**
 * Block size of databases this sink creates (DuckDB's default is 256 KiB). Every written, not yet
 * checkpointed database pins a few blocks (appended row groups) that the buffer manager cannot
 * evict: with 500 tenants attached to one instance, 256 KiB blocks pinned ~2 MB per tenant and ran
 * a 256MB instance out of memory; 16 KiB blocks pin ~0.2 MB (README). Files created with another
 * block size are opened with theirs.
 */
export const BLOCK_SIZE = 16_384;

/** The name a tenant's database is attached under: `t_` and the UUID's hex digits. */
export function tenantAlias(tenantId: string): string {
  return `t_${tenantId.replace(/-/g, '')}`;
}

/** A string literal for SQL. */
export function sqlString(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/**
 * The signals table. No PRIMARY KEY: DuckDB keeps a table's ART index in memory for as long as
 * the database is attached (checkpoints do not release it, ~50 bytes a row), so 500 tenants'
 * indexes outgrew any memory_limit under sustained load and DuckDB failed (make bench
 * --sustained). A signal is stored once because every write first looks for its id among the
 * stored signals of the same time (see TimeRange): the time column's zone maps keep that lookup
 * to the few recent blocks, however large the table grows.
 */
export const schemaSql = (alias: string, table = 'signals'): string => `
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
 * One round trip when a tenant is attached: whether its table still has the old primary key,
 * and its latest signal time, rounded down to the ms.
 */
export const attachedTableSql = (alias: string): string =>
  `SELECT (SELECT count(*)::INTEGER FROM duckdb_constraints() WHERE database_name = '${alias}' AND schema_name = 'main' AND table_name = 'signals' AND constraint_type = 'PRIMARY KEY'),
          (SELECT epoch_ms(max(ts)) FROM "${alias}".main.signals)`;

/**
 * Per-connection staging table. Everything is VARCHAR so that appending can never fail on data:
 * the casts (UUID, TIMESTAMPTZ, JSON) happen in the INSERT ... SELECT, where a failing row can
 * be found by bisecting on `idx` (the row's index in the tenant's batch).
 */
export const STAGING_SQL = `
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
export const STAGING_TYPES = [INTEGER, VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, INTEGER, BIGINT];
/** Column types of the appender fast path: the table's, with VARCHAR where DuckDB casts (UUID, TIMESTAMPTZ, JSON). */
export const APPEND_TYPES = [VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, INTEGER, BIGINT, TIMESTAMP];
/** DuckDB's vector size: the most rows one data chunk holds. */
export const CHUNK_ROWS = 2048;

/** A half-open range [from, to) of signal times, as SQL TIMESTAMPTZ literals. */
export interface TimeRange {
  from: string;
  to: string;
  minMs: number;
  maxMs: number;
}

/**
 * The times of some rows (whole ms since the epoch). A replayed signal has the time of the stored
 * one (rule workers derive both id and time from the trace), so its id is looked for only among
 * stored signals of these times. Times are whole milliseconds, hence the end one millisecond on.
 */
export function timeRange(rows: ReadonlyArray<{ timeMs: number }>): TimeRange {
  let min = Infinity;
  let max = -Infinity;
  for (const r of rows) {
    if (r.timeMs < min) min = r.timeMs;
    if (r.timeMs > max) max = r.timeMs;
  }
  return { from: `TIMESTAMPTZ '${new Date(min).toISOString()}'`, to: `TIMESTAMPTZ '${new Date(max + 1).toISOString()}'`, minMs: min, maxMs: max };
}

/** Inserts the staged rows whose id is not stored among the signals of their times. */
export function insertSql(alias: string, tenantId: string, firstIdx: number, lastIdx: number, range: TimeRange | undefined): string {
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
export function conflictSql(alias: string, tenantId: string, firstIdx: number, lastIdx: number, range: TimeRange): string {
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

/**
 * After the appender's rows went into the transaction: an id seen twice among the signals of
 * these times is a stored one (the batch has no repeated id), found with no list of the ids to
 * parse (measured: 1.4 ms against 3.2 ms for an IN list of 64 ids).
 */
export const storedIdAmongSql = (alias: string, range: TimeRange): string =>
  `SELECT 1 FROM "${alias}".main.signals t WHERE t.ts >= ${range.from} AND t.ts < ${range.to} GROUP BY t.id HAVING count(*) > 1 LIMIT 1`;

export const countBySeveritySql = (alias: string): string => `SELECT severity, count(*)::INTEGER AS n FROM "${alias}".main.signals GROUP BY severity`;
export const ATTACHED_SQL = `SELECT database_name FROM duckdb_databases() WHERE NOT internal AND database_name <> 'memory' ORDER BY 1`;
export const INSTANCE_SETTINGS_SQL = `SELECT current_setting('memory_limit'), current_setting('threads')::INTEGER`;

/** DuckDB's memory by what holds it (duckdb_memory() tags), bytes. */
export async function memoryByTag(conn: DuckDBConnection): Promise<Record<string, number>> {
  const rows = (await conn.runAndReadAll('SELECT tag, memory_usage_bytes::BIGINT FROM duckdb_memory()')).getRowsJS();
  return Object.fromEntries(rows.map(([tag, bytes]) => [String(tag), Number(bytes)]));
}

/**
 * Files made by spanledger before 2026-12-02 have `id UUID PRIMARY KEY`, whose index DuckDB holds
 * in memory while the file is attached (schemaSql): the table is rebuilt once without it, in one
 * transaction, rows in time order (the time range lookups then read fewer blocks). Returns the rows copied.
 */
export async function dropLegacyPrimaryKey(conn: DuckDBConnection, alias: string): Promise<number> {
  await conn.run('BEGIN TRANSACTION');
  try {
    await conn.run(`DROP TABLE IF EXISTS "${alias}".main.signals_rebuilt`);
    await conn.run(schemaSql(alias, 'signals_rebuilt'));
    const rows = (await conn.run(`INSERT INTO "${alias}".main.signals_rebuilt SELECT * FROM "${alias}".main.signals ORDER BY ts`)).rowsChanged;
    await conn.run(`DROP TABLE "${alias}".main.signals`);
    await conn.run(`ALTER TABLE "${alias}".main.signals_rebuilt RENAME TO signals`);
    await conn.run('COMMIT');
    await conn.run(`CHECKPOINT "${alias}"`);
    return rows;
  } catch (err) {
    await conn.run('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
