import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../errors.js';

/** A host (name, IPv4 or [IPv6]) and a port: what STATUS_ADVERTISE_ADDRESS accepts (and kafka/status-address.ts reads back from client ids). */
export const STATUS_ADDRESS_PATTERN = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):\d{1,5}$/;

/**
 * Every setting in one table: its environment variable, its CLI flag, its default and how it is
 * checked. The CLI builds its options (and their --help lines) from here, so a default is written
 * down once. Precedence: command-line flag > environment variable > config file > default.
 */
export interface Setting<T = unknown> {
  env: string;
  flag: string;
  description: string;
  default: string;
  schema: z.ZodType<T>;
  /** Worker roles whose default differs from `default` (workerSettingsFor gives each role its own). */
  roleDefaults?: Partial<Record<WorkerRoleName, string>>;
  /**
   * A rule relating this setting to others of its group, checked by resolveSettings after every
   * value passed its own schema: a message when broken. It travels with the setting, so every
   * group holding the setting (each role's copy included) checks it.
   */
  crossCheck?: (values: Record<string, unknown>) => string | undefined;
}

/** The worker roles (`spanledger worker <role>`). */
export type WorkerRoleName = 'spans' | 'rules' | 'signals';

const positiveInt = z.coerce.number({ error: 'must be a positive whole number' }).int('must be a positive whole number').positive('must be a positive whole number');
const brokers = z
  .string()
  .transform((s) => s.split(',').map((b) => b.trim()).filter((b) => b.length > 0))
  .pipe(z.array(z.string().regex(/^[^\s:]+:\d{1,5}$/, 'each broker must be host:port')).min(1, 'at least one broker'));
const topicName = z.string().regex(/^[a-zA-Z0-9._-]{1,249}$/, 'must be a valid Kafka topic name');
const nonEmpty = z.string().min(1);
/** As KAFKA_CLIENTS and REBALANCE_PROTOCOLS in kafka/facade.ts (config sits below kafka: the names are written twice, the types must agree). */
const KAFKA_CLIENTS = ['platformatic', 'kafkajs'] as const;
const REBALANCE_PROTOCOLS = ['cooperative', 'eager'] as const;
/** A DuckDB memory size: 256MB, 1.5GiB, … (KB/MB/GB/TB powers of 1000, KiB/… of 1024; memoryBytes in the DuckDB sink reads the groups). */
export const MEMORY_SIZE = /^(\d+(?:\.\d+)?)\s*([KMGT])(i?)B$/i;
const memorySize = z.string().trim().regex(MEMORY_SIZE, 'must be a size like 256MB or 1GiB');
const fraction = z.coerce.number({ error: 'must be a number above 0 and at most 1' }).gt(0, 'must be a number above 0 and at most 1').max(1, 'must be a number above 0 and at most 1');

function setting<T>(env: string, flag: string, def: string, description: string, schema: z.ZodType<T>, more: Pick<Setting<T>, 'roleDefaults' | 'crossCheck'> = {}): Setting<T> {
  return { env, flag, default: def, description, schema, ...more };
}

export const kafkaSettings = {
  brokers: setting('KAFKA_BROKERS', 'brokers', '127.0.0.1:9092', 'Kafka bootstrap brokers, comma-separated', brokers),
  clientId: setting('KAFKA_CLIENT_ID', 'client-id', 'spanledger', 'Kafka client id', nonEmpty),
  topicPartitions: setting('TOPIC_PARTITIONS', 'topic-partitions', '6', 'partitions of a topic spanledger creates because it is missing', positiveInt),
  client: setting('KAFKA_CLIENT', 'kafka-client', 'platformatic', 'Kafka client library: platformatic (@platformatic/kafka) or kafkajs', z.enum(KAFKA_CLIENTS, { error: `must be one of ${KAFKA_CLIENTS.join(', ')}` })),
};

