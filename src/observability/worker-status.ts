import fs from 'node:fs';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { PipelineSnapshot, PipelineTotals } from '../pipeline/pipeline.js';
import type { BreakerStatus as StoreBreakerStatus } from '../pipeline/breakers.js';
import type { PauseReason } from '../pipeline/fetch-pauses.js';

export type WorkerRole = 'spans' | 'rules' | 'signals' | 'archive';

/** A store's circuit breaker as the pipeline reports it (Pipeline.breakerStates(), once circuit breakers exist). */
/** A store's circuit breaker in /status: Pipeline.breakerStates() with ISO times. */
export interface BreakerStatus {
  store: string;
  state: string;
  since: string;
  nextProbeAt?: string;
  lastFailure?: string;
}

/** What a worker's /status is made from. Kafka-free: the pipeline's snapshot plus optional hooks. */
export interface StatusSource {
  role: WorkerRole;
  group: string;
  topic: string;
  workerId: string;
  /** host:port other machines reach /status at (STATUS_ADVERTISE_ADDRESS). */
  address: () => string | undefined;
  /** undefined before the pipeline exists (the worker is starting). */
  snapshot: () => PipelineSnapshot | undefined;
  /** Rule workers: open traces in the rule processor. */
  openTraces?: () => number;
  /** Circuit breakers of the stores; none until the pipeline has them. */
  breakers?: () => StoreBreakerStatus[];
}

export interface PartitionStatus {
  partition: number;
  committedOffset: string | null;
  endOffset: string | null;
  lag: string | null;
  lastCommitAgeSeconds: number | null;
  paused: PauseReason | null;
  stuckReason: string | null;
  bufferedRecords: number;
  bufferedBytes: number;
}

/** The JSON of GET /status (docs/status.md). */
export interface WorkerStatusJson {
  role: WorkerRole;
  group: string;
  topic: string;
  workerId: string;
  version: string;
  address: string | null;
  pid: number;
  startedAt: string;
  uptimeSeconds: number;
  ready: boolean;
  healthy: boolean;
  problems: string[];
  partitions: PartitionStatus[];
  inFlight: { records: number; bytes: number; budgetBytes: number; maxBytesSeen: number };
  openTraces: number | null;
  totals: PipelineTotals;
  rates: { windowSeconds: number; consumedPerSecond: number; writtenPerSecond: number; deadLetteredPerSecond: number };
  process: { rssBytes: number; heapUsedBytes: number; eventLoopDelayMs: { p50: number; p99: number; max: number; windowSeconds: number } };
  breakers: BreakerStatus[];
}

/** Seconds of history the rates cover. */
export const RATE_WINDOW_SECONDS = 60;

const NO_TOTALS: PipelineTotals = { consumed: 0, written: 0, deadLettered: 0 };

/**
 * Per-second rates over the last minute from counters that only grow: a ring of one sample a
 * second (taken by a timer, not on the hot path), the rate being the newest minus the oldest
 * over the time between them.
 */
export class CounterRates {
  private readonly at = new Float64Array(RATE_WINDOW_SECONDS + 1);
  private readonly values: Record<keyof PipelineTotals, Float64Array> = {
    consumed: new Float64Array(RATE_WINDOW_SECONDS + 1),
    written: new Float64Array(RATE_WINDOW_SECONDS + 1),
    deadLettered: new Float64Array(RATE_WINDOW_SECONDS + 1),
  };
  private next = 0;
  private count = 0;

  sample(nowMs: number, totals: PipelineTotals): void {
    const i = this.next;
    this.at[i] = nowMs;
    this.values.consumed[i] = totals.consumed;
    this.values.written[i] = totals.written;
    this.values.deadLettered[i] = totals.deadLettered;
    this.next = (i + 1) % this.at.length;
    this.count = Math.min(this.count + 1, this.at.length);
  }

  /** Rates between the oldest sample kept and `totals` now (zeros until one second has passed). */
  rates(nowMs: number, totals: PipelineTotals): WorkerStatusJson['rates'] {
    const oldest = this.count < this.at.length ? 0 : this.next;
    const seconds = this.count === 0 ? 0 : (nowMs - this.at[oldest]!) / 1000;
    const rate = (key: keyof PipelineTotals) => (seconds < 1 ? 0 : round((totals[key] - this.values[key][oldest]!) / seconds));
    return { windowSeconds: round(seconds), consumedPerSecond: rate('consumed'), writtenPerSecond: rate('written'), deadLetteredPerSecond: rate('deadLettered') };
  }
}

