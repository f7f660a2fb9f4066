import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { DuckDBInstance } from '@duckdb/node-api';
import type { Kafka } from 'kafkajs';
import { generateSpan, tenantIdFor } from '../../src/model/generate.js';
import { generateOtlpRequest } from '../../src/model/generate-otlp.js';
import { spanDay } from '../../src/model/span.js';
import { storedSpan, type StoredSpan } from '../../src/model/span-line.js';
import { CLI, ROOT, createTopic, uniqueName } from './harness.js';
import type { S3Server } from './s3.js';

const run = promisify(execFile);

export interface ExpectedSpan {
  tenantId: string;
  day: string;
  span: StoredSpan;
}

/** A fresh spans topic, archive group and prefix, and an archive worker's env for them and `s3`. */
export async function createArchiveSetup(kafka: Kafka, brokers: string, s3: S3Server, partitions: number, extraEnv: Record<string, string> = {}) {
  const topic = uniqueName('spans');
  const dlqTopic = `${topic}.archive.dlq`;
  const group = uniqueName('archive');
  const prefix = uniqueName('archive');
  await createTopic(kafka, topic, partitions);
  await createTopic(kafka, dlqTopic, 1);
  const env: Record<string, string> = {
    ...s3.env,
    KAFKA_BROKERS: brokers,
    KAFKA_CLIENT: process.env.KAFKA_CLIENT!,
    SPANS_TOPIC: topic,
    ARCHIVE_DLQ_TOPIC: dlqTopic,
    ARCHIVE_GROUP: group,
    ARCHIVE_PREFIX: prefix,
    ARCHIVE_CYCLE_MAX_AGE_MS: '500',
    KAFKA_SESSION_TIMEOUT_MS: '8000',
    KAFKA_REBALANCE_TIMEOUT_MS: '10000',
    KAFKA_HEARTBEAT_INTERVAL_MS: '1000',
    ...extraEnv,
  };
  return { topic, dlqTopic, group, prefix, env, objectsDir: path.join(s3.dataDir, s3.bucket, prefix) };
}

export type ArchiveSetup = Awaited<ReturnType<typeof createArchiveSetup>>;

/**
 * Produces `json` spanledger JSON spans and `otlp` OTLP requests (`spansPerRequest` spans each,
 * alternating protobuf and JSON) over `tenants` tenants and three UTC days. Returns every span by
 * id, as it must be stored.
 */
export async function produceMixedSpans(kafka: Kafka, topic: string, counts: { json: number; otlp: number; spansPerRequest?: number; tenants: number; from?: number }): Promise<Map<string, ExpectedSpan>> {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const expected = new Map<string, ExpectedSpan>();
  const from = counts.from ?? 0;
  const dayMs = (i: number) => Date.UTC(2026, 10, 22 + (i % 3), 12);
  try {
    for (let start = 0; start < counts.json; start += 500) {
      const messages = [];
      for (let i = from + start; i < from + Math.min(start + 500, counts.json); i += 1) {
        const tenantId = tenantIdFor(i % counts.tenants);
        const span = generateSpan(tenantId, i, dayMs(i));
        expected.set(span.spanId, { tenantId, day: spanDay(span)!, span: storedSpan(span, tenantId) });
        if (i % 3 === 0) {
          const { tenantId: _t, ...body } = span;
          messages.push({ key: tenantId, value: JSON.stringify(body), headers: { 'tenant-id': tenantId } });
        } else messages.push({ key: tenantId, value: JSON.stringify(span) });
      }
      await producer.send({ topic, messages, acks: -1 });
    }
    const messages = [];
    for (let r = 0; r < counts.otlp; r += 1) {
      const tenantId = tenantIdFor((from + r) % counts.tenants);
      const request = generateOtlpRequest(tenantId, counts.spansPerRequest ?? 20, r % 2 === 0 ? 'otlp_proto' : 'otlp_json', (from + r) * 100, dayMs(r));
      for (const span of request.spans) expected.set(span.spanId, { tenantId, day: spanDay(span)!, span: storedSpan(span, tenantId) });
      messages.push({ key: request.key, value: request.value });
      if (messages.length === 50 || r === counts.otlp - 1) await producer.send({ topic, messages: messages.splice(0), acks: -1 });
    }
  } finally {
    await producer.disconnect();
  }
  return expected;
}

/** One archived row read back from the server's files, with its object's tenant-day folder and name. */
export interface ArchivedRow {
  tenant: string;
  day: string;
  object: string;
  partition: number;
  offset: bigint;
  index: number;
  span: StoredSpan;
}