export const workerSettings = {
  metricsPort: setting('METRICS_PORT', 'metrics-port', '9464', 'port of /metrics, /healthz, /readyz and /status (0 = any free port)', z.coerce.number().int().min(0).max(65535)),
  statusAdvertiseAddress: setting('STATUS_ADVERTISE_ADDRESS', 'status-advertise-address', '', 'host:port where `spanledger status` reaches this worker\'s /status, carried in its Kafka client id (empty = this host\'s name and the metrics port actually bound)', z.string().trim().regex(new RegExp(`^$|${STATUS_ADDRESS_PATTERN.source}`), 'must be host:port (or empty)')),
  batchMaxRecords: setting('BATCH_MAX_RECORDS', 'batch-max-records', '1000', 'flush a partition buffer at this many records (an OTLP record counts its spans)', positiveInt, { roleDefaults: { signals: '10000' } }),
  batchMaxBytes: setting('BATCH_MAX_BYTES', 'batch-max-bytes', '4194304', 'flush a partition buffer at this many bytes of record values', positiveInt),
  batchMaxAgeMs: setting('BATCH_MAX_AGE_MS', 'batch-max-age-ms', '1000', 'flush a partition buffer when its oldest record is this old (ms)', positiveInt),
  flushWhenCaughtUp: setting('BATCH_FLUSH_WHEN_CAUGHT_UP', 'batch-flush-when-caught-up', 'true', 'also flush a partition as soon as nothing more is waiting in Kafka for it (low latency when not under backlog)', z.enum(['true', 'false']).transform((v) => v === 'true')),
  maxMessageBytes: setting('MAX_MESSAGE_BYTES', 'max-message-bytes', '1000000', 'records with a larger value are dead-lettered as RecordTooLarge', positiveInt),
  maxInFlightBytes: setting('MAX_IN_FLIGHT_BYTES', 'max-in-flight-bytes', '16777216', 'pause fetching while buffered and flushing records exceed this many bytes (fetch responses are sized from it: a quarter per response, a sixteenth per partition, at least 1 MiB)', positiveInt, { roleDefaults: { signals: String(64 * 1024 * 1024) } }),
  decodeThreads: setting('DECODE_THREADS', 'decode-threads', '0', 'worker threads that decode and validate records (0 = on the main thread; measured slower on 2 cores, see bench/README.md)', z.coerce.number({ error: 'must be a whole number from 0 to 64' }).int('must be a whole number from 0 to 64').min(0, 'must be a whole number from 0 to 64').max(64, 'must be a whole number from 0 to 64')),
  partitionsConcurrency: setting('PARTITIONS_CONCURRENCY', 'partitions-concurrency', '4', 'partitions processed concurrently by one worker', positiveInt),
  shutdownTimeoutMs: setting('SHUTDOWN_TIMEOUT_MS', 'shutdown-timeout-ms', '30000', 'graceful stop must finish within this time (ms), or the worker exits 1', positiveInt),
  sessionTimeoutMs: setting('KAFKA_SESSION_TIMEOUT_MS', 'session-timeout-ms', '30000', 'consumer group session timeout (ms)', positiveInt),
  rebalanceTimeoutMs: setting('KAFKA_REBALANCE_TIMEOUT_MS', 'rebalance-timeout-ms', '60000', 'consumer group rebalance timeout (ms)', positiveInt),
  heartbeatIntervalMs: setting('KAFKA_HEARTBEAT_INTERVAL_MS', 'heartbeat-interval-ms', '3000', 'consumer group heartbeat interval (ms)', positiveInt),
  rebalanceProtocol: setting(
    'KAFKA_REBALANCE_PROTOCOL',
    'rebalance-protocol',
    'cooperative',
    'how a worker group rebalances: cooperative (KIP-429 cooperative-sticky: partitions that stay keep flowing) or eager (every partition stops); kafkajs has only eager and runs eager with a warning',
    z.enum(REBALANCE_PROTOCOLS, { error: `must be one of ${REBALANCE_PROTOCOLS.join(', ')}` }),
  ),
  groupInstanceId: setting(
    'KAFKA_GROUP_INSTANCE_ID',
    'group-instance-id',
    '',
    'static membership (KIP-345): a worker restarting under the same id within the session timeout keeps its partitions without a rebalance; unique per worker of a group, e.g. the pod name (empty = dynamic membership; not with KAFKA_CLIENT=kafkajs)',
    z.string().trim().regex(/^$|^[\w.-]{1,249}$/, 'letters, digits and . _ - only (or empty)'),
  ),
  retryMaxDelayMs: setting('RETRY_MAX_DELAY_MS', 'retry-max-delay-ms', '30000', 'longest backoff between retries of a failed store write (ms)', positiveInt),
  backpressurePauseFraction: setting('BACKPRESSURE_PAUSE_FRACTION', 'backpressure-pause-fraction', '0.9', 'fetching pauses once buffered and flushing records exceed this fraction of MAX_IN_FLIGHT_BYTES', fraction),
  backpressureResumeFraction: setting('BACKPRESSURE_RESUME_FRACTION', 'backpressure-resume-fraction', '0.5', 'paused fetching resumes once they are back at or below this fraction of MAX_IN_FLIGHT_BYTES (below BACKPRESSURE_PAUSE_FRACTION)', fraction, {
    crossCheck: (v) =>
      v.backpressurePauseFraction === undefined || (v.backpressureResumeFraction as number) < (v.backpressurePauseFraction as number)
        ? undefined
        : `BACKPRESSURE_RESUME_FRACTION=${String(v.backpressureResumeFraction)} must be below BACKPRESSURE_PAUSE_FRACTION=${String(v.backpressurePauseFraction)}`,
  }),
  breakerFailureRate: setting('BREAKER_FAILURE_RATE', 'breaker-failure-rate', '0.5', 'a store\'s circuit breaker opens when more than this fraction of its calls in the window failed with a retriable error (0 < x < 1)', z.coerce.number().gt(0, 'must be above 0 and below 1').lt(1, 'must be above 0 and below 1')),
  breakerWindowMs: setting('BREAKER_WINDOW_MS', 'breaker-window-ms', '60000', 'the window a breaker judges the failure rate over (ms)', positiveInt),
  breakerMinCalls: setting('BREAKER_MIN_CALLS', 'breaker-min-calls', '5', 'calls to a store the window must hold before its breaker may open', positiveInt),
  breakerHalfOpenAfterMs: setting('BREAKER_HALF_OPEN_AFTER_MS', 'breaker-half-open-after-ms', '30000', 'an open breaker lets one probe call through after this long; the probe\'s success closes it (ms)', positiveInt),
  workerId: setting('WORKER_ID', 'worker-id', `${os.hostname()}-${process.pid}`, 'this worker\'s name in logs and dead-letter headers', z.string().regex(/^[\w.@:-]{1,200}$/, 'letters, digits and . _ - @ : only')),
  quarantineDir: setting('QUARANTINE_DIR', 'quarantine-dir', './data/quarantine', 'folder for dead letters the dead-letter topic refuses for good (too large, not authorized, topic gone)', nonEmpty),
  logLevel: setting('LOG_LEVEL', 'log-level', 'info', 'pino log level', z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])),
};

