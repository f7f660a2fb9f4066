import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import lockfile from 'proper-lockfile';
import { Counter, Histogram } from 'prom-client';
import { RetriableError, SpanledgerError } from '../../errors.js';
import type { DecodedSpan } from '../../model/decode.js';
import { isCanonicalUuid } from '../../model/tenant.js';
import type { BatchWriteResult, SinkContext, SourcePosition, TenantBatchSink } from '../types.js';
import { LOCKS_DIR, readTail, segmentName, segmentPattern } from './layout.js';

export interface SpanLogConfig {
  /** SPANLOG_DIR: nothing is written outside it. */
  dir: string;
  /** A partition lock whose owner stopped refreshing it for this long may be taken over. */
  lockStaleMs: number;
  /** Open segment files above this are closed after a sync (and reopened on demand). */
  maxOpenFiles?: number;
}

interface Segment {
  path: string;
  handle: fsp.FileHandle | undefined;
  dirty: boolean;
  lastUsed: number;
}

/** What this worker knows about one partition while it holds the partition's lock. */
interface PartitionState {
  release: () => Promise<void>;
  compromised: boolean;
  /** `<tenant>/<day>` → highest offset of this partition already in the span log (-1n: none). */
  watermarks: Map<string, bigint>;
  /** `<tenant>/<day>` → the segment this worker appends to. */
  segments: Map<string, Segment>;
  /** Folders created since the last sync: their parents must be fsynced too. */
  newDirs: Set<string>;
}

const EMPTY: BatchWriteResult = { rejected: new Map() };

/**
 * The span log: JSONL, one folder per tenant and UTC day, one segment file per writer session of
 * a partition:
 *
 *   <dir>/<tenantId>/<YYYY-MM-DD>/<topic>+<partition>+<firstOffset>.jsonl
 *
 * Each line is the span plus `_kafka: {topic, partition, offset}`.
 *
 * Effectively once, without a transaction log:
 * - a partition's segments are written only by the worker holding the partition's lock file
 *   (`<dir>/.locks/<topic>+<partition>.lock`), taken on first write and released when the
 *   partition is revoked; a worker that dies leaves a stale lock that is taken over after
 *   `lockStaleMs`. A segment is created with O_EXCL and appended to only by the session that
 *   created it, so two workers never append to the same file;
 * - before writing a tenant-day for the first time, the worker reads the tail of that
 *   tenant-day's segments of the partition: it truncates a torn last line, removes empty
 *   segments, and learns the highest offset already on disk (the watermark). Records at or
 *   below it were written before a crash or rebalance and are skipped; within one tenant-day of
 *   a partition, records are appended in offset order, so everything up to the watermark is there;
 * - `sync` fdatasyncs every segment the flush touched (and new folders) once per flush, before
 *   the worker commits the offset.
 */
export class SpanLogSink implements TenantBatchSink<DecodedSpan> {
  readonly name = 'spanlog';
  private readonly root: string;
  private readonly partitions = new Map<string, PartitionState>();
  private readonly acquiring = new Map<string, Promise<PartitionState>>();
  private readonly bytesWritten: Counter<'topic'>;
  private readonly syncDuration: Histogram;
  private readonly recoveries: Counter<'kind'>;
  private readonly skipped: Counter<'topic'>;

  constructor(
    private readonly config: SpanLogConfig,
    private readonly context: SinkContext,
  ) {
    this.root = path.resolve(config.dir);
    const registers = [context.registry];
    this.bytesWritten = new Counter({ name: 'spanledger_spanlog_bytes_written_total', help: 'Bytes appended to span log segments', labelNames: ['topic'], registers });
    this.syncDuration = new Histogram({ name: 'spanledger_spanlog_sync_duration_seconds', help: 'Time to fdatasync the segments of one flush', buckets: [0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], registers });
    this.recoveries = new Counter({ name: 'spanledger_spanlog_recoveries_total', help: 'Torn tails truncated and empty segments removed during recovery', labelNames: ['kind'], registers });
    this.skipped = new Counter({ name: 'spanledger_spanlog_records_already_present_total', help: 'Records skipped because the span log already held them (replays)', labelNames: ['topic'], registers });
  }

  async start(): Promise<void> {
    await fsp.mkdir(path.join(this.root, LOCKS_DIR), { recursive: true });
  }

