import fsp from 'node:fs/promises';
import path from 'node:path';
import lockfile from 'proper-lockfile';
import { Counter, Histogram } from 'prom-client';
import { InvariantError, worstFailure } from '../../errors.js';
import type { DecodedSpan } from '../../model/decode.js';
import { SpanDays } from '../../model/span.js';
import { isCanonicalUuid } from '../../model/tenant.js';
import { allStored, type FlushItem, type FlushSink, type SinkContext, type SinkFlush, type SinkWriteResult } from '../types.js';
import { SpanLogCondition, spanLogCondition, spanLogFailure } from './failures.js';
import { nodeFiles, type SpanLogFiles } from './files.js';
import { LOCKS_DIR, SpanLines, readTail, segmentName, segmentPattern, spanPosition, type SpanPosition } from './layout.js';
import { OpenSegments, Segment } from './open-segments.js';

export interface SpanLogConfig {
  /** SPANLOG_DIR: nothing is written outside it. */
  dir: string;
  /** A partition lock whose owner stopped refreshing it for this long may be taken over. */
  lockStaleMs: number;
  /** SPANLOG_MAX_OPEN_FILES: file descriptors the sink holds at most (default 512). */
  maxOpenFiles?: number;
  /** The file system; node:fs/promises unless a test injects faults. */
  files?: SpanLogFiles;
}

/** One tenant-day of a partition, as this worker knows it in its current ownership session. */
interface TenantDay {
  /** Highest offset of the partition found there by recovery (-1n: none). */
  inherited: SpanPosition;
  /** The segment this session appends to, once it wrote there. */
  segment: Segment | undefined;
}

/** What this worker knows about one partition while it holds the partition's lock. */
interface PartitionState {
  release: () => Promise<void>;
  compromised: boolean;
  /** `<tenant>/<day>` → that tenant-day (recovered before its first write). */
  days: Map<string, TenantDay>;
  /** Segments written since the last sync that succeeded, whatever became of their handles. */
  unsynced: Set<Segment>;
  /** Folders created since the last sync: their parents must be fsynced too. */
  newDirs: Set<string>;
  /** Folders fsynced by recovery in this session (a tenant's folder serves all its days). */
  recoveredDirs: Set<string>;
}

/**
 * Which of several tenants' failures in one flush the pipeline hears of: the one that decides
 * most (a fatal one stops the worker; a store failure must reach the breaker even when another
 * tenant only waited).
 */
/**
 * The span log: JSONL, one folder per tenant and UTC day, one segment file per writer session of
 * a partition:
 *
 *   <dir>/<tenantId>/<YYYY-MM-DD>/<topic>+<partition>+<firstOffset>[_<firstIndex>].jsonl
 *
 * Each line is the span in its stored shape (src/model/span-line.ts) plus
 * `_kafka: {topic, partition, offset[, index]}`; `index` (the span's place in its record) is
 * there when it is not 0, i.e. for the second and later spans of an OTLP record.
 *
 * Effectively once, without a transaction log (docs/spanlog.md has the reasoning):
 * - a partition's segments are written only by the worker holding the partition's lock file
 *   (`<dir>/.locks/<topic>+<partition>.lock`), taken on first write and released when the
 *   partition is revoked; a worker that dies leaves a stale lock that is taken over after
 *   `lockStaleMs`. A segment is created with O_EXCL and appended to only by the session that
 *   created it, so two workers never append to the same file;
 * - before writing a tenant-day for the first time, the worker fsyncs that tenant-day's segments
 *   of the partition and their folders (the previous owner may have died before its fsync), reads
 *   their tails, truncates a torn last line, removes empty segments, and learns the highest offset
 *   already on disk (the watermark, a position: offset then index). Spans at or below it are
 *   skipped; within one tenant-day of a partition, spans are appended in position order, so
 *   everything up to the watermark is there, also when a crash tore a record's spans apart;
 * - a write that fails or comes up short is cut back to the segment's last complete line;
 * - `sync` fdatasyncs every segment written since the last good sync (and new folders) once per
 *   flush. If that fails, every such segment is cut back to its last synced length, so the
 *   repeated flush writes those records again from memory, never trusting the page cache.
 */
