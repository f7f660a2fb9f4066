import type { Logger } from 'pino';
import { InvariantError, RetriableError } from '../../errors.js';
import type { RecordRejectedError } from '../../errors.js';
import type { Severity, Signal } from '../../model/signal.js';
import type { FlushItem, FlushSink, SinkContext, SinkFlush, SinkWriteResult } from '../types.js';
import { causeKind } from './classify.js';
import type { DuckDbSinkConfig } from './config.js';
import { MemoryCheckpoints } from './memory-checkpoints.js';
import { duckDbMetrics } from './metrics.js';
import type { DuckDbMetrics } from './metrics.js';
import { SignalReads } from './reads.js';
import type { InstanceStats } from './reads.js';
import { TenantRegistry } from './tenant-registry.js';
import { TenantBatchWriter } from './write-path.js';
import type { BatchRow } from './write-path.js';

const INT64_MAX = 2n ** 63n - 1n;
const INT32_MAX = 2 ** 31 - 1;

/** One flush's items of one tenant, waiting for the next run of the tenant's queue. */
interface QueuedWrite {
  readonly items: ReadonlyArray<FlushItem<Signal>>;
  readonly partition: number;
  resolve(rejected: Map<FlushItem<Signal>, RecordRejectedError>): void;
  reject(err: unknown): void;
}

/** Writes for one tenant waiting for the next run of its queue, and the `topic:partition`s they came from. */
interface TenantQueue {
  readonly writes: QueuedWrite[];
  readonly sources: Set<string>;
}

/**
 * Signals into one DuckDB database file per tenant, `<dir>/<tenantId>.duckdb`, table `signals`
 * (README.md in this folder). The parts:
 * - TenantRegistry (tenant-registry.ts, handover.ts, instance.ts): the one DuckDB instance, the
 *   tenant files attached to it, their hand-over between processes, eviction, replacement of an
 *   invalidated instance;
 * - TenantBatchWriter (write-path.ts): one tenant's batch in its turn: staging, the stored-id
 *   lookup, bisecting; SQL text in sql.ts; every DuckDB failure classified in classify.ts;
 * - MemoryCheckpoints: checkpoints tenants when DuckDB memory runs high;
 * - SignalReads (reads.ts): the CLI's read queries.
 *
 * This class builds the requests: its grouping is decided here and only here. Each flush's
 * tenants are written side by side, and a tenant's items join the tenant's queue: one run of the
 * queue (in the tenant's turn, with a connection) writes every flush queued for the tenant by
 * then, across partitions, as one batch. A transaction per tenant per write is what a signal
 * worker over many tenants pays for (README, *Many tenants*), and its partitions flush at the
 * same time, so merging them is where rows per transaction grow without bigger flushes.
 *
 * One writer per file: the worker must release a partition (releasePartition) before giving it
 * up so that the next owner can open its tenants' files.
 */
export class DuckDbSignalSink implements FlushSink<Signal> {
  readonly name = 'duckdb';
  private readonly config: DuckDbSinkConfig;
  private readonly logger: Logger;
  private readonly metrics: DuckDbMetrics;
  private readonly tenants: TenantRegistry;
  private readonly writer: TenantBatchWriter;
  private readonly checkpoints: MemoryCheckpoints;
  private readonly reads: SignalReads;
  /** Per tenant: flushes waiting to be coalesced into the next run of its queue. */
  private readonly queued = new Map<string, TenantQueue>();
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(config: DuckDbSinkConfig, context: SinkContext) {
    this.config = config;
    this.logger = context.logger.child({ sink: 'duckdb' });
    this.metrics = duckDbMetrics(context.registry);
    this.tenants = new TenantRegistry(config, this.logger, this.metrics);
    this.writer = new TenantBatchWriter(config, this.logger, this.metrics);
    this.checkpoints = new MemoryCheckpoints(config, this.tenants, this.logger, this.metrics);
    this.reads = new SignalReads(this.tenants, this.logger);
  }

  async start(): Promise<void> {
    this.tenants.closed = false;
    await this.tenants.ensureDir();
    await this.tenants.instance.ready();
    if (!this.sweepTimer) {
      // Often enough for idle closing and to hand a database over soon after maxHoldMs.
      const every = Math.min(30_000, Math.max(50, Math.floor(Math.min(this.config.idleTimeoutMs / 2, this.config.maxHoldMs / 5))));
      this.sweepTimer = setInterval(() => {
        this.tenants.sweep().catch((err: unknown) => this.logger.warn({ err }, 'closing idle DuckDB tenant databases failed'));
      }, every);
      this.sweepTimer.unref();
    }
  }

