import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { DuckDBInstance, type DuckDBResultReader } from '@duckdb/node-api';
import { RetriableError } from '../../errors.js';
import type { FlushItem } from '../types.js';
import { copyRunsSql, RUNS_PER_COPY } from './columns.js';
import { CycleDataError, isDataError } from './unwritable.js';
import { scratchLinePrefix, type ArchiveRow } from '../../model/archive-row.js';

/** One tenant-day of a cycle, as the writer produced it. */
export interface TenantDayFile {
  tenantId: string;
  day: string;
  file: string;
  spans: number;
  first: { offset: bigint; index: number };
}

/** One tenant-day of a cycle before it is written: its spans in position order. */
interface TenantDayRun {
  tenantId: string;
  day: string;
  items: Array<FlushItem<ArchiveRow>>;
}

/** One cycle's scratch folder: its Parquet files, removed by `discard`. */
export interface CycleFiles {
  dir: string;
  files: TenantDayFile[];
}

/**
 * Turns a cycle's spans into one zstd Parquet file per tenant-day with DuckDB: the spans written
 * as JSON lines to scratch files (one per RUNS_PER_COPY tenant-days, one tenant-day after
 * another), each read by DuckDB's read_json in a partitioned COPY into the cycle's scratch
 * folder. A line per span rather than DuckDB's appender: the appender takes each value in its own
 * N-API call on the main thread (~8 µs per span there, against ~3-4 for the line; read_json
 * parses on DuckDB's thread: bench/README, sixth session). The folder is scratch only (each
 * cycle's is removed once its objects are uploaded or the attempt failed); losing it loses nothing
 * committed, because nothing is committed before the upload.
 */
export class ParquetWriter {
  private instance: Promise<DuckDBInstance> | undefined;
  /** This process's own folder under ARCHIVE_SCRATCH_DIR. */
  readonly dir: string;