export class SpanLogSink implements FlushSink<DecodedSpan> {
  readonly name = 'spanlog';
  private readonly root: string;
  private readonly files: SpanLogFiles;
  private readonly handles: OpenSegments;
  private readonly partitions = new Map<string, PartitionState>();
  private readonly acquiring = new Map<string, Promise<PartitionState>>();
  private readonly bytesWritten: Counter<'topic'>;
  private readonly syncDuration: Histogram;
  private readonly recoveries: Counter<'kind'>;
  private readonly faults: Counter<'kind'>;
  private readonly skipped: Counter<'topic'>;
  private readonly days = new SpanDays();

  constructor(
    private readonly config: SpanLogConfig,
    private readonly context: SinkContext,
  ) {
    this.root = path.resolve(config.dir);
    this.files = config.files ?? nodeFiles;
    this.handles = new OpenSegments(this.files, config.maxOpenFiles ?? 512);
    const registers = [context.registry];
    this.bytesWritten = new Counter({ name: 'spanledger_spanlog_bytes_written_total', help: 'Bytes appended to span log segments', labelNames: ['topic'], registers });
    this.syncDuration = new Histogram({ name: 'spanledger_spanlog_sync_duration_seconds', help: 'Time to fdatasync the segments of one flush', buckets: [0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], registers });
    this.recoveries = new Counter({ name: 'spanledger_spanlog_recoveries_total', help: 'Torn tails truncated and empty segments removed during recovery', labelNames: ['kind'], registers });
    this.faults = new Counter({
      name: 'spanledger_spanlog_faults_total',
      help: 'Disk faults: write (failed or short append, cut back), fsync (failed fsync, flush cut back to the last sync), cut_back (truncating after a fault failed: nothing is committed until it succeeds)',
      labelNames: ['kind'],
      registers,
    });
    this.skipped = new Counter({ name: 'spanledger_spanlog_records_already_present_total', help: 'Records skipped because the span log already held them (replays)', labelNames: ['topic'], registers });
  }

  async start(): Promise<void> {
    await fsp.mkdir(path.join(this.root, LOCKS_DIR), { recursive: true });
  }

