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

/** The metrics the pipeline reports, grouped by kind and labels (names as in WorkerMetrics). */
export type PipelineMetrics = Readonly<
  Record<'consumed' | 'written' | 'skippedRedelivered' | 'commitFailures' | 'fetchPauses', CounterPort<'topic'>> &
    Record<'deadLettered' | 'flushes', CounterPort<'topic' | 'reason'>> &
    Record<'retries', CounterPort<'topic' | 'sink'>> &
    Record<'batchRecords' | 'flushDuration' | 'commitDuration', HistogramPort<'topic'>> &
    Record<'endToEndLatency', SeriesHistogramPort<'topic'>> &
    Record<'inFlightRecords' | 'inFlightBytes' | 'inFlightBytesMax' | 'inFlightRatio' | 'fetchPaused' | 'assignedPartitions' | 'backpressurePauseBytes' | 'backpressureResumeBytes', GaugePort<'topic'>> &
    Record<'lag', GaugePort<'topic' | 'partition'>> &
    Record<'partitionStuck', GaugePort<'topic' | 'partition' | 'reason'>> &
    Record<'partitionsPaused', GaugePort<'topic' | 'reason'>> &
    // The circuit breakers' (breakers.ts).
    Record<'breakerState', GaugePort<'store'>> &
    Record<'breakerStateSeconds', CounterPort<'store' | 'state'>> &
    Record<'breakerTransitions', CounterPort<'store' | 'to'>>
> & {
  /** `hook` runs before every scrape (e.g. to add the time spent in the current breaker state so far). */
  beforeScrape(hook: () => void): void;
};