/** Every row of every object under `objectsDir` (the posix backend keeps objects as files). */
export async function readArchivedRows(objectsDir: string): Promise<ArchivedRow[]> {
  if (!fs.existsSync(objectsDir)) return [];
  const files = (fs.readdirSync(objectsDir, { recursive: true }) as string[]).filter((f) => f.endsWith('.parquet')).map((f) => path.join(objectsDir, f));
  if (files.length === 0) return [];
  const db = await DuckDBInstance.create(':memory:', { threads: '1' });
  const c = await db.connect();
  try {
    const list = files.map((f) => `'${f.replace(/'/g, "''")}'`).join(', ');
    const reader = await c.runAndReadAll(`SELECT *, CAST(start_time_unix_nano AS VARCHAR) AS start_text, CAST(end_time_unix_nano AS VARCHAR) AS end_text FROM read_parquet([${list}], filename = true, hive_partitioning = false)`);
    return reader.getRowObjectsJson().map((r) => {
      const rel = path.relative(objectsDir, String(r.filename));
      const [tenantPart, dayPart, object] = rel.split(path.sep);
      return {
        tenant: tenantPart!.replace(/^tenant=/, ''),
        day: dayPart!.replace(/^day=/, ''),
        object: object!,
        partition: Number(r.kafka_partition),
        offset: BigInt(String(r.kafka_offset)),
        index: Number(r.kafka_index),
        span: storedSpanOf(r),
      };
    });
  } finally {
    c.closeSync();
    db.closeSync();
  }
}

/** An archived row in the span log's stored shape (model/span-line.ts). */
function storedSpanOf(r: Record<string, unknown>): StoredSpan {
  const json = (v: unknown) => (v === null ? undefined : JSON.parse(String(v)));
  const status: { code: number; message?: string } = { code: Number(r.status_code) };
  if (r.status_message !== null) status.message = String(r.status_message);
  const span: StoredSpan = {
    tenantId: String(r.tenant_id),
    traceId: String(r.trace_id),
    spanId: String(r.span_id),
    parentSpanId: String(r.parent_span_id),
    name: String(r.name),
    kind: Number(r.kind),
    startTimeUnixNano: String(r.start_text),
    endTimeUnixNano: String(r.end_text),
    attributes: json(r.attributes),
    status,
    resource: { attributes: json(r.resource_attributes) },
  };
  if (r.scope_name !== null) {
    span.scope = { name: String(r.scope_name) };
    if (r.scope_version !== null) span.scope.version = String(r.scope_version);
    if (r.scope_attributes !== null) span.scope.attributes = json(r.scope_attributes);
  }
  if (r.trace_state !== null) span.traceState = String(r.trace_state);
  if (r.events !== null) span.events = json(r.events);
  if (r.links !== null) span.links = json(r.links);
  return span;
}

/** Exactly once, field for field: every expected span in one row of its tenant-day, nothing else; each position once. */
export function archiveDifferences(rows: ArchivedRow[], expected: Map<string, ExpectedSpan>): { rows: number; missing: number; duplicates: number; unexpected: number; different: string[]; positionsTwice: number } {
  const seen = new Map<string, number>();
  const positions = new Set<string>();
  let positionsTwice = 0;
  const different: string[] = [];
  let unexpected = 0;
  for (const row of rows) {
    const position = `${row.partition}:${row.offset}:${row.index}`;
    if (positions.has(position)) positionsTwice += 1;
    positions.add(position);
    const id = row.span.spanId;
    seen.set(id, (seen.get(id) ?? 0) + 1);
    const want = expected.get(id);
    if (want === undefined) {
      unexpected += 1;
      continue;
    }
    const got = { tenantId: row.tenant, day: row.day, span: row.span };
    if (JSON.stringify(sortKeys(got)) !== JSON.stringify(sortKeys(want)) && different.length < 5) different.push(`${id}: got ${JSON.stringify(got)} want ${JSON.stringify(want)}`);
  }
  const duplicates = [...seen.values()].filter((n) => n > 1).length;
  const missing = [...expected.keys()].filter((id) => !seen.has(id)).length;
  return { rows: rows.length, missing, duplicates, unexpected, different, positionsTwice };
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]));
}

/** `spanledger archive verify`: its exit code and output. */
export async function archiveVerify(setup: ArchiveSetup): Promise<{ code: number; stdout: string }> {
  try {
    const { stdout } = await run(process.execPath, [CLI, 'archive', 'verify', '--topic', setup.topic], { cwd: ROOT, env: { ...process.env, ...setup.env, ARCHIVE_CACHE_DIR: path.join(os.tmpdir(), 'spanledger-archive-cache-test') } });
    return { code: 0, stdout };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: err.code ?? -1, stdout: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}
