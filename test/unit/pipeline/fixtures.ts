import { pino } from 'pino';
import { Registry } from 'prom-client';
import { vi } from 'vitest';
import { RecordRejectedError, RetriableError } from '../../../src/errors.js';
import type { Decoded, RecordDecoder } from '../../../src/model/decode.js';
import { WorkerMetrics } from '../../../src/observability/metrics.js';
import { Pipeline, type PipelineOptions } from '../../../src/pipeline/pipeline.js';
import type { PartitionProcessor, PipelineStages, ValidEntry } from '../../../src/pipeline/types.js';
import type { FlushItem, FlushSink, Position, SinkFlush, SinkWriteResult } from '../../../src/sinks/types.js';
import { pipelineResources, ResourceStack } from '../../../src/workers/resource-stack.js';
import { FakeConsumer, FakeDeadLetters } from '../../support/fake-consumer.js';

export const TOPIC = 'events';

/**
 * Values are `tenant:item` pairs separated by commas (one record, several items, as an OTLP
 * request); `bad` is rejected at decoding.
 */
export class TestDecoder implements RecordDecoder<string> {
  decode(message: { value: Buffer | null }): Decoded<string> {
    const text = message.value?.toString() ?? '';
    if (text === 'bad') return { ok: false, error: new RecordRejectedError('InvalidJson', 'not a test record') };
    return {
      ok: true,
      items: text.split(',').map((pair) => {
        const [tenantId, value] = pair.split(':');
        return { tenantId: tenantId!, value: value! };
      }),
    };
  }
}

export interface Deferred<T = void> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

export interface SinkWrite {
  tenantId: string;
  values: string[];
  topic: string;
  partition: number;
  positions: Position[];
}

/** What `onWrite` answers for one tenant's items: indexes (in that tenant's list) refused for good. */
export interface TenantWriteResult {
  rejected: Map<number, RecordRejectedError>;
}

/** A sink that keeps what it was given; `onWrite` may fail, wait or refuse records. */
export class RecordingSink implements FlushSink<string> {
  readonly writes: SinkWrite[] = [];
  readonly events: string[] = [];
  syncs = 0;
  released: number[] = [];
  closed = false;
  /** Called per tenant of a flush (the tenants side by side). */
  onWrite: (tenantId: string, values: string[]) => Promise<TenantWriteResult | void> | TenantWriteResult | void = () => {};

  constructor(readonly name = 'recording') {}

  async start(): Promise<void> {}

  async write(flush: SinkFlush<string>): Promise<SinkWriteResult<string>> {
    const rejected = new Map<FlushItem<string>, RecordRejectedError>();
    await Promise.all(
      [...flush.tenants].map(async ([tenantId, items]) => {
        if (items.length === 0) return;
        const values = items.map((r) => r.value);
        const result = await this.onWrite(tenantId, values);
        this.writes.push({ tenantId, values, topic: flush.topic, partition: flush.partition, positions: items.map((r) => ({ offset: r.offset, index: r.index })) });
        this.events.push(`write ${tenantId} ${values.join(' ')}`);
        for (const [i, error] of result?.rejected ?? []) rejected.set(items[i]!, error);
      }),
    );
    return { rejected };
  }

  async sync(): Promise<void> {
    this.syncs += 1;
    this.events.push('sync');
  }

  async releasePartition(_topic: string, partition: number): Promise<void> {
    this.released.push(partition);
    this.events.push(`release ${partition}`);
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** Every value stored for a tenant, in the order written. */
  stored(tenantId: string): string[] {
    return this.writes.filter((w) => w.tenantId === tenantId).flatMap((w) => w.values);
  }
}

/** A processor that logs every call in order; each hook can be replaced by a test. */
export class RecordingProcessor implements PartitionProcessor<string> {
  readonly name = 'rules';
  readonly calls: string[] = [];
  readonly applied: Array<{ partition: number; items: Array<ValidEntry<string>>; lastOffset: bigint }> = [];
  onOpen: (partition: number) => Promise<void> | void = () => {};
  onSync: (partition: number) => Promise<void> | void = () => {};
  onBeforeCommit: (partition: number, offset: bigint) => Promise<void> | void = () => {};
  committable: (partition: number) => bigint | undefined = () => undefined;

  async start(): Promise<void> {
    this.calls.push('start');
  }

  async close(): Promise<void> {
    this.calls.push('close');
  }

  async openPartition(_topic: string, partition: number): Promise<void> {
    this.calls.push(`open ${partition}`);
    await this.onOpen(partition);
  }

  apply(_topic: string, partition: number, items: ReadonlyArray<ValidEntry<string>>, lastOffset: bigint): void {
    this.applied.push({ partition, items: [...items], lastOffset });
    this.calls.push(`apply ${partition} ${items.map((i) => `${i.offset}.${i.index}`).join(' ')} last=${lastOffset}`);
  }