/**
 * A role's worker settings: the shared table with the role's own defaults (roleDefaults), every
 * setting otherwise as it is, cross-checks included.
 *
 * Signal workers flush larger batches: every tenant a flush touches costs the signal worker one
 * DuckDB transaction on the tenant's own file (about 2-4 ms of CPU however few its rows:
 * bench/README.md, issue 10); over 500 tenants, 10,000 records per partition flush used about 40%
 * less CPU per signal than 1,000 and held less memory (fewer, larger transactions). The in-flight
 * budget grows with it, or the budget would cut the batches short.
 */
export function workerSettingsFor(role: WorkerRoleName): typeof workerSettings {
  const entries = Object.entries(workerSettings).map(([key, spec]: [string, Setting]) => {
    const roleDefault = spec.roleDefaults?.[role];
    return [key, roleDefault === undefined ? spec : { ...spec, default: roleDefault }];
  });
  return Object.fromEntries(entries) as typeof workerSettings;
}

/**
 * The one rule across the Kafka and worker settings, checked when a worker is made: kafkajs has no
 * static membership, so KAFKA_GROUP_INSTANCE_ID needs KAFKA_CLIENT=platformatic. One line (a
 * ConfigError, exit 2) rather than a worker that silently joins as a dynamic member.
 */
export function checkKafkaClientSettings(kafka: { client: string }, worker: { groupInstanceId: string }): void {
  if (worker.groupInstanceId !== '' && kafka.client === 'kafkajs') {
    throw new ConfigError(`invalid configuration: KAFKA_GROUP_INSTANCE_ID=${worker.groupInstanceId} needs KAFKA_CLIENT=platformatic: kafkajs has no static membership (unset KAFKA_GROUP_INSTANCE_ID to run on kafkajs)`);
  }
}

