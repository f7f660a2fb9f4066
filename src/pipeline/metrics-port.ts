/**
 * The metrics the pipeline reports, as a port: the pipeline says what it counts, the
 * observability side (WorkerMetrics, prom-client) says how it is exposed. Only the calls the
 * pipeline makes are listed, so a test may hand in anything that has them.
 */
export type MetricLabels<L extends string> = Partial<Record<L, string | number>>;

export interface CounterPort<L extends string> {
  inc(labels: MetricLabels<L>, value?: number): void;
}

export interface GaugePort<L extends string> {
  set(labels: MetricLabels<L>, value: number): void;
  remove(labels: MetricLabels<L>): void;
}

export interface HistogramPort<L extends string> {
  observe(labels: MetricLabels<L>, value: number): void;
  /** Starts a timer; calling what it returns observes the seconds since. */
  startTimer(labels?: MetricLabels<L>): () => number;
}

/** A histogram whose series of one label set is taken once and observed many times (hot paths). */
export interface SeriesHistogramPort<L extends string> {
  series(labels: Record<L, string>): { observe(value: number): void };
}

export interface PipelineMetrics {
  readonly consumed: CounterPort<'topic'>;
  readonly written: CounterPort<'topic'>;
  readonly deadLettered: CounterPort<'topic' | 'reason'>;
  readonly skippedRedelivered: CounterPort<'topic'>;
  readonly batchRecords: HistogramPort<'topic'>;
  readonly flushDuration: HistogramPort<'topic'>;
  readonly commitDuration: HistogramPort<'topic'>;
  readonly endToEndLatency: SeriesHistogramPort<'topic'>;
  readonly flushes: CounterPort<'topic' | 'reason'>;
  readonly retries: CounterPort<'topic' | 'sink'>;
  readonly commitFailures: CounterPort<'topic'>;
  readonly inFlightRecords: GaugePort<'topic'>;
  readonly inFlightBytes: GaugePort<'topic'>;
  readonly fetchPaused: GaugePort<'topic'>;
  readonly fetchPauses: CounterPort<'topic'>;
  readonly inFlightBytesMax: GaugePort<'topic'>;
  readonly lag: GaugePort<'topic' | 'partition'>;
  readonly assignedPartitions: GaugePort<'topic'>;
  readonly partitionStuck: GaugePort<'topic' | 'partition' | 'reason'>;
  readonly partitionsPaused: GaugePort<'topic' | 'reason'>;
  readonly inFlightRatio: GaugePort<'topic'>;
  readonly backpressurePauseBytes: GaugePort<'topic'>;
  readonly backpressureResumeBytes: GaugePort<'topic'>;
  readonly breakerState: GaugePort<'store'>;
  readonly breakerStateSeconds: CounterPort<'store' | 'state'>;
  readonly breakerTransitions: CounterPort<'store' | 'to'>;
  /** `hook` runs before every scrape (e.g. to add the time spent in the current breaker state so far). */
  beforeScrape(hook: () => void): void;
}
