import os from 'node:os';
import path from 'node:path';
import { Option, type Command } from 'commander';
import { archiveSettings, kafkaSettings, spanSettings, workerSettings, type Parsed } from '../config/settings.js';
import { ConfigError } from '../errors.js';
import { createKafkaFacade } from '../kafka/client.js';
import { canonicalTenantId } from '../model/tenant.js';
import { createLogger } from '../observability/logger.js';
import { listArchive, mapConcurrently } from '../sinks/archive/catalog.js';
import type { ObjectStore } from '../sinks/archive/object-store.js';
import type { VerifyReport } from './archive-verify.js';
import { Progress } from './dlq-command.js';
import { addSettings, settingsOf } from './options.js';
import { makeTable } from './table.js';

/** Where the archive is (the worker's own settings of it). */
const storeSettings = {
  endpoint: archiveSettings.endpoint,
  bucket: archiveSettings.bucket,
  prefix: archiveSettings.prefix,
  forcePathStyle: archiveSettings.forcePathStyle,
  requestTimeoutMs: archiveSettings.requestTimeoutMs,
};

const cacheOption = () => new Option('--cache-dir <dir>', 'local cache of downloaded archive objects (keyed by ETag: a replaced object is fetched again)').env('ARCHIVE_CACHE_DIR').default(path.join(os.tmpdir(), 'spanledger-archive-cache'));

/**
 * The bucket's client. The AWS SDK (and, in the commands that read objects, DuckDB) is loaded on
 * first use: a process that never touches the archive skips ~0.2 s of CPU and ~35 MiB for each.
 */
export async function openStore(s: Parsed<typeof storeSettings>): Promise<ObjectStore> {
  const { ObjectStore } = await import('../sinks/archive/object-store.js');
  return new ObjectStore({ endpoint: s.endpoint, bucket: s.bucket, forcePathStyle: s.forcePathStyle, requestTimeoutMs: s.requestTimeoutMs, partSizeBytes: archiveSettings.partSizeBytes.schema.parse(archiveSettings.partSizeBytes.default) });
}

function tenantArg(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const tenant = canonicalTenantId(value);
  if (tenant === undefined) throw new ConfigError(`--tenant must be a UUID (got ${JSON.stringify(value)})`);
  return tenant;
}

function dayArg(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{4}-\d{2}-\d{2}$/.test(value)) throw new ConfigError(`--day must be YYYY-MM-DD (got ${JSON.stringify(value)})`);
  return value;
}

export function renderVerifyReport(r: VerifyReport): string {
  const table = makeTable({ head: ['partition', 'log start', 'committed'] });
  for (const p of r.ranges) table.push([p.partition, String(p.low), p.committed === null ? '(none)' : String(p.committed)]);
  const lines = [
    `archive verify: topic ${r.topic}, group ${r.group}`,
    table.toString(),
    `objects ${r.objects}; spans expected ${r.expectedSpans}, archived ${r.archivedSpans}; duplicates ${r.duplicates}, missing ${r.missing}, unexpected ${r.unexpected}, misnamed objects ${r.misnamed}; past the committed offset ${r.pastCommitted}`,
    ...r.problems.map((p) => `  ${p}`),
    r.ok ? 'OK: every position of the committed range is archived exactly once' : 'FAILED',
  ];
  return lines.join('\n');
}

export interface ArchiveSummaryRow {
  tenantId: string;
  day: string;
  /** Set for one row per object. */
  key?: string;
  objects: number;
  spans: number;
  bytes: number;
}

/** Objects, spans (their x-amz-meta-spans) and bytes per tenant-day, or per object. */
export async function archiveSummary(store: ObjectStore, prefix: string, filter: { tenantId?: string; day?: string }, perObject = false): Promise<ArchiveSummaryRow[]> {
  const objects = await listArchive(store, prefix, filter);
  const progress = new Progress('reading object metadata');
  const spans = await mapConcurrently(objects, 16, async (o, i) => {
    progress.update(i + 1, objects.length);
    return Number((await store.metadata(o.key)).spans ?? 0);
  });
  progress.stop();
  if (perObject) return objects.map((o, i) => ({ tenantId: o.tenantId, day: o.day, key: o.key, objects: 1, spans: spans[i]!, bytes: o.size }));
  const byTenantDay = new Map<string, ArchiveSummaryRow>();
  objects.forEach((o, i) => {
    const k = `${o.tenantId}/${o.day}`;
    const row = byTenantDay.get(k) ?? { tenantId: o.tenantId, day: o.day, objects: 0, spans: 0, bytes: 0 };
    row.objects += 1;
    row.spans += spans[i]!;
    row.bytes += o.size;
    byTenantDay.set(k, row);
  });
  return [...byTenantDay.values()];
}

export function renderArchiveSummary(where: string, rows: ArchiveSummaryRow[], perObject = false): string {
  const table = makeTable({ head: perObject ? ['key', 'spans', 'bytes'] : ['tenant', 'day', 'objects', 'spans', 'bytes'] });
  for (const r of rows) table.push(perObject ? [r.key!, r.spans, r.bytes] : [r.tenantId, r.day, r.objects, r.spans, r.bytes]);
  const spans = rows.reduce((n, r) => n + r.spans, 0);
  const bytes = rows.reduce((n, r) => n + r.bytes, 0);
  table.push(perObject ? ['total', spans, bytes] : ['total', '', rows.reduce((n, r) => n + r.objects, 0), spans, bytes]);
  return `archive ${where}\n${table.toString()}`;
}