/** The worker settings each role resolves at start. */
export const workerSettingsByRole: Record<WorkerRoleName, typeof workerSettings> = {
  spans: workerSettingsFor('spans'),
  rules: workerSettingsFor('rules'),
  signals: workerSettingsFor('signals'),
};

/** The signal worker's worker settings (see workerSettingsFor). */
export const signalWorkerSettings = workerSettingsByRole.signals;

export const spanSettings = {
  topic: setting('SPANS_TOPIC', 'topic', 'spans', 'topic the span workers read', topicName),
  dlqTopic: setting('SPANS_DLQ_TOPIC', 'dlq-topic', 'spans.dlq', 'dead-letter topic for spans', topicName),
  group: setting('SPANS_GROUP', 'group', 'spanledger-spans', 'consumer group of the span workers', nonEmpty),
  encoding: setting('SPANS_ENCODING', 'spans-encoding', 'auto', 'what span records hold: json (one spanledger span), otlp_proto or otlp_json (an OTLP ExportTraceServiceRequest, as the OpenTelemetry Collector\'s Kafka exporter writes), or auto (told apart per record)', z.enum(['auto', 'json', 'otlp_proto', 'otlp_json'])),
  tenantAttribute: setting('TENANT_ATTRIBUTE', 'tenant-attribute', 'tenant.id', 'resource attribute naming an OTLP span\'s tenant when the record has no tenant-id header', nonEmpty),
  spanlogDir: setting('SPANLOG_DIR', 'spanlog-dir', './data/spanlog', 'folder of the span log (per tenant, per UTC day)', nonEmpty),
  lockStaleMs: setting('SPANLOG_LOCK_STALE_MS', 'lock-stale-ms', '10000', 'a partition lock not refreshed for this long is taken over (ms, >= 2000)', z.coerce.number().int().min(2000)),
  maxOpenFiles: setting('SPANLOG_MAX_OPEN_FILES', 'spanlog-max-open-files', '512', 'file descriptors the span log holds at most (least recently used segments are fdatasynced and closed first)', positiveInt),
};