  async write(tenantId: string, records: ReadonlyArray<{ value: DecodedSpan; source: SourcePosition }>): Promise<BatchWriteResult> {
    if (records.length === 0) return EMPTY;
    if (!isCanonicalUuid(tenantId)) throw new SpanledgerError(`refusing tenant id ${JSON.stringify(tenantId)} as a path`, { retriable: false });
    const { topic, partition } = records[0]!.source;
    const state = await this.own(topic, partition);

    // Group by day, keeping offset order inside each group.
    const byDay = new Map<string, Array<{ value: DecodedSpan; source: SourcePosition }>>();
    for (const r of records) {
      const group = byDay.get(r.value.day);
      if (group) group.push(r);
      else byDay.set(r.value.day, [r]);
    }

    for (const [day, group] of byDay) {
      if (!/^\d{4}-\d{2}-\d{2}$/.test(day)) throw new SpanledgerError(`invalid day folder ${day}`, { retriable: false });
      const key = `${tenantId}/${day}`;
      const folder = path.join(this.root, tenantId, day);
      let watermark = state.watermarks.get(key);
      if (watermark === undefined) {
        watermark = await this.recover(folder, topic, partition);
        state.watermarks.set(key, watermark);
      }
      const chunks: Buffer[] = [];
      let first: bigint | undefined;
      let last: bigint | undefined;
      let skipped = 0;
      const bookkeeping = `"_kafka":{"topic":${JSON.stringify(topic)},"partition":${partition},"offset":"`;
      for (const r of group) {
        const offset = BigInt(r.source.offset);
        if (offset <= watermark) {
          skipped += 1;
          continue;
        }
        first ??= offset;
        last = offset;
        chunks.push(spanLine(r.value, bookkeeping, r.source.offset));
      }
      if (skipped > 0) this.skipped.inc({ topic }, skipped);
      if (first === undefined || last === undefined) continue;
      if (state.compromised) throw new RetriableError(`lost the lock of ${topic}+${partition}; not writing`);
      const segment = await this.segment(state, key, folder, topic, partition, first);
      const buffer = Buffer.concat(chunks);
      try {
        await segment.handle!.write(buffer, 0, buffer.length);
      } catch (e) {
        await this.forget(state);
        throw new RetriableError(`appending to ${segment.path} failed: ${(e as Error).message}`, e);
      }
      segment.dirty = true;
      segment.lastUsed = Date.now();
      state.watermarks.set(key, last);
      this.bytesWritten.inc({ topic }, buffer.length);
    }
    return EMPTY;
  }

  async sync(topic: string, partition: number): Promise<void> {
    const state = this.partitions.get(`${topic}+${partition}`);
    if (state === undefined) return;
    const end = this.syncDuration.startTimer();
    const dirty = [...state.segments.values()].filter((s) => s.dirty && s.handle);
    try {
      await Promise.all(dirty.map((s) => s.handle!.datasync()));
      for (const dir of state.newDirs) await fsyncDir(dir);
    } catch (e) {
      // After a failed fsync the kernel may have dropped the pages: nothing written since the
      // last good sync can be trusted. Forget it all; the repeated flush re-reads the tails.
      await this.forget(state);
      throw new RetriableError(`fsync of span log segments failed: ${(e as Error).message}`, e);
    }
    for (const s of dirty) s.dirty = false;
    state.newDirs.clear();
    end();
    await this.closeIdleSegments(state);
  }

  async releasePartition(topic: string, partition: number): Promise<void> {
    const id = `${topic}+${partition}`;
    await this.acquiring.get(id)?.catch(() => undefined);
    const state = this.partitions.get(id);
    if (state === undefined) return;
    this.partitions.delete(id);
    await closeSegments(state);
    await state.release().catch(() => undefined);
  }

  async close(): Promise<void> {
    for (const id of [...this.partitions.keys()]) {
      const [topic, partition] = splitId(id);
      await this.releasePartition(topic, partition);
    }
  }

  /** Takes (or returns) this worker's lock on a partition's segments. */
  private own(topic: string, partition: number): Promise<PartitionState> {
    const id = `${topic}+${partition}`;
    const held = this.partitions.get(id);
    if (held !== undefined && !held.compromised) return Promise.resolve(held);
    let pending = this.acquiring.get(id);
    if (pending === undefined) {
      pending = this.acquire(id).finally(() => this.acquiring.delete(id));
      this.acquiring.set(id, pending);
    }
    return pending;
  }

