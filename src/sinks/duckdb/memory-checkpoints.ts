import type { Logger } from 'pino';
import { InvariantError } from '../../errors.js';
import { MEMORY_SIZE } from '../../config/settings.js';
import type { DuckDbSinkConfig } from './config.js';
import type { DuckDbMetrics } from './metrics.js';
import { memoryByTag } from './sql.js';
import type { TenantRegistry } from './tenant-registry.js';

/** Committed writes between two looks at DuckDB's memory (duckdb_memory()). */
const CHECKPOINT_CHECK_EVERY = 50;

/** Bytes of a DuckDB memory size as DuckDB reads it (KB/MB/GB/TB powers of 1000, KiB/… of 1024). */
export function memoryBytes(size: string): number {
  const m = MEMORY_SIZE.exec(size.trim());
  if (!m) throw new InvariantError(`not a memory size (the settings check them): ${size}`);
  const power = 'KMGT'.indexOf(m[2]!.toUpperCase()) + 1;
  return Number(m[1]) * (m[3] ? 1024 : 1000) ** power;
}

/**
 * Checkpoints under memory pressure (README): a written, not yet checkpointed database pins
 * ~0.5 MB that DuckDB cannot evict, so when DuckDB's buffer-managed memory passes
 * checkpointAtMemoryFraction of memoryLimit (looked at every CHECKPOINT_CHECK_EVERY committed
 * writes, and at once after an out-of-memory error), written tenants are checkpointed, least
 * recently written first, until it is below three quarters of that. One run at a time, beside
 * the writes; each checkpoint takes the tenant's turn like a write.
 */
export class MemoryCheckpoints {
  private writesSinceCheck = 0;
  private running: Promise<void> | undefined;

  constructor(
    private readonly config: Pick<DuckDbSinkConfig, 'memoryLimit' | 'checkpointAtMemoryFraction'>,
    private readonly tenants: TenantRegistry,
    private readonly logger: Logger,
    private readonly metrics: DuckDbMetrics,
  ) {}

  /** After a committed write (`now`: after DuckDB ran out of memory, or every retry fails the same way). */
  afterWrite(now: boolean): void {
    if (this.config.checkpointAtMemoryFraction <= 0 || this.running) return;
    if (++this.writesSinceCheck >= CHECKPOINT_CHECK_EVERY || now) {
      this.writesSinceCheck = 0;
      this.running = this.checkpointUnderPressure()
        .catch((err: unknown) => this.logger.warn({ err }, 'checkpointing DuckDB tenants under memory pressure failed'))
        .finally(() => (this.running = undefined));
    }
  }

  /** The run in progress, if any (close() waits for it). */
  async settled(): Promise<void> {
    await this.running;
  }

  /** Buffer-managed memory of the instance, bytes (duckdb_memory(), which memory_limit bounds). */
  private async duckDbMemory(): Promise<number> {
    // By tag, so that an operator (and the bench) sees whether tables, indexes or spills fill the limit.
    const byTag = await this.tenants.instance.withConnection('memory', memoryByTag);
    let used = 0;
    for (const [tag, bytes] of Object.entries(byTag)) {
      this.metrics.memoryUsed.set({ tag }, bytes);
      used += bytes;
    }
    return used;
  }

  private async checkpointUnderPressure(): Promise<void> {
    const limit = memoryBytes(this.config.memoryLimit);
    const high = limit * this.config.checkpointAtMemoryFraction;
    let used = await this.duckDbMemory();
    if (used < high) return;
    const started = Date.now();
    // Busy tenants too: under a backlog every tenant has writes waiting, and skipping them let a
    // signal worker over 500 tenants run DuckDB out of memory (its transactions rolled back and
    // retried, its backlog grew). The checkpoint waits for the tenant's turn like a write.
    const candidates = this.tenants.openList().filter((t) => t.dirty).sort((a, b) => a.lastWrittenAt - b.lastWrittenAt);
    let done = 0;
    for (const tenant of candidates) {
      if (used < high * 0.75 || this.tenants.closed) break;
      if (tenant.closing || !tenant.dirty) continue;
      const release = await tenant.mutex.acquire();
      try {
        if (tenant.closing || !tenant.dirty) continue;
        await this.tenants.instance.withConnection(`checkpointing ${tenant.file}`, (conn) => conn.run(`CHECKPOINT "${tenant.alias}"`));
        tenant.dirty = false;
        this.metrics.checkpoints.inc();
        done++;
      } finally {
        release();
      }
      if (done % 10 === 0) used = await this.duckDbMemory();
    }
    this.logger.debug({ checkpoints: done, ms: Date.now() - started, usedBytes: used, limitBytes: limit }, 'checkpointed DuckDB tenants under memory pressure');
  }
}
