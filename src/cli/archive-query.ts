import fs from 'node:fs';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { listArchive, ObjectCache } from '../sinks/archive/catalog.js';
import { ARCHIVE_COLUMNS, sqlString } from '../sinks/archive/columns.js';
import type { ObjectStore } from '../sinks/archive/object-store.js';

export interface QueryOptions {
  tenantId: string;
  day: string;
  prefix: string;
  cacheDir: string;
  /** SPANLOG_DIR: its <tenant>/<day> segments are the view `spanlog` when there are any. */
  spanlogDir: string | undefined;
  onProgress?: (done: number, total: number) => void;
}

export interface QueryResult {
  columns: string[];
  rows: unknown[][];
  /** The archive objects and span log segments the views read. */
  objects: number;
  segments: number;
}

/** The archive's columns for an empty `spans` view (no object for that tenant-day yet). */
function emptySpans(): string {
  const columns = ARCHIVE_COLUMNS.map(([name, type]) => `CAST(NULL AS ${type}) AS ${name}`);
  return `SELECT ${columns.join(', ')}, CAST(NULL AS VARCHAR) AS tenant, CAST(NULL AS DATE) AS day WHERE false`;
}

/**
 * `spanledger query --tenant T --day D "SQL"`: DuckDB over one tenant-day, with two views:
 * `spans`, the archive's objects of that tenant-day (downloaded through the SDK into the cache;
 * columns as docs/archive.md lists them, plus `tenant` and `day`), and `spanlog`, the local span
 * log's segments of that tenant-day when SPANLOG_DIR holds any (each line as the span log stores it).
 */
export async function queryTenantDay(store: ObjectStore, sql: string, options: QueryOptions): Promise<QueryResult> {
  const objects = await listArchive(store, options.prefix, { tenantId: options.tenantId, day: options.day });
  const files = await new ObjectCache(store, options.cacheDir).files(objects, options.onProgress);
  const segmentDir = options.spanlogDir === undefined ? undefined : path.join(options.spanlogDir, options.tenantId, options.day);
  const segments = segmentDir !== undefined && fs.existsSync(segmentDir) ? fs.readdirSync(segmentDir).filter((f) => f.endsWith('.jsonl')).map((f) => path.join(segmentDir, f)) : [];
  const db = await DuckDBInstance.create(':memory:', { threads: '2' });
  const c = await db.connect();
  try {
    const tenant = sqlString(options.tenantId);
    const day = `DATE ${sqlString(options.day)}`;
    await c.run(files.length === 0 ? `CREATE VIEW spans AS ${emptySpans()}` : `CREATE VIEW spans AS SELECT *, ${tenant} AS tenant, ${day} AS day FROM read_parquet([${files.map(sqlString).join(', ')}])`);
    if (segments.length > 0) await c.run(`CREATE VIEW spanlog AS SELECT * FROM read_json([${segments.map(sqlString).join(', ')}], format = 'newline_delimited', union_by_name = true)`);
    const reader = await c.runAndReadAll(sql);
    return { columns: reader.columnNames(), rows: reader.getRowsJson() as unknown[][], objects: objects.length, segments: segments.length };
  } finally {
    c.closeSync();
    db.closeSync();
  }
}