  /**
   * Appends a flush of one partition: its tenants side by side, each tenant-day's spans in one
   * write. Every tenant's write settles before the flush reports a failure, so a repeated flush
   * never runs beside what is left of the failed one.
   */
  async write(flush: SinkFlush<DecodedSpan>): Promise<SinkWriteResult<DecodedSpan>> {
    const { topic, partition } = flush;
    const groups = [...flush.tenants].filter(([, items]) => items.length > 0);
    if (groups.length === 0) return allStored();
    // The decoders validate tenant ids: one that is not canonical here is a bug, never a path.
    for (const [tenantId] of groups) if (!isCanonicalUuid(tenantId)) throw new InvariantError(`refusing tenant id ${JSON.stringify(tenantId)} as a path`);
    const state = await this.own(topic, partition);
    const outcomes = await Promise.allSettled(groups.map(([tenantId, items]) => this.writeTenant(state, topic, partition, tenantId, items)));
    const failures = outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason as unknown] : []));
    if (failures.length > 0) throw worstFailure(failures);
    return allStored();
  }

  private async writeTenant(state: PartitionState, topic: string, partition: number, tenantId: string, items: ReadonlyArray<FlushItem<DecodedSpan>>): Promise<void> {
    // Group by day, keeping position order inside each group (a decoder made without days leaves
    // them to the sink).
    const byDay = new Map<string, Array<FlushItem<DecodedSpan>>>();
    for (const item of items) {
      const dayName = item.value.day ?? this.days.of(item.value.span.startTimeUnixNano) ?? '';
      const group = byDay.get(dayName);
      if (group) group.push(item);
      else byDay.set(dayName, [item]);
    }

    for (const [dayName, group] of byDay) {
      if (!/^\d{4}-\d{2}-\d{2}$/.test(dayName)) throw new InvariantError(`invalid day folder ${JSON.stringify(dayName)} for a span of tenant ${tenantId}`);
      const key = `${tenantId}/${dayName}`;
      const folder = path.join(this.root, tenantId, dayName);
      let day = state.days.get(key);
      if (day === undefined) {
        day = { inherited: await this.recover(state, folder, topic, partition), segment: undefined };
        state.days.set(key, day);
      }
      if (day.segment?.damaged) await this.cutBack(day.segment, 'repair');
      const watermark = day.segment?.end.lastPosition ?? day.inherited;
      const lines = new SpanLines(topic, partition);
      // Items come in position order: when the first is past the watermark, all are (the usual
      // case), and only the first and last positions are needed.
      const head = group[0]!;
      const headPosition = spanPosition(head.offset, head.index);
      let first: SpanPosition | undefined;
      let last: SpanPosition | undefined;
      let skipped = 0;
      if (headPosition > watermark) {
        for (const item of group) lines.add(item);
        const tail = group[group.length - 1]!;
        first = headPosition;
        last = spanPosition(tail.offset, tail.index);
      } else {
        for (const item of group) {
          const position = spanPosition(item.offset, item.index);
          if (position <= watermark) {
            skipped += 1;
            continue;
          }
          first ??= position;
          last = position;
          lines.add(item);
        }
      }
      if (skipped > 0) this.skipped.inc({ topic }, skipped);
      if (first === undefined || last === undefined) continue;
      if (state.compromised) throw spanLogFailure(`lost the lock of ${topic}+${partition}; not writing`, spanLogCondition(SpanLogCondition.lockLost, 'partition lock compromised'));
      day.segment ??= await this.createSegment(state, key, day.inherited, folder, topic, partition, first);
      // One buffer per segment and flush (not one per line).
      const buffer = lines.toBuffer();
      await this.append(state, day.segment, buffer, last);
      this.bytesWritten.inc({ topic }, buffer.length);
    }
  }

  async sync(topic: string, partition: number): Promise<void> {
    const state = this.partitions.get(`${topic}+${partition}`);
    if (state === undefined) return;
    const end = this.syncDuration.startTimer();
    const touched = [...state.unsynced];
    const outcomes = await Promise.allSettled(touched.map((s) => this.syncSegment(s)));
    let failure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected')?.reason as unknown;
    if (failure === undefined) {
      try {
        for (const dir of state.newDirs) await this.handles.once(dir, 'r', (handle) => handle.sync());
      } catch (e) {
        failure = e;
      }
    }
    if (failure !== undefined) {
      // After a failed fsync the kernel may have dropped the dirty pages and marked them clean:
      // a later fsync could succeed without them, and reading the file back would show bytes
      // the disk does not have. So nothing written since the last good sync is trusted: each
      // such segment is cut back to its synced length and the repeated flush writes it again.
      this.faults.inc({ kind: 'fsync' });
      this.context.logger.error({ err: failure, partition: `${topic}+${partition}` }, 'fsync of span log segments failed; cutting them back to their last synced length');
      await Promise.all(touched.filter((s) => s.unsynced).map((s) => this.cutBack(s, 'rollback').catch(() => undefined)));
      throw spanLogFailure(`fsync of span log segments failed: ${(failure as Error).message}`, failure);
    }
    state.unsynced.clear();
    state.newDirs.clear();
    end();
  }

  async releasePartition(topic: string, partition: number): Promise<void> {
    const id = `${topic}+${partition}`;
    await this.acquiring.get(id)?.catch(() => undefined);
    const state = this.partitions.get(id);
    if (state === undefined) return;
    this.partitions.delete(id);
    await this.closeSegments(state);
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
      await this.closeSegments(stale);
    }
    // proper-lockfile makes the lock as the folder `<path>.lock` (mkdir is atomic, also on NFS).
    const lockPath = path.join(this.root, LOCKS_DIR, id);
    await fsp.mkdir(path.dirname(lockPath), { recursive: true }).catch((e: unknown) => {
      throw spanLogFailure(`cannot take lock ${lockPath}: ${(e as Error).message}`, e);
    });
    const state: PartitionState = {
      release: async () => undefined,
      compromised: false,
      days: new Map(),
      unsynced: new Set(),
      newDirs: new Set(),
      recoveredDirs: new Set(),
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
      // Held by a live peer (a hand-over under way): a local wait, which the breaker does not count.
      if ((e as NodeJS.ErrnoException).code === 'ELOCKED') {
        throw spanLogFailure(`partition ${id} is locked by another worker (waiting for it to release, or for the lock to go stale after ${this.config.lockStaleMs} ms)`, e);
      }
      throw spanLogFailure(`cannot take lock ${lockPath}: ${(e as Error).message}`, e);
    }
    this.partitions.set(id, state);
    this.context.logger.info({ partition: id }, 'span log partition lock taken');
    return state;
  }

  /**
   * Repairs a tenant-day folder's segments of one partition and returns its watermark. The
   * segments were written by an earlier session, maybe one that died between its write and its
   * fsync: they are fsynced (with their folders) before their tails are trusted, or the worker
   * could commit offsets whose records are only in the page cache.
   */
  private async recover(state: PartitionState, folder: string, topic: string, partition: number): Promise<SpanPosition> {
    try {
      let names: string[];
      try {
        names = await this.files.readdir(folder);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return -1n;
        throw e;
      }
      const pattern = segmentPattern(topic, partition);
      let watermark = -1n;
      let inherited = false;
      for (const name of names) {
        if (!pattern.test(name)) continue;
        inherited = true;
        const file = path.join(folder, name);
        const tail = await this.handles.once(file, 'r+', async (handle) => {
          await handle.sync();
          const found = await readTail(handle);
          if (found.validLength < found.size) {
            await handle.truncate(found.validLength);
            await handle.sync();
            this.recoveries.inc({ kind: 'torn_tail' });
            this.context.logger.warn({ file, removedBytes: found.size - found.validLength }, 'truncated a torn tail of a span log segment');
          }
          return found;
        });
        if (tail.validLength === 0) {
          await this.files.rm(file);
          this.recoveries.inc({ kind: 'empty_segment' });
          continue;
        }
        if (tail.lastPosition !== undefined && tail.lastPosition > watermark) watermark = tail.lastPosition;
      }
      // The day folder holds the segments' names, the tenant folder the day's, the root the tenant's.
      if (inherited) {
        for (const dir of [folder, path.dirname(folder), this.root]) {
          if (state.recoveredDirs.has(dir)) continue;
          await this.handles.once(dir, 'r', (handle) => handle.sync());
          state.recoveredDirs.add(dir);
        }
      }
      return watermark;
    } catch (e) {
      throw spanLogFailure(`cannot recover span log folder ${folder}: ${(e as Error).message}`, e);
    }
  }

  private async createSegment(state: PartitionState, key: string, inherited: SpanPosition, folder: string, topic: string, partition: number, first: SpanPosition): Promise<Segment> {
    const created = await this.files.mkdir(folder);
    if (created !== undefined) {
      // Every folder from the first one created down to `folder` is new: fsync each parent.
      let dir = folder;
      while (dir.length >= created.length) {
        state.newDirs.add(path.dirname(dir));
        dir = path.dirname(dir);
      }
    }
    const segment = new Segment(path.join(folder, segmentName(topic, partition, first)), { length: 0, lastPosition: inherited });
    try {
      await this.handles.create(segment);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
        // Someone wrote this tenant-day since we read its tail: read it again before writing.
        state.days.delete(key);
        throw spanLogFailure(`segment ${segment.path} already exists; re-reading the tenant-day`, e);
      }
      throw spanLogFailure(`cannot create ${segment.path}: ${(e as Error).message}`, e);
    }
    state.newDirs.add(folder);
    return segment;
  }

  /** One write per segment per flush. A failed or short write leaves no torn line behind. */
  private async append(state: PartitionState, segment: Segment, buffer: Buffer, lastPosition: SpanPosition): Promise<void> {
    const before = segment.end;
    state.unsynced.add(segment);
    try {
      await this.handles.use(segment, async (handle) => {
        const { bytesWritten } = await handle.write(buffer, 0, buffer.length, before.length);
        if (bytesWritten !== buffer.length) throw spanLogCondition(SpanLogCondition.shortWrite, `short write: ${bytesWritten} of ${buffer.length} bytes`);
      });
    } catch (e) {
      this.faults.inc({ kind: 'write' });
      try {
        await this.handles.use(segment, (handle) => handle.truncate(before.length));
      } catch (cut) {
        // Unknown bytes may follow the last complete line: the next write or sync cuts back first.
        segment.damaged = true;
        this.faults.inc({ kind: 'cut_back' });
        this.context.logger.error({ err: cut, file: segment.path }, 'cannot cut a failed append back; retrying');
      }
      throw spanLogFailure(`appending to ${segment.path} failed: ${(e as Error).message}`, e);
    }
    segment.end = { length: before.length + buffer.length, lastPosition };
  }

  /** fdatasyncs a segment if it holds unsynced bytes; a damaged segment fails the sync. */
  private async syncSegment(segment: Segment): Promise<void> {
    if (!segment.unsynced) return;
    if (segment.damaged) throw spanLogCondition(SpanLogCondition.untrustedBytes, `${segment.path} must be cut back to its last synced length first`);
    const target = segment.end;
    await this.handles.use(segment, (handle) => handle.datasync());
    // An eviction's fdatasync of the same segment may have failed meanwhile.
    if (segment.damaged) throw spanLogCondition(SpanLogCondition.untrustedBytes, `fdatasync of ${segment.path} failed`);
    if (target.length > segment.synced.length) segment.synced = target;
  }

  /**
   * Cuts a segment back to its last synced length and fsyncs that, so that what the file holds is
   * exactly what the disk holds; its watermark goes back with it, so the records after it are
   * written again. If this fails the segment stays damaged and nothing of it is committed: every
   * retry tries again, forever if the disk stays broken (visible in logs and metrics).
   */
  private async cutBack(segment: Segment, why: 'rollback' | 'repair'): Promise<void> {
    segment.damaged = true;
    try {
      await this.handles.use(segment, async (handle) => {
        await handle.truncate(segment.synced.length);
        await handle.sync();
      });
    } catch (e) {
      this.faults.inc({ kind: 'cut_back' });
      this.context.logger.error({ err: e, file: segment.path, why }, 'cannot cut a span log segment back to its last synced length; nothing is committed until this succeeds');
      throw spanLogFailure(`cannot cut ${segment.path} back to ${segment.synced.length} bytes: ${(e as Error).message}`, e);
    }
    segment.end = segment.synced;
    segment.damaged = false;
  }

  private async closeSegments(state: PartitionState): Promise<void> {
    const segments = [...state.days.values()].flatMap((d) => (d.segment ? [d.segment] : []));
    await Promise.all(segments.map((s) => this.handles.close(s)));
  }
}

function splitId(id: string): [string, number] {
  const at = id.lastIndexOf('+');
  return [id.slice(0, at), Number(id.slice(at + 1))];
}
