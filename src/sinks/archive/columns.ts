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
import { InvariantError } from '../../errors.js';

/** An exact decimal time: DECIMAL(20,0) holds every schema-valid time (up to 20 digits). */
const TIME = 'DECIMAL(20,0)';

/**
 * The keys of a scratch line that read_json reads, with their types: the line's run and position
 * (scratchLinePrefix), then the stored line's own fields (model/span-line.ts). A key not named
 * here (the line's tenantId; any other field of a scope) is skipped, a key a line leaves out is
 * NULL. JSON-typed values keep their JSON (re-written by DuckDB: `1.50` is `1.5`), times are read
 * as text (see timeFrom).
 */
const LINE_FIELDS = {
  r: 'INTEGER',
  o: 'BIGINT',
  i: 'INTEGER',
  traceId: 'VARCHAR',
  spanId: 'VARCHAR',
  parentSpanId: 'VARCHAR',
  name: 'VARCHAR',
  kind: 'TINYINT',
  startTimeUnixNano: 'VARCHAR',
  endTimeUnixNano: 'VARCHAR',
  attributes: 'JSON',
  status: 'STRUCT(code TINYINT, message VARCHAR)',
  resource: 'STRUCT(attributes JSON)',
  scope: 'STRUCT(name VARCHAR, version VARCHAR, attributes JSON)',
  traceState: 'VARCHAR',
  events: 'JSON',
  links: 'JSON',
} as const;

/** A time's text as DECIMAL(20,0), through HUGEINT: DuckDB's direct cast of text to DECIMAL(20,0) cost ~28 µs per value here (through HUGEINT ~0.1). */
const timeFrom = (field: string) => `CAST(CAST(${field} AS HUGEINT) AS ${TIME})`;

/**
 * The columns in file order: name, type in the Parquet file, and the expression over a scratch
 * line's fields (LINE_FIELDS) that gives it, of exactly that type, or `null` for the two columns
 * that are the same for every row of a file (tenant, partition), which the COPY writes as
 * constants instead of reading a value per row.
 */
export const ARCHIVE_COLUMNS: ReadonlyArray<readonly [name: string, file: string, from: string | null]> = [
  ['tenant_id', 'VARCHAR', null],
  ['trace_id', 'VARCHAR', 'traceId'],
  ['span_id', 'VARCHAR', 'spanId'],
  ['parent_span_id', 'VARCHAR', 'parentSpanId'],
  ['name', 'VARCHAR', 'name'],
  ['kind', 'TINYINT', 'kind'],
  ['start_time_unix_nano', TIME, timeFrom('startTimeUnixNano')],
  ['end_time_unix_nano', TIME, timeFrom('endTimeUnixNano')],
  ['attributes', 'JSON', 'attributes'],
  ['status_code', 'TINYINT', 'status.code'],
  ['status_message', 'VARCHAR', 'status.message'],
  ['resource_attributes', 'JSON', 'resource.attributes'],
  ['scope_name', 'VARCHAR', 'scope.name'],
  ['scope_version', 'VARCHAR', 'scope.version'],
  ['scope_attributes', 'JSON', 'scope.attributes'],
  ['trace_state', 'VARCHAR', 'traceState'],
  ['events', 'JSON', 'events'],
  ['links', 'JSON', 'links'],
  ['kafka_partition', 'INTEGER', null],
  ['kafka_offset', 'BIGINT', 'o'],
  ['kafka_index', 'INTEGER', 'i'],
];

/**
 * The scratch file's lines (model/archive-row.ts: a run and position, then the stored line), in
 * line order, as LINE_FIELDS. read_json's buffer is twice its maximum object size (its default,
 * 16 MB, made a 64 MB memory limit fail): sized to the file's longest line instead.
 */
function linesSource(file: string, longestLine: number): string {
  const maxObject = Math.max(1 << 20, longestLine + 1024);
  const columns = Object.entries(LINE_FIELDS).map(([key, type]) => `${key}: ${sqlString(type)}`).join(', ');
  return `read_json(${sqlString(file)}, format = 'newline_delimited', columns = {${columns}}, maximum_object_size = ${maxObject})`;
}

/**
 * The file's columns from the lines' fields and the file's constants: the partition, and the
 * tenant of each run from `tenants` (the tenant of run `firstRun + k` is `tenants[k]`), looked
 * up in a list rather than read from every line.
 */
function fileSelect(tenants: readonly string[], firstRun: number, partition: number): string {
  const constants: Record<string, string> = { tenant_id: `([${tenants.map(sqlString).join(', ')}])[r - ${firstRun} + 1]`, kafka_partition: String(partition) };
  return ARCHIVE_COLUMNS.map(([name, file, from]) => (from === null ? `CAST(${constants[name]} AS ${file}) AS ${name}` : `${from} AS ${name}`)).join(', ');
}

/** At most this many tenant-days are written by one COPY (see copyRunsSql). */
export const RUNS_PER_COPY = 32;

/**
 * Writes the runs `firstRun .. firstRun + tenants.length - 1` (each a tenant-day, its spans in
 * position order one after another in `linesFile`, written by writeLines; `longestLine` its longest
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
  return `COPY (SELECT ${fileSelect(tenants, firstRun, partition)}, r AS run FROM ${linesSource(linesFile, longestLine)}) TO ${sqlString(dir)} (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, PARTITION_BY (run), RETURN_STATS true)`;
}

export function sqlString(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}