export const signalSettings = {
  topic: setting('SIGNALS_TOPIC', 'topic', 'signals', 'topic the signal workers read', topicName),
  dlqTopic: setting('SIGNALS_DLQ_TOPIC', 'dlq-topic', 'signals.dlq', 'dead-letter topic for signals', topicName),
  group: setting('SIGNALS_GROUP', 'group', 'spanledger-signals', 'consumer group of the signal workers', nonEmpty),
  duckdbDir: setting('DUCKDB_DIR', 'duckdb-dir', './data/duckdb', 'folder of the per-tenant DuckDB databases', nonEmpty),
  duckdbMaxRowsPerTxn: setting('DUCKDB_MAX_ROWS_PER_TXN', 'duckdb-max-rows-per-txn', '10000', 'most rows one DuckDB transaction writes', positiveInt),
  duckdbMaxOpenTenants: setting('DUCKDB_MAX_OPEN_TENANTS', 'duckdb-max-open-tenants', '1024', 'most tenant databases attached at once (the least recently used idle one is detached); each holds 2 file descriptors', positiveInt),
  duckdbMemoryLimit: setting('DUCKDB_MEMORY_LIMIT', 'duckdb-memory-limit', '256MB', 'DuckDB memory_limit of the worker\'s one DuckDB instance, shared by every attached tenant database (e.g. 256MB, 1GiB)', memorySize),
  duckdbThreads: setting('DUCKDB_THREADS', 'duckdb-threads', '1', 'DuckDB threads of the worker\'s one DuckDB instance', positiveInt),
  duckdbConnections: setting('DUCKDB_CONNECTIONS', 'duckdb-connections', '4', 'DuckDB connections of the worker: how many tenant databases are written at the same time', positiveInt),
  duckdbIdleTimeoutMs: setting('DUCKDB_IDLE_TIMEOUT_MS', 'duckdb-idle-timeout-ms', '60000', 'detach a tenant database unused for this long (ms; releases its file lock)', positiveInt),
  duckdbAppendMaxRows: setting('DUCKDB_APPEND_MAX_ROWS', 'duckdb-append-max-rows', '64', 'a tenant write of at most this many new rows goes through an appender straight into its table (cheaper small transactions; 0 = always the staged INSERT)', z.coerce.number().int().min(0)),
  duckdbCheckpointAtMemoryFraction: setting('DUCKDB_CHECKPOINT_AT_MEMORY_FRACTION', 'duckdb-checkpoint-at-memory-fraction', '0.6', 'checkpoint the least recently written tenant databases while DuckDB memory is above this fraction of DUCKDB_MEMORY_LIMIT (0 = never)', z.coerce.number().min(0).lt(1)),
  duckdbCheckpointWalSize: setting('DUCKDB_CHECKPOINT_WAL_SIZE', 'duckdb-checkpoint-wal-size', '256KB', 'DuckDB checkpoint_threshold: a tenant database checkpoints once its write-ahead log passes this size, writing its new rows into its file (blocks DuckDB can then drop instead of spilling) and keeping the log small (e.g. 256KB, 16MB)', memorySize),
  duckdbAcquireTimeoutMs: setting('DUCKDB_ACQUIRE_TIMEOUT_MS', 'duckdb-acquire-timeout-ms', '60000', 'a DuckDB write waiting longer than this for a tenant database\'s file lock held by another process (counted by the duckdb circuit breaker), a connection or its tenant\'s turn (a wait inside this worker, not counted) fails as retriable (ms)', positiveInt),
  duckdbMaxHoldMs: setting('DUCKDB_MAX_HOLD_MS', 'duckdb-max-hold-ms', '5000', 'hand a tenant database held this long over to another process waiting for its file lock (ms)', positiveInt),
  tbAddress: setting('TB_ADDRESS', 'tb-address', '3000', 'TigerBeetle replica addresses, comma-separated (port or host:port)', z.string().regex(/^[\w.:,\[\]-]+$/, 'comma-separated ports or host:port')),
  tbClusterId: setting('TB_CLUSTER_ID', 'tb-cluster-id', '0', 'TigerBeetle cluster id', z.string().regex(/^\d{1,39}$/, 'must be an unsigned integer').transform((s) => BigInt(s)).refine((id) => id < 1n << 128n, 'must be below 2^128')),
  tbLedger: setting('TB_LEDGER', 'tb-ledger', '1', 'TigerBeetle ledger of the signal accounts', z.coerce.number().int().min(1).max(2 ** 32 - 1)),
  tbMaxBatch: setting('TB_MAX_BATCH', 'tb-max-batch', '8189', 'most transfers in one createTransfers request (cluster maximum 8189)', z.coerce.number().int().min(1).max(8189)),
  tbRequestTimeoutMs: setting('TB_REQUEST_TIMEOUT_MS', 'tb-request-timeout-ms', '10000', 'a TigerBeetle request not answered in this time is retried (ms)', positiveInt),
};

export const ruleSettings = {
  topic: setting('RULES_TOPIC', 'rules-topic', 'rules', 'compacted topic holding every tenant\'s rules (key <tenant>/<rule id>)', topicName),
};

export type Settings = Record<string, Setting>;

export type Parsed<S extends Settings> = { [K in keyof S]: S[K] extends Setting<infer T> ? T : never };

/**
 * The rule worker's own settings. It also reads SPANS_TOPIC, SPANS_ENCODING and TENANT_ATTRIBUTE
 * (spanSettings), RULES_TOPIC (ruleSettings) and produces to SIGNALS_TOPIC (signalSettings).
 */
