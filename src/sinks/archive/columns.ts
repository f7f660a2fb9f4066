/**
 * The archive's Parquet columns: the stored span shape (model/span-line.ts) in snake_case, plus
 * the Kafka position of every span. Tenant and day are not columns of the files: they are the
 * Hive partition folders `tenant=<uuid>/day=<YYYY-MM-DD>` (DuckDB's `hive_partitioning`, a Trino
 * or Athena table PARTITIONED BY (tenant, day)); `tenant_id` repeats the tenant inside the file
 * so that a file read alone still says whose spans it holds.
 *
 * Attribute maps (span, resource, scope), events and links are JSON text (DuckDB's JSON type,
 * written with Parquet's JSON logical type): OpenTelemetry attribute values are strings, numbers,
 * booleans, null or arrays of them, and a Parquet MAP has one value type, so a MAP<VARCHAR,
 * VARCHAR> would turn 200 into '200' and [1,2] into text no reader can tell from a string, while
 * JSON keeps every value as it came. Both engines query it directly: DuckDB
 * `attributes->>'$."http.method"'`, Trino/Athena `json_extract_scalar(attributes,
 * '$["http.method"]')` (docs/archive.md).
 *
 * Times are DECIMAL(20,0): exact for every schema-valid time (up to 20 digits, past BIGINT).
 */
import type { DecodedSpan } from '../../model/decode.js';
import type { FlushItem } from '../types.js';

/** Column → DuckDB type as the scratch file is read (times as text, cast in the COPY). */
export const SCRATCH_COLUMNS: ReadonlyArray<readonly [string, string]> = [
  ['tenant', 'VARCHAR'],
  ['day', 'VARCHAR'],
  ['tenant_id', 'VARCHAR'],
  ['trace_id', 'VARCHAR'],
  ['span_id', 'VARCHAR'],
  ['parent_span_id', 'VARCHAR'],
  ['name', 'VARCHAR'],
  ['kind', 'TINYINT'],
  ['start_time_unix_nano', 'VARCHAR'],
  ['end_time_unix_nano', 'VARCHAR'],
  ['attributes', 'JSON'],
  ['status_code', 'TINYINT'],
  ['status_message', 'VARCHAR'],
  ['resource_attributes', 'JSON'],
  ['scope_name', 'VARCHAR'],
  ['scope_version', 'VARCHAR'],
  ['scope_attributes', 'JSON'],
  ['trace_state', 'VARCHAR'],
  ['events', 'JSON'],
  ['links', 'JSON'],
  ['kafka_partition', 'INTEGER'],
  ['kafka_offset', 'BIGINT'],
  ['kafka_index', 'INTEGER'],
];

/** One scratch line (NDJSON) per span: the tenant-day folder's values first, then the columns. */
export function scratchLine(tenantId: string, partition: number, item: FlushItem<DecodedSpan>): string {
  const { span, day } = item.value;
  const row = {
    tenant: tenantId,
    day,
    tenant_id: span.tenantId,
    trace_id: span.traceId,
    span_id: span.spanId,
    parent_span_id: span.parentSpanId,
    name: span.name,
    kind: span.kind,
    start_time_unix_nano: span.startTimeUnixNano,
    end_time_unix_nano: span.endTimeUnixNano,
    attributes: span.attributes ?? {},
    status_code: span.status?.code ?? 0,
    status_message: span.status?.message ?? null,
    resource_attributes: span.resource?.attributes ?? {},
    scope_name: span.scope?.name ?? null,
    scope_version: span.scope?.version ?? null,
    scope_attributes: span.scope?.attributes ?? null,
    trace_state: span.traceState ?? null,
    events: span.events ?? null,
    links: span.links ?? null,
  };
  // The position last, the offset from its decimal text: no offset passes through a double.
  const json = wellFormed(JSON.stringify(row));
  return `${json.slice(0, -1)},"kafka_partition":${partition},"kafka_offset":${item.offset.toString()},"kafka_index":${item.index}}\n`;
}

/** JSON.stringify escapes a lone surrogate as `\\udXXX` (and writes paired ones as they are). */
const LONE_SURROGATE = /(?<!\\)((?:\\\\)*)\\ud[89a-f][0-9a-f]{2}/g;

/**
 * The JSON text with every lone UTF-16 surrogate (a JSON string may hold one, `"\\ud800"`)
 * replaced by U+FFFD: Parquet strings are UTF-8, which cannot hold one, and DuckDB refuses such
 * JSON. The span log keeps the original; the archive holds the replacement character.
 */
export function wellFormed(json: string): string {
  return json.includes('\\ud') ? json.replace(LONE_SURROGATE, '$1\\ufffd') : json;
}

/** The cycle's rows in DuckDB while its files are written (a temporary table of the writer's connection). */
export const CYCLE_TABLE = 'archive_cycle';

/**
 * Loads one cycle's scratch file into CYCLE_TABLE, times cast to DECIMAL(20,0), sorted by tenant,
 * day and position.
 */
export function loadSql(scratchFile: string, maxLineBytes: number): string {
  const columns = `{${SCRATCH_COLUMNS.map(([name, type]) => `${name}: '${type}'`).join(', ')}}`;
  // Through HUGEINT (exact for 20 digits): DuckDB casts text to DECIMAL(20,0) about 30 times
  // slower than to HUGEINT, which made the cast most of a cycle's CPU (bench/archive.mjs).
  const times = 'CAST(CAST(start_time_unix_nano AS HUGEINT) AS DECIMAL(20,0)) AS start_time_unix_nano, CAST(CAST(end_time_unix_nano AS HUGEINT) AS DECIMAL(20,0)) AS end_time_unix_nano';
  return (
    `CREATE OR REPLACE TEMP TABLE ${CYCLE_TABLE} AS SELECT * REPLACE (${times}) ` +
    `FROM read_json(${sqlString(scratchFile)}, format = 'newline_delimited', columns = ${columns}, maximum_object_size = ${maxLineBytes}) ORDER BY tenant, day, kafka_offset, kafka_index`
  );
}

/** Each tenant-day's first and last row id in CYCLE_TABLE. */
export const RUNS_SQL = `SELECT tenant, day, min(rowid) AS first, max(rowid) AS last FROM ${CYCLE_TABLE} GROUP BY tenant, day`;

/**
 * Writes one tenant-day of the loaded cycle as one zstd Parquet file, rows in position order.
 * One COPY per file rather than one partitioned COPY: a partitioned write keeps a writer open per
 * tenant-day, and a cycle of a thousand tenant-days ran DuckDB out of memory that way.
 */
export function copyTenantDaySql(tenantId: string, day: string, file: string, rows?: { first: bigint; last: bigint }): string {
  // The table is in (tenant, day, position) order: a tenant-day is a run of row ids, which DuckDB
  // scans alone (half the time of a scan of the whole cycle per file); the tenant and day
  // conditions keep the file right whatever the run.
  const run = rows === undefined ? '' : `rowid BETWEEN ${rows.first} AND ${rows.last} AND `;
  return (
    `COPY (SELECT * EXCLUDE (tenant, day) FROM ${CYCLE_TABLE} WHERE ${run}tenant = ${sqlString(tenantId)} AND day = ${sqlString(day)} ORDER BY kafka_offset, kafka_index) ` +
    `TO ${sqlString(file)} (FORMAT parquet, COMPRESSION zstd)`
  );
}

export function sqlString(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/** The file of one tenant-day in a cycle's scratch folder. */
export function partFile(outDir: string, tenantId: string, day: string): string {
  return `${outDir}/${tenantId}_${day}.parquet`;
}