/**
 * A worker's /status: identity, per-partition offsets and buffers, rates, process health. Owns
 * the once-a-second sampler and the event-loop delay monitor (start/stop); status() only reads.
 */
export class WorkerStatus {
  private readonly rates = new CounterRates();
  private readonly loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
  /** The last full minute of event-loop delay (the live histogram restarts every minute). */
  private lastLoopDelay: WorkerStatusJson['process']['eventLoopDelayMs'] | undefined;
  private loopDelaySince = 0;
  private timer: NodeJS.Timeout | undefined;
  private startedAt = Date.now();

  constructor(
    private readonly source: StatusSource,
    private readonly clock: () => number = Date.now,
  ) {}

  start(): void {
    if (this.timer !== undefined) return;
    this.startedAt = this.clock();
    this.loopDelaySince = this.startedAt;
    this.loopDelay.enable();
    this.sample();
    this.timer = setInterval(() => this.sample(), 1000);
    // Sampling must not keep a stopping worker alive.
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.loopDelay.disable();
  }

  /** One sample of the counters; the timer calls it every second (tests may call it themselves). */
  sample(): void {
    const now = this.clock();
    this.rates.sample(now, this.source.snapshot()?.totals ?? NO_TOTALS);
    if (now - this.loopDelaySince >= RATE_WINDOW_SECONDS * 1000) {
      this.lastLoopDelay = this.currentLoopDelay(now);
      this.loopDelay.reset();
      this.loopDelaySince = now;
    }
  }

  status(): WorkerStatusJson {
    const { source } = this;
    const now = this.clock();
    const snapshot = source.snapshot();
    const breakers = (source.breakers?.() ?? []).map(
      (b): BreakerStatus => ({ store: b.store, state: b.state, since: b.since.toISOString(), ...(b.nextProbeAt && { nextProbeAt: b.nextProbeAt.toISOString() }), ...(b.lastFailure && { lastFailure: b.lastFailure }) }),
    );
    const totals = snapshot?.totals ?? NO_TOTALS;
    const memory = process.memoryUsage();
    return {
      role: source.role,
      group: source.group,
      topic: source.topic,
      workerId: source.workerId,
      version: VERSION,
      address: source.address() ?? null,
      pid: process.pid,
      startedAt: new Date(this.startedAt).toISOString(),
      uptimeSeconds: round((now - this.startedAt) / 1000),
      ready: snapshot?.ready ?? false,
      healthy: snapshot?.healthy ?? true,
      problems: snapshot?.problems ?? [],
      partitions: (snapshot?.partitions ?? []).map((p) => ({
        partition: p.partition,
        committedOffset: p.committedOffset ?? null,
        endOffset: p.endOffset ?? null,
        lag: p.lag ?? null,
        lastCommitAgeSeconds: p.lastCommitAt === undefined ? null : round((now - p.lastCommitAt) / 1000),
        paused: p.paused ?? null,
        stuckReason: p.stuckReason ?? null,
        bufferedRecords: p.bufferedRecords,
        bufferedBytes: p.bufferedBytes,
      })),
      inFlight: snapshot?.inFlight ?? { records: 0, bytes: 0, budgetBytes: 0, maxBytesSeen: 0 },
      openTraces: source.openTraces?.() ?? null,
      totals,
      rates: this.rates.rates(now, totals),
      process: { rssBytes: memory.rss, heapUsedBytes: memory.heapUsed, eventLoopDelayMs: this.lastLoopDelay ?? this.currentLoopDelay(now) },
      breakers,
    };
  }

  private currentLoopDelay(now: number): WorkerStatusJson['process']['eventLoopDelayMs'] {
    const h = this.loopDelay;
    // An empty histogram reports NaN and huge sentinels: no samples yet reads as 0.
    const ms = (ns: number) => (Number.isFinite(ns) && h.count > 0 ? round(ns / 1e6) : 0);
    return { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max), windowSeconds: round((now - this.loopDelaySince) / 1000) };
  }
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}

/** package.json sits two folders up from both src/observability and dist/observability. */
function packageVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

const VERSION = packageVersion();
