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
import { BIGINT, DECIMAL, DuckDBVarCharType, INTEGER, TINYINT, VARCHAR, type DuckDBType } from '@duckdb/node-api';
import { InvariantError } from '../../errors.js';

/**
 * The columns in file order: name, type in the Parquet file, and type as read from each span's
 * line (the COPY casts where the two differ), or `null` for the two columns that are the same for
 * every row of a file (tenant, partition), which the COPY writes as constants instead of a value
 * per row. The types read are the file's, so the COPY casts nothing: times are DECIMAL(20,0)
 * (exact for 20 digits), JSON columns hold the line's own JSON text (Parquet's JSON logical type;
 * read_json keeps a JSON-typed value's text as it is).
 */
const JSON_TEXT = DuckDBVarCharType.create('JSON');
const TIME = DECIMAL(20, 0);

export const ARCHIVE_COLUMNS: ReadonlyArray<readonly [name: string, file: string, table: DuckDBType | null]> = [
  ['tenant_id', 'VARCHAR', null],
  ['trace_id', 'VARCHAR', VARCHAR],
  ['span_id', 'VARCHAR', VARCHAR],
  ['parent_span_id', 'VARCHAR', VARCHAR],
  ['name', 'VARCHAR', VARCHAR],
  ['kind', 'TINYINT', TINYINT],
  ['start_time_unix_nano', 'DECIMAL(20,0)', TIME],
  ['end_time_unix_nano', 'DECIMAL(20,0)', TIME],
  ['attributes', 'JSON', JSON_TEXT],
  ['status_code', 'TINYINT', TINYINT],
  ['status_message', 'VARCHAR', VARCHAR],
  ['resource_attributes', 'JSON', JSON_TEXT],
  ['scope_name', 'VARCHAR', VARCHAR],
  ['scope_version', 'VARCHAR', VARCHAR],
  ['scope_attributes', 'JSON', JSON_TEXT],
  ['trace_state', 'VARCHAR', VARCHAR],
  ['events', 'JSON', JSON_TEXT],
  ['links', 'JSON', JSON_TEXT],
  ['kafka_partition', 'INTEGER', null],
  ['kafka_offset', 'BIGINT', BIGINT],
  ['kafka_index', 'INTEGER', INTEGER],
];

/**
 * The columns of a span's line: `run` (the row's tenant-day, numbered in the cycle: what a COPY
 * partitions its files by, never written into them), then the file's own, in file order.
 */
const LINE_COLUMNS: ReadonlyArray<readonly [string, string, DuckDBType]> = [['run', 'INTEGER', INTEGER], ...ARCHIVE_COLUMNS.filter((c): c is readonly [string, string, DuckDBType] => c[2] !== null)];

/**
 * The line's columns as keys of a JSON line (short: the line is written and read once per span),
 * in LINE_COLUMNS order. read_json maps each key to its column; a key a line leaves out is NULL.
 */
const LINE_KEYS = ['r', 't', 's', 'p', 'n', 'k', 'b', 'e', 'a', 'c', 'm', 'ra', 'sn', 'sv', 'sa', 'ts', 'ev', 'li', 'o', 'i'] as const;

/**
 * The rows of a scratch file of jsonLine lines, in line order, as the cycle's columns (`run`, then
 * file order). read_json's buffer is twice its maximum object size (its default, 16 MB, made a 64
 * MB memory limit fail): sized to the file's longest line instead.
 */
function linesSource(file: string, longestLine: number): string {
  const maxObject = Math.max(1 << 20, longestLine + 1024);
  // Times are read as text and cast through HUGEINT: DuckDB's direct cast of text to DECIMAL(20,0)
  // cost ~28 µs per value here (through HUGEINT ~0.1).
  const isTime = (type: DuckDBType) => type.toString() === TIME.toString();
  const columns = LINE_COLUMNS.map(([, , type], k) => `${LINE_KEYS[k]}: ${sqlString(isTime(type) ? 'VARCHAR' : sqlType(type))}`).join(', ');
  const select = LINE_COLUMNS.map(([name, , type], k) => `${isTime(type) ? `CAST(CAST(${LINE_KEYS[k]} AS HUGEINT) AS ${TIME.toString()})` : LINE_KEYS[k]} AS ${name}`).join(', ');
  return `(SELECT ${select} FROM read_json(${sqlString(file)}, format = 'newline_delimited', columns = {${columns}}, maximum_object_size = ${maxObject}))`;
}

/** A column type as SQL: its alias (JSON) where it has one. */
function sqlType(type: DuckDBType): string {
  return type.alias ?? type.toString();
}

/**
 * The file's columns from the lines' (the casts of ARCHIVE_COLUMNS) and the file's constants:
 * the partition, and the tenant of each run from `tenants` (the tenant of run `firstRun + k` is
 * `tenants[k]`), looked up in a list rather than appended as a string per row.
 */
function fileSelect(tenants: readonly string[], firstRun: number, partition: number): string {
  const constants: Record<string, string> = { tenant_id: `([${tenants.map(sqlString).join(', ')}])[run - ${firstRun} + 1]`, kafka_partition: String(partition) };
  return ARCHIVE_COLUMNS.map(([name, file, table]) => {
    if (table === null) return `CAST(${constants[name]} AS ${file}) AS ${name}`;
    return file === sqlType(table) ? name : `CAST(${name} AS ${file}) AS ${name}`;
  }).join(', ');
}

/** At most this many tenant-days are written by one COPY (see copyRunsSql). */
export const RUNS_PER_COPY = 32;

/**
 * Writes the runs `firstRun .. firstRun + tenants.length - 1` (each a tenant-day, its spans in
 * position order one after another in `linesFile`, written by jsonLine; `longestLine` its longest
 * line in bytes) as one zstd Parquet file each, under `dir/run=<n>/`, in one statement straight
 * from the lines; it answers a row per file (RETURN_STATS: its name, rows and partition key). One
 * partitioned COPY for a few runs rather than one COPY per file: every statement and file costs
 * DuckDB ~1.5 ms, ~2 µs per span at a default cycle's 700 spans per tenant-day (bench/README). At
 * most RUNS_PER_COPY runs: a partitioned write keeps a writer open per partition, and one COPY for
 * a cycle of a thousand tenant-days ran DuckDB out of memory. zstd at level 1 (DuckDB's default is
 * 3): ~15 % less of the COPY's CPU and, on spans, no larger files (docs/archive.md). Rows keep
 * their line (position) order within each file: preserve_insertion_order and one thread.
 */
export function copyRunsSql(dir: string, linesFile: string, longestLine: number, tenants: readonly string[], firstRun: number, partition: number): string {
  if (!Number.isSafeInteger(partition) || partition < 0) throw new InvariantError(`partition must be a non-negative integer, not ${partition}`);
  if (tenants.length === 0 || tenants.length > RUNS_PER_COPY) throw new InvariantError(`a COPY writes 1 to ${RUNS_PER_COPY} runs, not ${tenants.length}`);
  return `COPY (SELECT ${fileSelect(tenants, firstRun, partition)}, run FROM ${linesSource(linesFile, longestLine)}) TO ${sqlString(dir)} (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, PARTITION_BY (run), RETURN_STATS true)`;
}

export function sqlString(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}