export const ruleWorkerSettings = {
  group: setting('RULES_GROUP', 'group', 'spanledger-rules', 'consumer group of the rule workers (reads SPANS_TOPIC beside the span workers)', nonEmpty),
  dlqTopic: setting('RULES_DLQ_TOPIC', 'dlq-topic', 'spans.rules.dlq', 'dead-letter topic of the rule workers (span records they cannot decode)', topicName),
  checkpointTopic: setting('RULES_CHECKPOINT_TOPIC', 'checkpoint-topic', 'rules.checkpoints', 'compacted topic where rule workers keep, per partition, which traces were open at their last commit (recovery without re-counting)', topicName),
  traceIdleMs: setting('TRACE_IDLE_MS', 'trace-idle-ms', '10000', 'a trace is complete after this long without a new span, in event time (record timestamps), or in wall-clock time on a partition that receives nothing (ms)', positiveInt),
  traceMaxAgeMs: setting('TRACE_MAX_AGE_MS', 'trace-max-age-ms', '3600000', 'a trace open this long (event time) is evaluated as a segment and goes on as the next segment (ms)', positiveInt),
  maxOpenTraces: setting('MAX_OPEN_TRACES', 'max-open-traces', '20000', 'open traces one worker holds at most; at the cap the oldest trace of the partition that needs room is evaluated early', positiveInt),
  maxOpenTraceBytes: setting('MAX_OPEN_TRACE_BYTES', 'max-open-trace-bytes', '134217728', 'memory the open traces of one worker may hold, each counted at its upper bound (its state depends on the rules, not on its spans); at the cap as at MAX_OPEN_TRACES', positiveInt),
  closedTraceMemory: setting('CLOSED_TRACE_MEMORY', 'closed-trace-memory', '20000', 'closed traces remembered so that their late spans are counted instead of evaluated alone', positiveInt),
  checkpointIntervalMs: setting('RULES_CHECKPOINT_INTERVAL_MS', 'checkpoint-interval-ms', '2000', 'a partition\'s checkpoint (and so its commit) moves at most this often while traces are open (ms)', positiveInt),
};

/** ARCHIVE_PREFIX: empty, or path segments of safe characters without a leading or trailing '/' (as sinks/archive/keys.ts reads keys back). */
const archivePrefix = z.string().trim().regex(/^$|^[A-Za-z0-9._=-]+(?:\/[A-Za-z0-9._=-]+)*$/, "empty, or folders of letters, digits and . _ = - separated by '/' (no leading or trailing '/')");
const bucketName = z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be an S3 bucket name (3-63 lower-case letters, digits, dots, hyphens)');
const httpUrl = z.string().trim().regex(/^$|^https?:\/\/[^\s/]+(?:\/[^\s]*)?$/, 'must be an http(s) URL (or empty for the AWS endpoint of the region)');
const trueFalse = z.enum(['true', 'false']).transform((v) => v === 'true');

/**
 * The archive worker's own settings (`spanledger worker archive`). It also reads SPANS_TOPIC,
 * SPANS_ENCODING and TENANT_ATTRIBUTE (spanSettings). Credentials and region come from the
 * standard AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, AWS_REGION, web
 * identity, instance metadata), never from a setting of spanledger's.
 */