  private async acquire(id: string): Promise<PartitionState> {
    const stale = this.partitions.get(id);
    if (stale !== undefined) {
      this.partitions.delete(id);
      await closeSegments(stale);
    }
    // proper-lockfile makes the lock as the folder `<path>.lock` (mkdir is atomic, also on NFS).
    const lockPath = path.join(this.root, LOCKS_DIR, id);
    await fsp.mkdir(path.dirname(lockPath), { recursive: true });
    const state: PartitionState = {
      release: async () => undefined,
      compromised: false,
      watermarks: new Map(),
      segments: new Map(),
      newDirs: new Set(),
    };
    try {
      state.release = await lockfile.lock(lockPath, {
        realpath: false,
        stale: this.config.lockStaleMs,
        update: Math.floor(this.config.lockStaleMs / 2),
        onCompromised: (e) => {
          state.compromised = true;
          this.context.logger.error({ err: e, partition: id }, 'span log partition lock lost; writes stop until it is taken again');
        },
      });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ELOCKED') {
        throw new RetriableError(`partition ${id} is locked by another worker (waiting for it to release, or for the lock to go stale after ${this.config.lockStaleMs} ms)`, e);
      }
      throw new RetriableError(`cannot take lock ${lockPath}: ${(e as Error).message}`, e);
    }
    this.partitions.set(id, state);
    this.context.logger.info({ partition: id }, 'span log partition lock taken');
    return state;
  }

  /** Repairs a tenant-day folder's segments of one partition and returns its watermark. */
  private async recover(folder: string, topic: string, partition: number): Promise<bigint> {
    let names: string[];
    try {
      names = await fsp.readdir(folder);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return -1n;
      throw new RetriableError(`cannot list ${folder}: ${(e as Error).message}`, e);
    }
    const pattern = segmentPattern(topic, partition);
    let watermark = -1n;
    for (const name of names) {
      if (!pattern.test(name)) continue;
      const file = path.join(folder, name);
      const tail = await readTail(file);
      if (tail.validLength < tail.size) {
        await fsp.truncate(file, tail.validLength);
        this.recoveries.inc({ kind: 'torn_tail' });
        this.context.logger.warn({ file, removedBytes: tail.size - tail.validLength }, 'truncated a torn tail of a span log segment');
      }
      if (tail.validLength === 0) {
        await fsp.rm(file);
        this.recoveries.inc({ kind: 'empty_segment' });
        continue;
      }
      if (tail.lastOffset !== undefined && tail.lastOffset > watermark) watermark = tail.lastOffset;
    }
    return watermark;
  }

  private async segment(state: PartitionState, key: string, folder: string, topic: string, partition: number, firstOffset: bigint): Promise<Segment> {
    const existing = state.segments.get(key);
    if (existing !== undefined) {
      if (existing.handle === undefined) existing.handle = await fsp.open(existing.path, 'a');
      return existing;
    }
    const created = await fsp.mkdir(folder, { recursive: true });
    if (created !== undefined) {
      // Every folder from the first one created down to `folder` is new: fsync each parent.
      let dir = folder;
      while (dir.length >= created.length) {
        state.newDirs.add(path.dirname(dir));
        dir = path.dirname(dir);
      }
    }
    const file = path.join(folder, segmentName(topic, partition, firstOffset));
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(file, 'ax');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
        // Someone wrote this tenant-day since we read its tail: read it again before writing.
        state.watermarks.delete(key);
        throw new RetriableError(`segment ${file} already exists; re-reading the tenant-day`, e);
      }
      throw new RetriableError(`cannot create ${file}: ${(e as Error).message}`, e);
    }
    state.newDirs.add(folder);
    const segment: Segment = { path: file, handle, dirty: false, lastUsed: Date.now() };
    state.segments.set(key, segment);
    return segment;
  }

  private async closeIdleSegments(state: PartitionState): Promise<void> {
    const max = this.config.maxOpenFiles ?? 512;
    const open = [...state.segments.values()].filter((s) => s.handle);
    if (open.length <= max) return;
    open.sort((a, b) => a.lastUsed - b.lastUsed);
    for (const s of open.slice(0, open.length - max)) {
      const handle = s.handle!;
      s.handle = undefined;
      await handle.close();
    }
  }

  /** Drops every cached fact about a partition so that the next write re-reads the disk. */
  private async forget(state: PartitionState): Promise<void> {
    await closeSegments(state);
    state.segments.clear();
    state.watermarks.clear();
  }
}

/**
 * One span log line. The record's own bytes are kept when they are a single-line JSON object
 * (the common case): the bookkeeping is spliced in before the closing brace, which spares a
 * JSON.stringify per span and keeps the span byte for byte as the producer wrote it.
 */
function spanLine(value: DecodedSpan, bookkeeping: string, offset: string): Buffer {
  if (value.raw !== undefined) {
    const tenant = value.tenantFromHeader ? `,"tenantId":"${value.span.tenantId}"` : '';
    return Buffer.concat([value.raw.subarray(0, value.raw.length - 1), Buffer.from(`${tenant},${bookkeeping}${offset}"}}\n`)]);
  }
  const json = JSON.stringify(value.span);
  return Buffer.from(`${json.slice(0, -1)},${bookkeeping}${offset}"}}\n`);
}

async function closeSegments(state: PartitionState): Promise<void> {
  await Promise.all(
    [...state.segments.values()].map(async (s) => {
      const handle = s.handle;
      s.handle = undefined;
      await handle?.close().catch(() => undefined);
    }),
  );
}

async function fsyncDir(dir: string): Promise<void> {
  const fd = await fsp.open(dir, fs.constants.O_RDONLY);
  try {
    await fd.sync();
  } finally {
    await fd.close();
  }
}

function splitId(id: string): [string, number] {
  const at = id.lastIndexOf('+');
  return [id.slice(0, at), Number(id.slice(at + 1))];
}
