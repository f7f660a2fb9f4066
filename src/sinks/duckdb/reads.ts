import fs from 'node:fs';
import fsp from 'node:fs/promises';
import type { Logger } from 'pino';
import { RetriableError } from '../../errors.js';
import { SEVERITIES } from '../../model/signal.js';
import type { Severity } from '../../model/signal.js';
import { isCanonicalUuid } from '../../model/tenant.js';
import { duckDbError } from './classify.js';
import { ATTACHED_SQL, countBySeveritySql, INSTANCE_SETTINGS_SQL, memoryByTag, sqlString, tenantAlias } from './sql.js';
import { openFiles } from './tenant-registry.js';
import type { TenantRegistry } from './tenant-registry.js';

/** What the sink's one DuckDB instance holds (diagnostics, tests). */
export interface InstanceStats {
  /** Aliases of the attached tenant databases. */
  attached: string[];
  /** memory_limit and threads as DuckDB reports them. */
  memoryLimit: string;
  threads: number;
  memoryByTag: Record<string, number>;
}

/**
 * The read queries of `spanledger signals stats` (and the tests), through the sink's instance:
 * a worker may be running (then its files are locked and a read fails as retriable), or stopped
 * or crashed (DuckDB replays the WAL in memory).
 */
export class SignalReads {
  constructor(
    private readonly tenants: TenantRegistry,
    private readonly logger: Logger,
  ) {}

  /** Tenant ids that have a database file in dir, sorted. */
  async listTenants(): Promise<string[]> {
    let names: string[];
    try {
      names = await fsp.readdir(this.tenants.root);
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
   * Signals per severity for one tenant. Uses the attached database if the sink has it; otherwise
   * attaches the file read-only for the query (fails as retriable while another process, e.g. a
   * running worker, holds the file). A tenant without a file has only zeros.
   */
  async countBySeverity(tenantId: string): Promise<Record<Severity, number>> {
    const file = this.tenants.tenantFile(tenantId);
    const counts = Object.fromEntries(SEVERITIES.map((s) => [s, 0])) as Record<Severity, number>;
    let rows: unknown[][];
    if (await this.tenants.attached(tenantId)) {
      rows = await this.tenants.withTenant(tenantId, new Set(), async (conn, tenant) => (await conn.runAndReadAll(countBySeveritySql(tenant.alias))).getRowsJS());
    } else {
      if (!fs.existsSync(file)) return counts;
      if (openFiles.has(file)) throw new RetriableError(`${file} is open for writing by another DuckDbSignalSink in this process`);
      // Attached read-only for the query only, under an alias of its own (a write attaching the
      // tenant meanwhile fails as retriable: DuckDB refuses a file attached twice).
      const alias = `ro_${tenantAlias(tenantId)}`;
      rows = await this.tenants.instance.withConnection(`reading ${file}`, async (conn) => {
        try {
          await conn.run(`ATTACH ${sqlString(file)} AS "${alias}" (READ_ONLY)`);
        } catch (err) {
          throw duckDbError(`cannot open ${file} read-only (is a worker writing it?)`, err);
        }
        try {
          return (await conn.runAndReadAll(countBySeveritySql(alias))).getRowsJS();
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

  /** The attached tenant databases (by alias) and the instance's memory_limit, threads and memory. */
  async stats(): Promise<InstanceStats> {
    return this.tenants.instance.withConnection('stats', async (conn) => {
      const attached = (await conn.runAndReadAll(ATTACHED_SQL)).getRowsJS().map((r) => String(r[0]));
      const [memoryLimit, threads] = (await conn.runAndReadAll(INSTANCE_SETTINGS_SQL)).getRowsJS()[0]!;
      return { attached, memoryLimit: String(memoryLimit), threads: Number(threads), memoryByTag: await memoryByTag(conn) };
    });
  }
}
