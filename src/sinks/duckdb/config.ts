import type { Parsed, signalSettings } from '../../config/settings.js';

/**
 * What the DuckDB sink is configured with: plain values, each from one setting of the signal
 * worker (src/config/settings.ts holds their defaults, validation and descriptions; the README
 * why each default is what it is). The sink checks nothing again.
 */
export interface DuckDbSinkConfig {
  /** DUCKDB_DIR: one `<tenantId>.duckdb` file per tenant; nothing is written outside it. */
  dir: string;
  /** DUCKDB_MAX_ROWS_PER_TXN: a tenant's batch is split into transactions of at most this many rows. */
  maxRowsPerTransaction: number;
  /** DUCKDB_MAX_OPEN_TENANTS: most databases attached at once; the least recently used idle one is detached first. */
  maxOpenTenants: number;
  /** DUCKDB_IDLE_TIMEOUT_MS: a tenant database unused this long is detached (its file lock released). */
  idleTimeoutMs: number;
  /** DUCKDB_THREADS of the sink's one DuckDB instance. */
  threads: number;
  /** DUCKDB_MEMORY_LIMIT of that instance: one buffer pool for every attached tenant. */
  memoryLimit: string;
  /** DUCKDB_CONNECTIONS: how many tenants are written at the same time (a transaction writes one attached database). */
  connections: number;
  /** DUCKDB_ACQUIRE_TIMEOUT_MS: longest wait for a tenant's turn, a connection, or a file lock another process holds. */
  acquireTimeoutMs: number;
  /** DUCKDB_MAX_HOLD_MS: a database held this long is handed over once another process waits for its file lock. */
  maxHoldMs: number;
  /** DUCKDB_APPEND_MAX_ROWS: batches of at most this many new rows take the appender fast path (0: never). */
  appendMaxRows: number;
  /** DUCKDB_CHECKPOINT_AT_MEMORY_FRACTION: checkpoint written tenants above this fraction of memoryLimit (0: never). */
  checkpointAtMemoryFraction: number;
  /** DUCKDB_CHECKPOINT_WAL_SIZE: DuckDB's checkpoint_threshold for every attached database. */
  checkpointWalSize: string;
}

/** The sink's config from the signal worker's resolved settings. */
export function duckDbSinkConfig(signals: Parsed<typeof signalSettings>): DuckDbSinkConfig {
  return {
    dir: signals.duckdbDir,
    maxRowsPerTransaction: signals.duckdbMaxRowsPerTxn,
    maxOpenTenants: signals.duckdbMaxOpenTenants,
    idleTimeoutMs: signals.duckdbIdleTimeoutMs,
    maxHoldMs: signals.duckdbMaxHoldMs,
    acquireTimeoutMs: signals.duckdbAcquireTimeoutMs,
    memoryLimit: signals.duckdbMemoryLimit,
    threads: signals.duckdbThreads,
    connections: signals.duckdbConnections,
    appendMaxRows: signals.duckdbAppendMaxRows,
    checkpointAtMemoryFraction: signals.duckdbCheckpointAtMemoryFraction,
    checkpointWalSize: signals.duckdbCheckpointWalSize,
  };
}
