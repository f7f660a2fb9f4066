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
import { BIGINT, HUGEINT, INTEGER, TINYINT, VARCHAR, type DuckDBType } from '@duckdb/node-api';
import { InvariantError } from '../../errors.js';
import type { DecodedSpan } from '../../model/decode.js';
import type { FlushItem } from '../types.js';

/**
 * The columns in file order: name, type in the Parquet file, and type in the cycle's table (what
 * the appender fills; the COPY casts where the two differ), or `null` for the two columns that
 * are the same for every row of a file (tenant, partition), which the COPY writes as constants
 * instead of the appender handing DuckDB a value per row. Times are appended as HUGEINT (exact
 * for 20 digits) and cast to DECIMAL(20,0) when written: DuckDB casts text to DECIMAL about 30
 * times slower than to HUGEINT. JSON columns are appended as text (JSON.stringify's) and cast to
 * JSON when written, which gives them Parquet's JSON logical type.
 */
export const ARCHIVE_COLUMNS: ReadonlyArray<readonly [name: string, file: string, table: DuckDBType | null]> = [
  ['tenant_id', 'VARCHAR', null],
  ['trace_id', 'VARCHAR', VARCHAR],
  ['span_id', 'VARCHAR', VARCHAR],
  ['parent_span_id', 'VARCHAR', VARCHAR],
  ['name', 'VARCHAR', VARCHAR],
  ['kind', 'TINYINT', TINYINT],
  ['start_time_unix_nano', 'DECIMAL(20,0)', HUGEINT],
  ['end_time_unix_nano', 'DECIMAL(20,0)', HUGEINT],
  ['attributes', 'JSON', VARCHAR],
  ['status_code', 'TINYINT', TINYINT],
  ['status_message', 'VARCHAR', VARCHAR],
  ['resource_attributes', 'JSON', VARCHAR],
  ['scope_name', 'VARCHAR', VARCHAR],
  ['scope_version', 'VARCHAR', VARCHAR],
  ['scope_attributes', 'JSON', VARCHAR],
  ['trace_state', 'VARCHAR', VARCHAR],
  ['events', 'JSON', VARCHAR],
  ['links', 'JSON', VARCHAR],
  ['kafka_partition', 'INTEGER', null],
  ['kafka_offset', 'BIGINT', BIGINT],
  ['kafka_index', 'INTEGER', INTEGER],
];

/** The cycle table's columns: those the appender fills, in file order. */
const TABLE_COLUMNS = ARCHIVE_COLUMNS.filter((c): c is readonly [string, string, DuckDBType] => c[2] !== null);
export const TABLE_TYPES: readonly DuckDBType[] = TABLE_COLUMNS.map(([, , type]) => type);

const EMPTY = Object.freeze({});

/** A column of one data chunk, filled by setRow. */
export type ColumnValues = Array<string | number | bigint | null>;

/**
 * Row `i` of the chunk's columns from one span. `json` is JSON.stringify with lone surrogates
 * replaced (see wellFormed); `resourceJson` the same for resource attributes, which the caller
 * may cache per object (the spans of one OTLP resource share it).
 * Plain strings need no such care: N-API hands DuckDB UTF-8, with U+FFFD for a lone surrogate.
 */
export function setRow(columns: ColumnValues[], i: number, item: FlushItem<DecodedSpan>, json: (value: unknown) => string, resourceJson: (value: unknown) => string): void {
  const span = item.value.span;
  columns[0]![i] = span.traceId;
  columns[1]![i] = span.spanId;
  columns[2]![i] = span.parentSpanId;
  columns[3]![i] = span.name;
  columns[4]![i] = span.kind;
  columns[5]![i] = BigInt(span.startTimeUnixNano);
  columns[6]![i] = BigInt(span.endTimeUnixNano);
  columns[7]![i] = json(span.attributes ?? EMPTY);
  columns[8]![i] = span.status?.code ?? 0;
  columns[9]![i] = span.status?.message ?? null;
  columns[10]![i] = resourceJson(span.resource?.attributes ?? EMPTY);
  columns[11]![i] = span.scope?.name ?? null;
  columns[12]![i] = span.scope?.version ?? null;
  columns[13]![i] = span.scope?.attributes === undefined ? null : json(span.scope.attributes);
  columns[14]![i] = span.traceState ?? null;
  columns[15]![i] = span.events === undefined ? null : json(span.events);
  columns[16]![i] = span.links === undefined ? null : json(span.links);
  columns[17]![i] = item.offset;
  columns[18]![i] = item.index;
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

export const CREATE_CYCLE_TABLE = `CREATE OR REPLACE TEMP TABLE ${CYCLE_TABLE} (${TABLE_COLUMNS.map(([name, , type]) => `${name} ${type.toString()}`).join(', ')})`;

/** The file's columns from the table's (the casts of ARCHIVE_COLUMNS) and the file's constants. */
function fileSelect(tenantId: string, partition: number): string {
  const constants: Record<string, string> = { tenant_id: sqlString(tenantId), kafka_partition: String(partition) };
  return ARCHIVE_COLUMNS.map(([name, file, table]) => {
    if (table === null) return `CAST(${constants[name]} AS ${file}) AS ${name}`;
    return file === table.toString() ? name : `CAST(${name} AS ${file}) AS ${name}`;
  }).join(', ');
}

/**
 * Writes one tenant-day of the cycle's table as one zstd Parquet file: its rows are the run of
 * row ids `[first, last]` (appended in position order, one tenant-day after another), which DuckDB
 * scans alone, in insertion order (preserve_insertion_order, DuckDB's default).
 * One COPY per file rather than one partitioned COPY: a partitioned write keeps a writer open per
 * tenant-day, and a cycle of a thousand tenant-days ran DuckDB out of memory that way.
 */
export function copyTenantDaySql(file: string, tenantId: string, partition: number, rows: { first: number; last: number }): string {
  if (!Number.isSafeInteger(partition) || partition < 0) throw new InvariantError(`partition must be a non-negative integer, not ${partition}`);
  return `COPY (SELECT ${fileSelect(tenantId, partition)} FROM ${CYCLE_TABLE} WHERE rowid BETWEEN ${rows.first} AND ${rows.last}) TO ${sqlString(file)} (FORMAT parquet, COMPRESSION zstd)`;
}

export function sqlString(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/** The file of one tenant-day in a cycle's scratch folder. */
export function partFile(outDir: string, tenantId: string, day: string): string {
  return `${outDir}/${tenantId}_${day}.parquet`;
}
