import { DuckDBInstance } from '@duckdb/node-api';
import type { KafkaFacade } from '../kafka/facade.js';
import { readTopicRange } from '../kafka/topic-range.js';
import { SpanDecoder, type SpanDecoderOptions } from '../model/decode.js';
import { listArchive, ObjectCache, type ArchiveObject } from '../sinks/archive/catalog.js';
import { sqlString } from '../sinks/archive/columns.js';
import { positionText } from '../sinks/archive/keys.js';
import type { ObjectStore } from '../sinks/archive/object-store.js';

/** Problems listed by name at most (the counts are always whole). */
const MAX_LISTED = 20;

export interface PartitionRange {
  partition: number;
  /** The log start offset: earlier records are gone (retention) and cannot be checked. */
  low: bigint;
  /** The archive group's committed offset (null: nothing committed). */
  committed: bigint | null;
}

export interface VerifyReport {
  topic: string;
  group: string;
  ranges: PartitionRange[];
  objects: number;
  /** Spans the records of the committed ranges hold (dead-lettered records hold none). */
  expectedSpans: number;
  /** Archived spans at positions inside the committed ranges. */
  archivedSpans: number;
  /** Positions archived more than once (each extra copy counts). */
  duplicates: number;
  /** Positions of the committed ranges that no object holds. */
  missing: number;
  /** Archived positions inside the committed ranges that are no span of a valid record. */
  unexpected: number;
  /** Objects whose name does not say their first position, partition or tenant. */
  misnamed: number;
  /** Archived spans past the committed offset (a cycle uploaded and not committed yet: not an error). */
  pastCommitted: number;
  problems: string[];
  ok: boolean;
}

export interface VerifyOptions {
  topic: string;
  group: string;
  prefix: string;
  decoder: { maxMessageBytes: number; options: Pick<SpanDecoderOptions, 'encoding' | 'tenantAttribute'> };
  cacheDir: string;
  onProgress?: (what: string, done: number, total: number) => void;
}

/**
 * `archive verify`: every span position of the group's committed range of `topic` (from each
 * partition's log start to its committed offset) is in exactly one archive object, and no object
 * holds anything else there. The expected positions come from reading the records again and
 * decoding them as the archive worker does (a record it dead-letters holds none); the archived
 * ones from the objects themselves (their kafka_* columns), downloaded into the cache.
 */
export async function verifyArchive(kafka: KafkaFacade, store: ObjectStore, options: VerifyOptions): Promise<VerifyReport> {
  const { topic, group } = options;
  const admin = kafka.admin();
  await admin.connect();
  let ranges: PartitionRange[];
  try {
    const offsets = await admin.topicOffsets(topic);
    const committed = new Map((await admin.committedOffsets(group, [topic])).filter((c) => c.topic === topic).map((c) => [c.partition, c.offset]));
    ranges = offsets.map((o) => ({ partition: o.partition, low: o.low, committed: committed.get(o.partition) ?? null })).sort((a, b) => a.partition - b.partition);
  } finally {
    await admin.disconnect();
  }
  const ends = new Map(ranges.filter((r) => r.committed !== null).map((r) => [r.partition, r.committed!]));
  const expected = new Map<number, Map<bigint, number>>();
  const decoder = new SpanDecoder(options.decoder.maxMessageBytes, { ...options.decoder.options, withDay: true });
  let expectedSpans = 0;
  const totalRecords = ranges.reduce((n, r) => n + Number(r.committed === null || r.committed < r.low ? 0n : r.committed - r.low), 0);
  await readTopicRange(
    kafka,
    topic,
    ends,
    (partition, message) => {
      const decoded = decoder.decode({ value: message.value, headers: message.headers ?? {} });
      if (!decoded.ok) return;
      let byOffset = expected.get(partition);
      if (byOffset === undefined) expected.set(partition, (byOffset = new Map()));
      byOffset.set(message.offset, decoded.items.length);
      expectedSpans += decoded.items.length;
    },
    (read) => options.onProgress?.('reading records', read, totalRecords),
  );

  const objects = await listArchive(store, options.prefix, { topic });
  const files = await new ObjectCache(store, options.cacheDir).files(objects, (done, total) => options.onProgress?.('downloading objects', done, total));
  const report: VerifyReport = { topic, group, ranges, objects: objects.length, expectedSpans, archivedSpans: 0, duplicates: 0, missing: 0, unexpected: 0, misnamed: 0, pastCommitted: 0, problems: [], ok: false };
  const problem = (line: string) => {
    if (report.problems.length < MAX_LISTED) report.problems.push(line);
  };
  if (objects.length > 0) await checkObjects(objects, files, ranges, expected, report, problem);
  for (const [partition, byOffset] of expected) {
    for (const [offset, spans] of byOffset) {
      report.missing += spans;
      problem(`missing: partition ${partition} offset ${offset} (${spans} span${spans === 1 ? '' : 's'})`);
    }
  }
  report.ok = report.duplicates === 0 && report.missing === 0 && report.unexpected === 0 && report.misnamed === 0;
  return report;
}