  constructor(
    scratchRoot: string,
    private readonly memoryLimit: string,
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
  async write(partition: number, tenants: ReadonlyMap<string, ReadonlyArray<FlushItem<ArchiveRow>>>): Promise<CycleFiles> {
    const dir = path.join(this.dir, `p${partition}-${randomBytes(6).toString('hex')}`);
    const out = path.join(dir, 'out');
    const runs = tenantDayRuns(tenants);
    try {
      await fsp.mkdir(out, { recursive: true });
      const connection = await (await this.db()).connect();
      try {
        const files: TenantDayFile[] = [];
        for (let first = 0; first < runs.length; first += RUNS_PER_COPY) {
          const group = runs.slice(first, first + RUNS_PER_COPY);
          const lines = path.join(dir, `runs-${first}.jsonl`);
          const longest = await writeLines(lines, group, first);
          const copied = await connection.runAndReadAll(copyRunsSql(path.join(out, `runs-${first}`), lines, longest, group.map((r) => r.tenantId), first, partition));
          await fsp.rm(lines); // read: the scratch disk holds one group's lines at a time
          const written = writtenFiles(copied);
          for (const [k, { tenantId, day, items }] of group.entries()) {
            const file = written.get(first + k);
            // Every span of the tenant-day, in one file, or the cycle is not written (never uploaded short).
            if (file === undefined || file.count !== items.length || written.size !== group.length) {
              throw new Error(`DuckDB wrote ${file?.count ?? 0} rows for tenant ${tenantId} day ${day} (${written.size} files for ${group.length} tenant-days), not its ${items.length} spans in one file`);
            }
            files.push({ tenantId, day, file: file.file, spans: file.count, first: { offset: items[0]!.offset, index: items[0]!.index } });
          }
        }
        return { dir, files };
      } finally {
        connection.closeSync();
      }
    } catch (e) {
      await fsp.rm(dir, { recursive: true, force: true }).catch(() => undefined);
      if (isDataError((e as Error).message ?? '')) throw new CycleDataError((e as Error).message, { cause: e });
      throw new RetriableError(`archive scratch: writing Parquet for partition ${partition} failed: ${(e as Error).message}`, e);
    }
  }

  async discard(files: CycleFiles): Promise<void> {
    // File by file, then each folder bottom-up, as separate requests on libuv's threads: the
    // event loop only issues them. fs.promises.rm walks the folder in JavaScript, a callback per
    // entry, and fs.rmSync holds the event loop for every removal (each ~0.3 µs per span here,
    // on a disk mounted with `discard`: bench/README, ninth session). Anything else left in the
    // folder (a failed COPY's partial output) is removed the thorough way.
    try {
      await Promise.all(files.files.map((f) => fsp.unlink(f.file)));
      const runDirs = new Set(files.files.map((f) => path.dirname(f.file)));
      await Promise.all([...runDirs].map((d) => fsp.rmdir(d)));
      const copyDirs = new Set([...runDirs].map((d) => path.dirname(d)));
      await Promise.all([...copyDirs].map((d) => fsp.rmdir(d)));
      await fsp.rmdir(path.join(files.dir, 'out'));
      await fsp.rmdir(files.dir);
    } catch {
      await fsp.rm(files.dir, { recursive: true, force: true });
    }
  }

  async close(): Promise<void> {
    const instance = await this.instance?.catch(() => undefined);
    instance?.closeSync();
    this.instance = undefined;
    await fsp.rm(this.dir, { recursive: true, force: true });
  }
}

/** The cycle's tenant-days, each tenant's in the order of their first span, spans in position order. */
function tenantDayRuns(tenants: ReadonlyMap<string, ReadonlyArray<FlushItem<ArchiveRow>>>): TenantDayRun[] {
  const runs: TenantDayRun[] = [];
  for (const [tenantId, items] of tenants) {
    const byDay = new Map<string, TenantDayRun>();
    for (const item of items) {
      const day = item.value.day!;
      const run = byDay.get(day);
      if (run === undefined) {
        const created = { tenantId, day, items: [item] };
        byDay.set(day, created);
        runs.push(created);
      } else run.items.push(item);
    }
  }
  return runs;
}

/** Scratch lines are written in chunks of about this many bytes (a line longer than it alone). */
const WRITE_CHUNK_BYTES = 1 << 20;

/**
 * Every span of the runs (numbered from `firstRun`) as a line of `file`, in order (scratchLinePrefix,
 * then its stored line after the `{`); answers the longest line's length in bytes. The lines are
 * copied byte for byte into one reused buffer: the spans' own bytes are never turned into text.
 */
async function writeLines(file: string, runs: readonly TenantDayRun[], firstRun: number): Promise<number> {
  const handle = await fsp.open(file, 'w');
  let longest = 0;
  let chunk = Buffer.allocUnsafe(WRITE_CHUNK_BYTES);
  let used = 0;
  try {
    for (const [k, run] of runs.entries()) {
      for (const item of run.items) {
        const prefix = scratchLinePrefix(firstRun + k, item.offset, item.index);
        const line = typeof item.value.line === 'string' ? Buffer.from(item.value.line) : item.value.line;
        // The prefix is ASCII (a byte a character); the line's `{` becomes a comma; a newline ends it.
        const size = prefix.length + line.length + 1;
        if (size > longest) longest = size;
        if (used + size > chunk.length) {
          if (used > 0) await handle.write(chunk, 0, used);
          used = 0;
          if (size > chunk.length) chunk = Buffer.allocUnsafe(size);
        }
        used += chunk.write(prefix, used, 'latin1');
        chunk.set(line, used);
        chunk[used] = COMMA; // the line's own `{`: its fields follow the position's
        used += line.length;
        chunk[used++] = NEWLINE;
      }
    }
    if (used > 0) await handle.write(chunk, 0, used);
  } finally {
    await handle.close();
  }
  return longest;
}

const COMMA = 0x2c;
const NEWLINE = 0x0a;

/**
 * The files a partitioned COPY reports (RETURN_STATS: a row per file), by run number (its
 * `run=<n>` folder). Only the name and the row count are read: converting every row to JS would
 * also convert each file's per-column statistics, a map per column, on the main thread.
 */
function writtenFiles(copied: DuckDBResultReader): Map<number, { file: string; count: number }> {
  const names = copied.columnNames();
  const filename = names.indexOf('filename');
  const count = names.indexOf('count');
  const files = new Map<number, { file: string; count: number }>();
  for (let row = 0; row < copied.currentRowCount; row += 1) {
    const file = String(copied.value(filename, row));
    const run = /[/\\]run=(\d+)[/\\][^/\\]*$/.exec(file)?.[1];
    if (run === undefined) throw new Error(`DuckDB reported a file outside any run folder: ${file}`);
    files.set(Number(run), { file, count: Number(copied.value(count, row)) });
  }
  return files;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
