import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import type { DecodedSpan } from '../../model/decode.js';
import { RetriableError } from '../../errors.js';
import type { FlushItem } from '../types.js';
import { copyTenantDaySql, CYCLE_TABLE, loadSql, partFile, RUNS_SQL, scratchLine } from './columns.js';
import { CycleDataError, isDataError } from './unwritable.js';

/** Scratch text is handed to the file in pieces of about this size (bounded extra memory per cycle). */
const WRITE_CHUNK_CHARS = 1 << 20;

/** One tenant-day of a cycle, as the writer produced it. */
export interface TenantDayFile {
  tenantId: string;
  day: string;
  file: string;
  spans: number;
  first: { offset: bigint; index: number };
}

/** One cycle's scratch folder: its Parquet files, removed by `discard`. */
export interface CycleFiles {
  dir: string;
  files: TenantDayFile[];
}

/**
 * Turns a cycle's spans into one zstd Parquet file per tenant-day with DuckDB, through a scratch
 * folder: the spans as NDJSON, loaded into a temporary table, then one COPY per tenant-day. The folder is scratch
 * only (each cycle's is removed once its objects are uploaded or the attempt failed); losing it
 * loses nothing committed, because nothing is committed before the upload.
 */
export class ParquetWriter {
  private instance: Promise<DuckDBInstance> | undefined;
  /** This process's own folder under ARCHIVE_SCRATCH_DIR. */
  readonly dir: string;

  constructor(
    scratchRoot: string,
    private readonly memoryLimit: string,
    /** The longest scratch line (one span) DuckDB must read: it reserves about twice this per read. */
    private readonly maxLineBytes: number,
  ) {
    this.dir = path.join(path.resolve(scratchRoot), `pid-${process.pid}-${randomBytes(4).toString('hex')}`);
  }

  /** Makes the scratch folder and removes those of processes of this host that are gone. */
  async start(): Promise<void> {
    const root = path.dirname(this.dir);
    await fsp.mkdir(this.dir, { recursive: true });
    for (const name of await fsp.readdir(root)) {
      const pid = /^pid-(\d+)-[0-9a-f]+$/.exec(name)?.[1];
      if (pid === undefined || Number(pid) === process.pid || alive(Number(pid))) continue;
      await fsp.rm(path.join(root, name), { recursive: true, force: true });
    }
    await this.db();
  }

  private db(): Promise<DuckDBInstance> {
    this.instance ??= DuckDBInstance.create(':memory:', { threads: '1', memory_limit: this.memoryLimit, temp_directory: path.join(this.dir, '.duckdb-tmp') }).catch((e: unknown) => {
      this.instance = undefined;
      throw e;
    });
    return this.instance;
  }

  /**
   * Writes `tenants` (each group in position order, every span with its day) into Parquet files.
   * A failure of the local disk or of DuckDB is retriable (the whole cycle is written again), but
   * DuckDB refusing the data itself is a CycleDataError (writing it again cannot help).
   */
  async write(partition: number, tenants: ReadonlyMap<string, ReadonlyArray<FlushItem<DecodedSpan>>>): Promise<CycleFiles> {
    const dir = path.join(this.dir, `p${partition}-${randomBytes(6).toString('hex')}`);
    const scratch = path.join(dir, 'spans.jsonl');
    const out = path.join(dir, 'out');
    const byTenantDay = new Map<string, TenantDayFile>();
    try {
      await fsp.mkdir(dir, { recursive: true });
      const stream = fs.createWriteStream(scratch);
      const closed = new Promise<void>((resolve, reject) => {
        stream.on('close', resolve);
        stream.on('error', reject);
      });
      let text = '';
      for (const [tenantId, items] of tenants) {
        for (const item of items) {
          const day = item.value.day!;
          const key = `${tenantId}/${day}`;
          const known = byTenantDay.get(key);
          if (known === undefined) byTenantDay.set(key, { tenantId, day, file: partFile(out, tenantId, day), spans: 1, first: { offset: item.offset, index: item.index } });
          else known.spans += 1;
          text += scratchLine(tenantId, partition, item);
          if (text.length >= WRITE_CHUNK_CHARS) {
            if (!stream.write(text)) await new Promise<void>((resolve) => stream.once('drain', () => resolve()));
            text = '';
          }
        }
      }
      stream.end(text);
      await closed;
      const connection = await (await this.db()).connect();
      try {
        await connection.run(loadSql(scratch, this.maxLineBytes));
        await fsp.mkdir(out, { recursive: true });
        const runs = new Map((await connection.runAndReadAll(RUNS_SQL)).getRows().map(([t, d, first, last]) => [`${String(t)}/${String(d)}`, { first: BigInt(first as bigint), last: BigInt(last as bigint) }]));
        let rows = 0;
        for (const [key, f] of byTenantDay) {
          const copied = await connection.runAndReadAll(copyTenantDaySql(f.tenantId, f.day, f.file, runs.get(key)));
          const count = Number(copied.getRows()[0]?.[0] ?? -1);
          // Every span of the tenant-day, or the cycle is not written (never uploaded short).
          if (count !== f.spans) throw new Error(`DuckDB wrote ${count} rows for tenant ${f.tenantId} day ${f.day}, not its ${f.spans} spans`);
          rows += count;
        }
        if (rows !== [...byTenantDay.values()].reduce((n, f) => n + f.spans, 0)) throw new Error('rows written differ from the cycle\'s spans');
        await connection.run(`DROP TABLE ${CYCLE_TABLE}`);
      } finally {
        connection.closeSync();
      }
      await fsp.rm(scratch, { force: true });
      return { dir, files: [...byTenantDay.values()] };
    } catch (e) {
      await fsp.rm(dir, { recursive: true, force: true }).catch(() => undefined);
      if (isDataError((e as Error).message ?? '')) throw new CycleDataError((e as Error).message, { cause: e });
      throw new RetriableError(`archive scratch: writing Parquet for partition ${partition} failed: ${(e as Error).message}`, e);
    }
  }

  async discard(files: CycleFiles): Promise<void> {
    await fsp.rm(files.dir, { recursive: true, force: true });
  }

  async close(): Promise<void> {
    const instance = await this.instance?.catch(() => undefined);
    instance?.closeSync();
    this.instance = undefined;
    await fsp.rm(this.dir, { recursive: true, force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