  tick(_topic: string, partition: number): void {
    this.calls.push(`tick ${partition}`);
  }

  async sync(_topic: string, partition: number): Promise<void> {
    this.calls.push(`sync ${partition}`);
    await this.onSync(partition);
  }

  committableOffset(_topic: string, partition: number): bigint | undefined {
    return this.committable(partition);
  }

  async beforeCommit(_topic: string, partition: number, offset: bigint): Promise<void> {
    this.calls.push(`beforeCommit ${partition} ${offset}`);
    await this.onBeforeCommit(partition, offset);
  }

  async releasePartition(_topic: string, partition: number): Promise<void> {
    this.calls.push(`release ${partition}`);
  }
}

export interface Harness {
  pipeline: Pipeline<string>;
  consumer: FakeConsumer;
  deadLetters: FakeDeadLetters;
  metrics: WorkerMetrics;
  registry: Registry;
  fatal: Error[];
  /**
   * Stops as a worker does: the pipeline (flush, commit, leave the group) within `timeoutMs`,
   * then what it used in reverse start order (decode pool, processor or sinks, dead letters).
   * Resolves the pipeline's answer: true when everything was flushed and committed in time.
   */
  stop(timeoutMs: number): Promise<boolean>;
}

type Tunables = Partial<Omit<PipelineOptions<string>, 'sinks' | 'processor' | 'tickIntervalMs'>>;

/**
 * A started pipeline on a fake consumer, with its dead letters, sinks or processor started
 * before it as a worker starts them (pipelineResources); records flush as soon as a partition
 * caught up.
 */
export async function startPipeline(stages: PipelineStages<string>, tunables: Tunables = {}): Promise<Harness> {
  const consumer = new FakeConsumer(TOPIC);
  const deadLetters = new FakeDeadLetters();
  const registry = new Registry();
  const metrics = new WorkerMetrics(registry);
  const fatal: Error[] = [];
  const logger = pino({ level: 'silent' });
  const pipeline = new Pipeline<string>({
    ...stages,
    consumer,
    deadLetters,
    topic: TOPIC,
    decoder: new TestDecoder(),
    limits: { maxRecords: 10_000, maxBytes: 64 << 20, maxAgeMs: 60_000 },
    flushWhenCaughtUp: true,
    maxInFlightBytes: 64 << 20,
    backpressure: { pauseFraction: 0.9, resumeFraction: 0.5 },
    // Never opens unless a test asks for it: tests of retries see every failure reach the store.
    breakers: { failureRate: 0.99, windowMs: 60_000, minCalls: 1_000_000, halfOpenAfterMs: 30_000 },
    heartbeatIntervalMs: 50,
    retryMaxDelayMs: 20,
    shutdownTimeoutMs: 200,
    logger,
    metrics,
    onFatal: (e) => fatal.push(e),
    ...tunables,
  });
  const resources = new ResourceStack(logger);
  let clean = true;
  let stopTimeoutMs = 0;
  const parts = {
    deadLetters,
    dlqMaxMessageBytes: 1 << 20,
    stages,
    decodePool: tunables.decodePool,
    pipeline,
    // Each test says how long its stop may take.
    get shutdownTimeoutMs() {
      return stopTimeoutMs;
    },
    onPipelineStopped: (stopped: boolean) => {
      clean = stopped;
    },
  };
  for (const resource of pipelineResources(parts)) await resources.start(resource);
  const stop = async (timeoutMs: number) => {
    stopTimeoutMs = timeoutMs;
    await resources.stopAll();
    return clean;
  };
  return { pipeline, consumer, deadLetters, metrics, registry, fatal, stop };
}

/** Polls `check` until it stops throwing (real timers, 1 ms apart). */
export function eventually<T>(check: () => T, timeout = 2_000): Promise<T> {
  return vi.waitFor(check, { timeout, interval: 1 });
}

/** Lets queued callbacks and a few timer turns run: for asserting that something did NOT happen. */
export function settleFor(ms = 30): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Sum of a metric's values over all labels. */
export async function metric(registry: Registry, name: string): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  return (m?.values ?? []).reduce((n, v) => n + Number(v.value), 0);
}

/** A hook that fails with a RetriableError the first `times` calls, then succeeds. */
export function failingFirst(times: number): { hook: () => void; failures: () => number } {
  let failures = 0;
  return {
    hook: () => {
      if (failures >= times) return;
      failures += 1;
      throw new RetriableError(`transient failure ${failures}`);
    },
    failures: () => failures,
  };
}

export function records(...values: string[]): Array<{ value: string }> {
  return values.map((value) => ({ value }));
}
