import { Counter, Gauge, Histogram } from 'prom-client';
import type { Registry } from 'prom-client';

/** Returns the metric already registered under `name` (several sinks may share a registry). */
function metric<M>(registry: Registry, name: string, create: () => M): M {
  return (registry.getSingleMetric(name) as M | undefined) ?? create();
}

/** The DuckDB sink's metrics (README, *Metrics*), shared by its parts. */
export function duckDbMetrics(registry: Registry) {
  const registers = [registry];
  const counter = <L extends string = never>(name: string, help: string, labelNames: readonly L[] = []) =>
    metric(registry, name, () => new Counter<L>({ name, help, labelNames, registers }));
  const gauge = <L extends string = never>(name: string, help: string, labelNames: readonly L[] = []) =>
    metric(registry, name, () => new Gauge<L>({ name, help, labelNames, registers }));
  const histogram = (name: string, help: string, buckets: number[]) => metric(registry, name, () => new Histogram({ name, help, buckets, registers }));
  return {
    transactions: counter('spanledger_duckdb_transactions_total', 'DuckDB write transactions by outcome (committed, rolled_back)', ['outcome']),
    rowsWritten: counter('spanledger_duckdb_rows_written_total', 'Signal rows newly inserted into DuckDB (replays of stored ids are not)'),
    rowsDuplicate: counter('spanledger_duckdb_rows_duplicate_total', 'Signal rows already stored with the same content (replays), not inserted again'),
    rowsRejected: counter('spanledger_duckdb_rows_rejected_total', 'Signal rows rejected for good by the DuckDB sink, by error class', ['reason']),
    transactionDuration: histogram(
      'spanledger_duckdb_transaction_duration_seconds',
      'Duration of one DuckDB write transaction (BEGIN to COMMIT or ROLLBACK)',
      [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    ),
    openTenants: gauge('spanledger_duckdb_open_tenants', 'Tenant DuckDB databases currently open in this process'),
    lockWaits: counter('spanledger_duckdb_lock_waits_total', 'Times a write found its tenant database locked by another process and waited for it'),
    lockWaitDuration: histogram(
      'spanledger_duckdb_lock_wait_seconds',
      'How long each wait for a tenant database locked by another process lasted',
      [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60],
    ),
    handovers: counter('spanledger_duckdb_handovers_total', 'Tenant databases closed after DUCKDB_MAX_HOLD_MS because another process was waiting for them'),
    instancesInvalidated: counter(
      'spanledger_duckdb_instances_invalidated_total',
      'DuckDB instances replaced because DuckDB invalidated them (a FATAL error, e.g. a rollback out of memory)',
    ),
    checkpoints: counter(
      'spanledger_duckdb_checkpoints_total',
      'Tenant databases checkpointed because DuckDB memory passed DUCKDB_CHECKPOINT_AT_MEMORY_FRACTION of its limit',
    ),
    coalescedWrites: counter('spanledger_duckdb_coalesced_writes_total', 'write() calls for one tenant merged with others queued at the same time into one batch'),
    memoryUsed: gauge(
      'spanledger_duckdb_memory_bytes',
      'Memory of the worker\'s DuckDB instance by what holds it (duckdb_memory() tags: BASE_TABLE, ART_INDEX, …; their sum is bounded by DUCKDB_MEMORY_LIMIT), sampled every 50 writes',
      ['tag'],
    ),
  };
}

export type DuckDbMetrics = ReturnType<typeof duckDbMetrics>;
