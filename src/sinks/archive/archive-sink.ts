import { Counter, Histogram } from 'prom-client';
import type { Logger } from 'pino';
import { FatalStoreError, InvariantError, RetriableError } from '../../errors.js';
import type { RecordRejectedError } from '../../errors.js';
import { allStored, type FlushItem, type FlushSink, type SinkContext, type SinkFlush, type SinkWriteResult } from '../types.js';
import type { ArchiveRow } from '../../model/archive-row.js';
import { ARCHIVE_STORE } from './classify.js';
import { CrashPoints } from './crash-points.js';
import { objectKey } from './keys.js';
import { ObjectStore, type ObjectStoreConfig } from './object-store.js';
import { ParquetWriter, type CycleFiles } from './parquet-writer.js';
import { CycleDataError, findUnwritable, unwritableError } from './unwritable.js';

export interface ArchiveSinkConfig extends ObjectStoreConfig {
  /** ARCHIVE_PREFIX: the folder of the archive in the bucket ('' for the bucket's root). */
  prefix: string;
  /** ARCHIVE_SCRATCH_DIR: local scratch for a cycle's files. */
  scratchDir: string;
  /** DuckDB memory_limit of the Parquet writer. */
  duckdbMemoryLimit: string;
}

/**
 * The archive: each flush of a partition (a "cycle") becomes one Parquet object per tenant-day,
 * named after the position of its first span (keys.ts), uploaded before the flush is durable.
 * The pipeline starts a partition's cycle only once the previous one is committed
 * (startsAtCommittedOffset), and aborts a released partition's uploads (SinkFlush.signal): the
 * exactly-once argument is in docs/archive.md.
 */
export class ArchiveSink implements FlushSink<ArchiveRow> {
  readonly name = ARCHIVE_STORE;
  readonly startsAtCommittedOffset = true;
  readonly store: ObjectStore;
  private readonly writer: ParquetWriter;
  private readonly logger: Logger;
  private readonly objects: Counter<'topic'>;
  private readonly bytes: Counter<'topic'>;
  private readonly failures: Counter<'topic' | 'kind'>;
  private readonly uploadSeconds: Histogram<'topic'>;
  private readonly crashPoints = new CrashPoints();