/** Compares the objects' positions with `expected` (removing what it found there) and checks their names. */
async function checkObjects(objects: ArchiveObject[], files: string[], ranges: PartitionRange[], expected: Map<number, Map<bigint, number>>, report: VerifyReport, problem: (line: string) => void): Promise<void> {
  const db = await DuckDBInstance.create(':memory:', { threads: '1' });
  const c = await db.connect();
  try {
    await c.run(`CREATE TABLE names (file VARCHAR, key VARCHAR, tenant VARCHAR, part INTEGER, first_offset BIGINT, first_index INTEGER)`);
    const appender = await c.createAppender('names');
    objects.forEach((o, i) => {
      appender.appendVarchar(files[i]!);
      appender.appendVarchar(o.key);
      appender.appendVarchar(o.tenantId);
      appender.appendInteger(o.partition);
      appender.appendBigInt(o.first.offset);
      appender.appendInteger(o.first.index);
      appender.endRow();
    });
    appender.closeSync();
    await c.run(`CREATE VIEW rows AS SELECT filename AS file, kafka_partition AS p, kafka_offset AS o, kafka_index AS i, tenant_id FROM read_parquet([${files.map(sqlString).join(', ')}], filename = true)`);
    // Each object's name: its rows' partition and tenant, and its first row's position.
    const misnamed = await c.runAndReadAll(
      `SELECT n.key FROM names n JOIN (SELECT file, min(p) AS lo_p, max(p) AS hi_p, min(tenant_id) AS lo_t, max(tenant_id) AS hi_t, arg_min(o, (o, i)) AS fo, arg_min(i, (o, i)) AS fi FROM rows GROUP BY file) r USING (file)
       WHERE r.lo_p <> n.part OR r.hi_p <> n.part OR r.lo_t <> n.tenant OR r.hi_t <> n.tenant OR r.fo <> n.first_offset OR r.fi <> n.first_index ORDER BY n.key`,
    );
    for (const [key] of misnamed.getRows()) {
      report.misnamed += 1;
      problem(`misnamed: ${String(key)} (its rows' partition, tenant or first position differ from its name)`);
    }
    const committed = new Map(ranges.map((r) => [r.partition, r]));
    const positions = await c.runAndReadAll(`SELECT p, o, count(*) AS n, count(DISTINCT i) AS d, min(i) AS lo, max(i) AS hi FROM rows GROUP BY p, o ORDER BY p, o`);
    for (const row of positions.getRows()) {
      const partition = Number(row[0]);
      const offset = BigInt(row[1] as bigint);
      const n = Number(row[2]);
      const distinct = Number(row[3]);
      const range = committed.get(partition);
      if (range === undefined || range.committed === null || offset >= range.committed) {
        report.pastCommitted += n;
        continue;
      }
      if (offset < range.low) continue;
      report.archivedSpans += n;
      const spans = expected.get(partition)?.get(offset);
      if (spans === undefined) {
        report.unexpected += n;
        problem(`unexpected: partition ${partition} offset ${offset} is no valid span record but ${n} archived row(s) say so`);
        continue;
      }
      expected.get(partition)!.delete(offset);
      if (n > distinct) {
        report.duplicates += n - distinct;
        problem(`duplicate: partition ${partition} offset ${offset}: ${n} rows for ${distinct} position(s)`);
      }
      const lo = Number(row[4]);
      const hi = Number(row[5]);
      if (lo < 0 || hi >= spans) {
        report.unexpected += 1;
        problem(`unexpected: partition ${partition} offset ${offset}: index ${lo < 0 ? lo : hi} outside the record's ${spans} span(s)`);
      }
      if (distinct < spans) {
        report.missing += spans - distinct;
        problem(`missing: partition ${partition} offset ${offset}: ${distinct} of ${spans} spans archived (first ${positionText({ offset, index: lo })})`);
      }
    }
  } finally {
    c.closeSync();
    db.closeSync();
  }
}