  async write(flush: SinkFlush<Signal>): Promise<SinkWriteResult<Signal>> {
    this.checkFlush(flush);
    if (this.tenants.closed) throw new RetriableError('the DuckDB sink is closed');
    const source = `${flush.topic}:${flush.partition}`;
    const rejected = new Map<FlushItem<Signal>, RecordRejectedError>();
    await Promise.all(
      [...flush.tenants].map(async ([tenantId, items]) => {
        if (items.length === 0) return;
        for (const [item, err] of await this.enqueue(tenantId, source, flush.partition, items)) rejected.set(item, err);
      }),
    );
    return { rejected };
  }

  /** Close one tenant's database (waits for its in-flight write); releases the file lock. */
  releaseTenant(tenantId: string): Promise<void> {
    return this.tenants.releaseTenant(tenantId);
  }

  /** Close every tenant database that received records from this partition. */
  releasePartition(topic: string, partition: number): Promise<void> {
    return this.tenants.releasePartition(topic, partition);
  }

  async close(): Promise<void> {
    this.tenants.closed = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    await this.checkpoints.settled();
    await this.tenants.close();
  }

  /** Path of a tenant's database file; InvariantError for anything that is not a canonical UUID in dir. */
  tenantFile(tenantId: string): string {
    return this.tenants.tenantFile(tenantId);
  }

  listTenants(): Promise<string[]> {
    return this.reads.listTenants();
  }

  countBySeverity(tenantId: string): Promise<Record<Severity, number>> {
    return this.reads.countBySeverity(tenantId);
  }

  stats(): Promise<InstanceStats> {
    return this.reads.stats();
  }

  /**
   * What the pipeline guarantees, checked before anything is written: canonical tenant ids (the
   * decoders refuse others; a path-like one must never reach the file system), an int32
   * partition and int64 offsets (DuckDB's column types). Breaking it is a bug: InvariantError.
   */
  private checkFlush(flush: SinkFlush<Signal>): void {
    if (!Number.isInteger(flush.partition) || flush.partition < 0 || flush.partition > INT32_MAX) throw new InvariantError(`Kafka partition ${flush.partition} is not an int32`);
    for (const [tenantId, items] of flush.tenants) {
      this.tenants.tenantFile(tenantId);
      for (const { offset } of items) {
        if (offset < 0n || offset > INT64_MAX) throw new InvariantError(`Kafka offset ${offset} is not an int64`);
      }
    }
  }

  /** A tenant's items join its queue; resolves with the rejects among them, or the batch's error. */
  private enqueue(tenantId: string, source: string, partition: number, items: ReadonlyArray<FlushItem<Signal>>): Promise<Map<FlushItem<Signal>, RecordRejectedError>> {
    return new Promise((resolve, reject) => {
      const write: QueuedWrite = { items, partition, resolve, reject };
      const queue = this.queued.get(tenantId);
      if (queue) {
        queue.writes.push(write);
        queue.sources.add(source);
        return;
      }
      this.queued.set(tenantId, { writes: [write], sources: new Set([source]) });
      void this.runQueue(tenantId);
    });
  }

  /** Writes every flush queued for the tenant as one batch, in the tenant's turn. */
  private async runQueue(tenantId: string): Promise<void> {
    const queue = this.queued.get(tenantId)!;
    let taken = false;
    // Writes that arrive after this point start the next run (which waits for this one's turn).
    const take = (): QueuedWrite[] => {
      if (!taken) {
        taken = true;
        if (this.queued.get(tenantId) === queue) this.queued.delete(tenantId);
      }
      return queue.writes;
    };
    try {
      await this.tenants.withTenant(tenantId, queue.sources, async (conn, tenant) => {
        const writes = take();
        for (const s of queue.sources) tenant.sources.add(s);
        if (writes.length > 1) this.metrics.coalescedWrites.inc(writes.length);
        const rows: BatchRow[] = writes.flatMap((w) => w.items.map((item) => ({ signal: item.value, partition: w.partition, offset: item.offset })));
        const rejected = await this.writer.write(conn, tenant, rows);
        tenant.dirty = true;
        tenant.lastWrittenAt = Date.now();
        let base = 0;
        for (const w of writes) {
          const own = new Map<FlushItem<Signal>, RecordRejectedError>();
          w.items.forEach((item, i) => {
            const err = rejected.get(base + i);
            if (err) own.set(item, err);
          });
          base += w.items.length;
          w.resolve(own);
        }
      });
    } catch (err) {
      for (const w of take()) w.reject(err); // a resolved write ignores this
      // Out of DuckDB memory: free some now, or every retry fails the same way.
      if (causeKind(err) === 'out_of_memory') this.checkpoints.afterWrite(true);
      return;
    }
    this.checkpoints.afterWrite(false);
  }
}