  constructor(
    private readonly config: ArchiveSinkConfig,
    context: SinkContext,
  ) {
    this.logger = context.logger;
    this.store = new ObjectStore(config);
    this.writer = new ParquetWriter(config.scratchDir, config.duckdbMemoryLimit);
    const registers = [context.registry];
    this.objects = new Counter({ name: 'spanledger_archive_objects_uploaded_total', help: 'Parquet objects the archive store acknowledged (a replayed cycle uploads its objects again)', labelNames: ['topic'], registers });
    this.bytes = new Counter({ name: 'spanledger_archive_bytes_uploaded_total', help: 'Bytes of Parquet objects the archive store acknowledged', labelNames: ['topic'], registers });
    this.failures = new Counter({ name: 'spanledger_archive_upload_failures_total', help: 'Archive cycles that failed (retried: kind retriable; the worker stops: fatal; the partition was released: aborted)', labelNames: ['topic', 'kind'], registers });
    this.uploadSeconds = new Histogram({ name: 'spanledger_archive_cycle_upload_seconds', help: 'Time to write and upload all objects of one cycle', labelNames: ['topic'], buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60], registers });
  }

  async start(): Promise<void> {
    await this.writer.start();
    try {
      await this.store.checkBucket();
    } catch (e) {
      // A bucket that is missing or refused is a configuration error: fail at start, one line.
      if (e instanceof FatalStoreError) throw e;
      // A store that does not answer yet: the circuit breaker watches the uploads.
      this.logger.warn({ err: e, bucket: this.store.bucket }, 'archive bucket does not answer at start; uploads will retry');
    }
  }

  async write(flush: SinkFlush<ArchiveRow>): Promise<SinkWriteResult<ArchiveRow>> {
    const { topic, partition, signal } = flush;
    if (flush.tenants.size === 0) return allStored();
    const end = this.uploadSeconds.startTimer({ topic });
    for (const [tenantId, items] of flush.tenants) {
      for (const item of items) if (item.value.day === undefined) throw new InvariantError(`archive: span of tenant ${tenantId} at offset ${item.offset} has no day (the decoder must name it)`);
    }
    let cycle: CycleFiles | undefined;
    let tenants = flush.tenants;
    const rejected = new Map<FlushItem<ArchiveRow>, RecordRejectedError>();
    try {
      try {
        cycle = await this.writer.write(partition, tenants);
      } catch (e) {
        if (!(e instanceof CycleDataError)) throw e;
        // Not the disk, not memory: some span DuckDB refuses. Its record is dead-lettered whole
        // (every span of it), and the rest of the cycle is written.
        tenants = await this.withoutUnwritable(partition, tenants, e.message, rejected);
        if (tenants.size === 0) return { rejected };
        cycle = await this.writer.write(partition, tenants);
      }
      const n = this.crashPoints.nextCycle();
      this.crashPoints.reached('before-upload', n);
      for (const [i, f] of cycle.files.entries()) {
        if (i > 0) this.crashPoints.reached('mid-upload', n);
        if (signal?.aborted === true) throw new RetriableError(`archive: partition ${partition} released; its cycle's remaining uploads are dropped`);
        const key = objectKey(this.config.prefix, { tenantId: f.tenantId, day: f.day, topic, partition, first: f.first });
        const size = await this.store.putFile(key, f.file, signal, { spans: String(f.spans) });
        this.objects.inc({ topic });
        this.bytes.inc({ topic }, size);
      }
      this.crashPoints.reached('after-upload', n);
      end();
      return rejected.size === 0 ? allStored() : { rejected };
    } catch (e) {
      this.failures.inc({ topic, kind: signal?.aborted === true ? 'aborted' : e instanceof RetriableError ? 'retriable' : 'fatal' });
      throw e;
    } finally {
      if (cycle !== undefined) await this.writer.discard(cycle).catch(() => undefined);
    }
  }

  /** `tenants` without the records of the spans DuckDB refuses (each added to `rejected`). */
  private async withoutUnwritable(partition: number, tenants: SinkFlush<ArchiveRow>['tenants'], reason: string, rejected: Map<FlushItem<ArchiveRow>, RecordRejectedError>): Promise<Map<string, Array<FlushItem<ArchiveRow>>>> {
    const all = [...tenants].flatMap(([tenantId, items]) => items.map((item) => ({ tenantId, item })));
    const bad = await findUnwritable(all, async (subset) => {
      const group = new Map<string, Array<FlushItem<ArchiveRow>>>();
      for (const { tenantId, item } of subset) {
        const list = group.get(tenantId);
        if (list === undefined) group.set(tenantId, [item]);
        else list.push(item);
      }
      try {
        await this.writer.discard(await this.writer.write(partition, group));
        return true;
      } catch (e) {
        if (e instanceof CycleDataError) return false;
        throw e;
      }
    });
    const badOffsets = new Set(bad.map(({ item }) => item.offset));
    const kept = new Map<string, Array<FlushItem<ArchiveRow>>>();
    for (const [tenantId, items] of tenants) {
      for (const item of items) {
        if (badOffsets.has(item.offset)) {
          rejected.set(item, unwritableError(reason));
          continue;
        }
        const list = kept.get(tenantId);
        if (list === undefined) kept.set(tenantId, [item]);
        else list.push(item);
      }
    }
    this.logger.warn({ partition, records: badOffsets.size, reason }, 'archive: DuckDB refuses spans of these records; dead-lettering them and writing the rest of the cycle');
    return kept;
  }

  async close(): Promise<void> {
    this.store.close();
    await this.writer.close();
  }
}