/** `spanledger archive ls|verify` and `spanledger query`. */
export function addArchiveCommands(program: Command): void {
  const archive = program.command('archive').description('the Parquet archive of the archive workers (S3-compatible bucket)');

  addSettings(
    archive
      .command('ls')
      .description('archive objects per tenant and day: objects, spans, bytes')
      .option('--tenant <uuid>', 'only this tenant')
      .option('--day <YYYY-MM-DD>', 'only this day')
      .option('--objects', 'one line per object instead of per tenant-day', false)
      .option('--json', 'JSON lines instead of a table', false),
    storeSettings,
  ).action(async (flags: { tenant?: string; day?: string; objects: boolean; json: boolean }, cmd: Command) => {
    const s = settingsOf(cmd, storeSettings);
    const store = await openStore(s);
    try {
      const rows = await archiveSummary(store, s.prefix, { tenantId: tenantArg(flags.tenant), day: dayArg(flags.day) }, flags.objects);
      if (flags.json) {
        for (const row of rows) console.log(JSON.stringify(row));
        return;
      }
      console.log(renderArchiveSummary(`s3://${s.bucket}/${s.prefix}`, rows, flags.objects));
    } finally {
      store.close();
    }
  });

  const verifySpanSettings = { encoding: spanSettings.encoding, tenantAttribute: spanSettings.tenantAttribute };
  const verifyGroup = { group: archiveSettings.group, maxMessageBytes: workerSettings.maxMessageBytes };
  const verifyCmd = archive
    .command('verify')
    .description('check that every span position of the archive group\'s committed range of a topic is archived exactly once (exit 1 otherwise)')
    .requiredOption('--topic <topic>', 'the spans topic the archive workers read')
    .option('--json', 'the report as JSON', false)
    .addOption(cacheOption());
  for (const group of [verifyGroup, verifySpanSettings, storeSettings, kafkaSettings]) addSettings(verifyCmd, group);
  verifyCmd.action(async (flags: { topic: string; json: boolean; cacheDir: string }, cmd: Command) => {
    const s = settingsOf(cmd, storeSettings);
    const group = settingsOf(cmd, verifyGroup);
    const spans = settingsOf(cmd, verifySpanSettings);
    const kafka = settingsOf(cmd, kafkaSettings);
    const client = await createKafkaFacade({ client: kafka.client, brokers: kafka.brokers, clientId: kafka.clientId, logger: createLogger('error') });
    const store = await openStore(s);
    const bars = new Map<string, Progress>();
    try {
      const { verifyArchive } = await import('./archive-verify.js');
      const report = await verifyArchive(client, store, {
        topic: flags.topic,
        group: group.group,
        prefix: s.prefix,
        decoder: { maxMessageBytes: group.maxMessageBytes, options: spans },
        cacheDir: flags.cacheDir,
        onProgress: (what, done, total) => {
          let bar = bars.get(what);
          if (bar === undefined) bars.set(what, (bar = new Progress(what)));
          bar.update(done, Math.max(done, total));
        },
      });
      for (const bar of bars.values()) bar.stop();
      console.log(flags.json ? JSON.stringify(report, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) : renderVerifyReport(report));
      process.exitCode = report.ok ? 0 : 1;
    } finally {
      store.close();
    }
  });

  const queryCmd = program
    .command('query')
    .description('run DuckDB SQL over one tenant-day: the view `spans` is its archive objects (downloaded into the cache), `spanlog` its local span log segments when SPANLOG_DIR holds any')
    .argument('<sql>', 'the SQL, e.g. "SELECT name, count(*) FROM spans GROUP BY name"')
    .requiredOption('--tenant <uuid>', 'the tenant')
    .requiredOption('--day <YYYY-MM-DD>', 'the UTC day')
    .option('--json', 'JSON lines instead of a table', false)
    .addOption(cacheOption())
    .addOption(new Option(`--${spanSettings.spanlogDir.flag} <dir>`, spanSettings.spanlogDir.description).env(spanSettings.spanlogDir.env).default(spanSettings.spanlogDir.default));
  addSettings(queryCmd, storeSettings).action(async (sql: string, flags: { tenant: string; day: string; json: boolean; cacheDir: string; spanlogDir: string }, cmd: Command) => {
    const s = settingsOf(cmd, storeSettings);
    const store = await openStore(s);
    const progress = new Progress('downloading objects');
    try {
      const { queryTenantDay } = await import('./archive-query.js');
      const result = await queryTenantDay(store, sql, { tenantId: tenantArg(flags.tenant)!, day: dayArg(flags.day)!, prefix: s.prefix, cacheDir: flags.cacheDir, spanlogDir: flags.spanlogDir, onProgress: (d, t) => progress.update(d, t) });
      progress.stop();
      if (flags.json) {
        for (const row of result.rows) console.log(JSON.stringify(Object.fromEntries(result.columns.map((c, i) => [c, row[i]]))));
        return;
      }
      const table = makeTable({ head: result.columns });
      for (const row of result.rows) table.push(row.map((v) => (v === null ? 'NULL' : typeof v === 'object' ? JSON.stringify(v) : String(v))));
      process.stderr.write(`${result.objects} archive object(s), ${result.segments} span log segment(s); ${result.rows.length} row(s)\n`);
      console.log(table.toString());
    } finally {
      store.close();
    }
  });
}