export const archiveSettings = {
  group: setting('ARCHIVE_GROUP', 'group', 'spanledger-archive', 'consumer group of the archive workers (reads SPANS_TOPIC beside the span and rule workers)', nonEmpty),
  dlqTopic: setting('ARCHIVE_DLQ_TOPIC', 'dlq-topic', 'spans.archive.dlq', 'dead-letter topic of the archive workers (span records they cannot decode)', topicName),
  endpoint: setting('ARCHIVE_ENDPOINT', 'endpoint', '', 'S3 endpoint URL of an S3-compatible store (empty = AWS S3 of AWS_REGION)', httpUrl),
  bucket: setting('ARCHIVE_BUCKET', 'bucket', 'spanledger', 'bucket the archive objects go to (it must exist)', bucketName),
  prefix: setting('ARCHIVE_PREFIX', 'prefix', 'spans', 'folder of the archive in the bucket: objects are <prefix>/tenant=<uuid>/day=<YYYY-MM-DD>/<topic>+<partition>+<first position>.parquet (empty = the bucket root)', archivePrefix),
  forcePathStyle: setting('ARCHIVE_FORCE_PATH_STYLE', 'force-path-style', 'false', 'path-style addressing (<endpoint>/<bucket>/<key>) instead of virtual-hosted (<bucket>.<endpoint>/<key>): most S3-compatible servers need true', trueFalse),
  cycleMaxRecords: setting('ARCHIVE_CYCLE_MAX_RECORDS', 'cycle-max-records', '100000', 'a partition\'s cycle (the spans that become one object per tenant-day) ends at this many spans', positiveInt),
  cycleMaxBytes: setting('ARCHIVE_CYCLE_MAX_BYTES', 'cycle-max-bytes', '8388608', 'a cycle ends at this many bytes of records (at most MAX_IN_FLIGHT_BYTES)', positiveInt),
  cycleMaxAgeMs: setting('ARCHIVE_CYCLE_MAX_AGE_MS', 'cycle-max-age-ms', '60000', 'a cycle ends when its oldest record is this old (ms): how late spans reach the archive at most, under light load; a caught-up partition is also cut, at most once per this interval', positiveInt),
  scratchDir: setting('ARCHIVE_SCRATCH_DIR', 'scratch-dir', path.join(os.tmpdir(), 'spanledger-archive'), 'local scratch folder for a cycle\'s files until they are uploaded (ephemeral: losing it loses nothing committed)', nonEmpty),
  requestTimeoutMs: setting('ARCHIVE_REQUEST_TIMEOUT_MS', 'request-timeout-ms', '30000', 'an S3 request not answered in this time fails and is retried (ms)', positiveInt),
  partSizeBytes: setting('ARCHIVE_PART_SIZE_BYTES', 'part-size-bytes', '8388608', 'objects larger than this are uploaded in parts of this size (multipart; at least 5242880)', z.coerce.number().int().min(5 * 1024 * 1024, 'must be at least 5242880 (5 MiB, the S3 minimum part)')),
  duckdbMemoryLimit: setting('ARCHIVE_DUCKDB_MEMORY_LIMIT', 'archive-duckdb-memory-limit', '256MB', 'memory_limit of the DuckDB instance that writes the Parquet files (e.g. 256MB, 1GiB)', memorySize),
};

/** Worker settings the archive worker takes from its cycle bounds instead (ARCHIVE_CYCLE_*; it never flushes only because it caught up). */
type CycleKeys = 'batchMaxRecords' | 'batchMaxBytes' | 'batchMaxAgeMs' | 'flushWhenCaughtUp';

/**
 * The archive worker's worker settings: the shared table without the batch settings (its cycles
 * are bounded by ARCHIVE_CYCLE_*), with a larger in-flight budget (a cycle of each partition it
 * holds is buffered at once).
 */
export const archiveWorkerSettings: Omit<typeof workerSettings, CycleKeys> = (() => {
  const { batchMaxRecords: _r, batchMaxBytes: _b, batchMaxAgeMs: _a, flushWhenCaughtUp: _f, ...rest } = workerSettings;
  return { ...rest, maxInFlightBytes: { ...rest.maxInFlightBytes, default: String(64 * 1024 * 1024) } };
})();

/** The full worker settings of an archive worker: its own, with the batch limits taken from the cycle bounds. */
export function archiveWorkerConfig(worker: Parsed<typeof archiveWorkerSettings>, archive: Parsed<typeof archiveSettings>): Parsed<typeof workerSettings> {
  if (archive.cycleMaxBytes > worker.maxInFlightBytes) {
    throw new ConfigError(`invalid configuration: ARCHIVE_CYCLE_MAX_BYTES=${archive.cycleMaxBytes} must be at most MAX_IN_FLIGHT_BYTES=${worker.maxInFlightBytes} (a cycle is buffered whole)`);
  }
  return { ...worker, batchMaxRecords: archive.cycleMaxRecords, batchMaxBytes: archive.cycleMaxBytes, batchMaxAgeMs: archive.cycleMaxAgeMs, flushWhenCaughtUp: false };
}
