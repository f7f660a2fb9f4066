import { Counter, Gauge, Histogram } from 'prom-client';
import type { Registry } from 'prom-client';

/** Returns the metric already registered under `name` (several sinks may share a registry). */
function metric<M>(registry: Registry, name: string, create: () => M): M {
  return (registry.getSingleMetric(name) as M | undefined) ?? create();
}

/** The DuckDB sink's metrics (README, *Metrics*), shared by its parts. */
export function duckDbMetrics(registry: Registry) {
  const registers = [registry];
  return {
    transactions: metric(registry, 'spanledger_duckdb_transactions_total', () => new Counter({
      name: 'spanledger_duckdb_transactions_total',
      help: 'DuckDB write transactions by outcome (committed, rolled_back)',
      labelNames: ['outcome'] as const,
      registers,
    })),
    rowsWritten: metric(registry, 'spanledger_duckdb_rows_written_total', () => new Counter({
      name: 'spanledger_duckdb_rows_written_total',
      help: 'Signal rows newly inserted into DuckDB (replays of stored ids are not)',
      registers,
    })),
    rowsDuplicate: metric(registry, 'spanledger_duckdb_rows_duplicate_total', () => new Counter({
      name: 'spanledger_duckdb_rows_duplicate_total',
      help: 'Signal rows already stored with the same content (replays), not inserted again',
      registers,
    })),
    rowsRejected: metric(registry, 'spanledger_duckdb_rows_rejected_total', () => new Counter({
      name: 'spanledger_duckdb_rows_rejected_total',
      help: 'Signal rows rejected for good by the DuckDB sink, by error class',
      labelNames: ['reason'] as const,
      registers,
    })),
    transactionDuration: metric(registry, 'spanledger_duckdb_transaction_duration_seconds', () => new Histogram({
      name: 'spanledger_duckdb_transaction_duration_seconds',
      help: 'Duration of one DuckDB write transaction (BEGIN to COMMIT or ROLLBACK)',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    })),
    openTenants: metric(registry, 'spanledger_duckdb_open_tenants', () => new Gauge({
      name: 'spanledger_duckdb_open_tenants',
      help: 'Tenant DuckDB databases currently open in this process',
      registers,
    })),
    lockWaits: metric(registry, 'spanledger_duckdb_lock_waits_total', () => new Counter({
      name: 'spanledger_duckdb_lock_waits_total',
      help: 'Times a write found its tenant database locked by another process and waited for it',
      registers,
    })),
    lockWaitDuration: metric(registry, 'spanledger_duckdb_lock_wait_seconds', () => new Histogram({
      name: 'spanledger_duckdb_lock_wait_seconds',
      help: 'How long each wait for a tenant database locked by another process lasted',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60],
      registers,
    })),
    handovers: metric(registry, 'spanledger_duckdb_handovers_total', () => new Counter({
      name: 'spanledger_duckdb_handovers_total',
      help: 'Tenant databases closed after DUCKDB_MAX_HOLD_MS because another process was waiting for them',
      registers,
    })),
    instancesInvalidated: metric(registry, 'spanledger_duckdb_instances_invalidated_total', () => new Counter({
      name: 'spanledger_duckdb_instances_invalidated_total',
      help: 'DuckDB instances replaced because DuckDB invalidated them (a FATAL error, e.g. a rollback out of memory)',
      registers,
    })),
    checkpoints: metric(registry, 'spanledger_duckdb_checkpoints_total', () => new Counter({
      name: 'spanledger_duckdb_checkpoints_total',
      help: 'Tenant databases checkpointed because DuckDB memory passed DUCKDB_CHECKPOINT_AT_MEMORY_FRACTION of its limit',
      registers,
    })),
    coalescedWrites: metric(registry, 'spanledger_duckdb_coalesced_writes_total', () => new Counter({
      name: 'spanledger_duckdb_coalesced_writes_total',
      help: 'write() calls for one tenant merged with others queued at the same time into one batch',
      registers,
    })),
    memoryUsed: metric(registry, 'spanledger_duckdb_memory_bytes', () => new Gauge({
      name: 'spanledger_duckdb_memory_bytes',
      help: 'Memory of the worker\'s DuckDB instance by what holds it (duckdb_memory() tags: BASE_TABLE, ART_INDEX, …; their sum is bounded by DUCKDB_MEMORY_LIMIT), sampled every 50 writes',
      labelNames: ['tag'] as const,
      registers,
    })),
  };
}

export type DuckDbMetrics = ReturnType<typeof duckDbMetrics>;
