import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { PipelineMetrics } from '../pipeline/metrics-port.js';
import { SeriesHistogram } from './series-histogram.js';

export function createRegistry(withDefaults = true): Registry {
  const registry = new Registry();
  if (withDefaults) collectDefaultMetrics({ register: registry, prefix: 'spanledger_process_' });
  return registry;
}

/** The metrics every consumer worker exposes, whatever its sinks. Labels: topic, partition. */
export class WorkerMetrics implements PipelineMetrics {
  readonly consumed: Counter<'topic'>;
  readonly written: Counter<'topic'>;
  readonly deadLettered: Counter<'topic' | 'reason'>;
  readonly quarantined: Counter<'topic' | 'reason'>;
  readonly skippedRedelivered: Counter<'topic'>;
  readonly batchRecords: Histogram<'topic'>;
  readonly flushDuration: Histogram<'topic'>;
  readonly commitDuration: Histogram<'topic'>;
  /** Observed once per stored item (span, signal) with its record's latency: see SeriesHistogram. */
  readonly endToEndLatency: SeriesHistogram<'topic'>;
  readonly flushes: Counter<'topic' | 'reason'>;
  readonly retries: Counter<'topic' | 'sink'>;
  readonly commitFailures: Counter<'topic'>;
  readonly inFlightRecords: Gauge<'topic'>;
  readonly inFlightBytes: Gauge<'topic'>;
  readonly fetchPaused: Gauge<'topic'>;
  readonly fetchPauses: Counter<'topic'>;
  readonly inFlightBytesMax: Gauge<'topic'>;
  readonly lag: Gauge<'topic' | 'partition'>;
  readonly assignedPartitions: Gauge<'topic'>;
  readonly partitionStuck: Gauge<'topic' | 'partition' | 'reason'>;
  readonly partitionsPaused: Gauge<'topic' | 'reason'>;
  readonly inFlightRatio: Gauge<'topic'>;
  readonly backpressurePauseBytes: Gauge<'topic'>;
  readonly backpressureResumeBytes: Gauge<'topic'>;
  readonly breakerState: Gauge<'store'>;
  readonly breakerStateSeconds: Counter<'store' | 'state'>;
  readonly breakerTransitions: Counter<'store' | 'to'>;
  /** Called before every scrape (e.g. to add the time spent in the current breaker state so far). */
  private readonly scrapeHooks: Array<() => void> = [];

  constructor(registry: Registry) {
    const registers = [registry];
    this.consumed = new Counter({ name: 'spanledger_records_consumed_total', help: 'Records taken from Kafka into a worker buffer', labelNames: ['topic'], registers });
    this.written = new Counter({ name: 'spanledger_records_written_total', help: 'Records durably stored in every sink they belong in', labelNames: ['topic'], registers });
    this.deadLettered = new Counter({ name: 'spanledger_records_dead_lettered_total', help: 'Records acknowledged by the dead-letter topic, by reason', labelNames: ['topic', 'reason'], registers });
    this.quarantined = new Counter({ name: 'spanledger_dead_letters_quarantined_total', help: 'Dead letters the dead-letter topic refused for good, kept in QUARANTINE_DIR instead, by reason', labelNames: ['topic', 'reason'], registers });
    this.skippedRedelivered = new Counter({ name: 'spanledger_records_redelivered_skipped_total', help: 'Records Kafka delivered again that were already in custody', labelNames: ['topic'], registers });
    this.batchRecords = new Histogram({ name: 'spanledger_batch_records', help: 'Records per partition flush', labelNames: ['topic'], buckets: [1, 10, 100, 500, 1000, 2000, 5000, 10000, 50000], registers });
    this.flushDuration = new Histogram({ name: 'spanledger_flush_duration_seconds', help: 'Time to make one partition flush durable in all sinks', labelNames: ['topic'], buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers });
    this.commitDuration = new Histogram({ name: 'spanledger_commit_duration_seconds', help: 'Time of one Kafka offset commit', labelNames: ['topic'], buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers });
    this.endToEndLatency = new SeriesHistogram({ name: 'spanledger_end_to_end_latency_seconds', help: 'From the Kafka record timestamp to its durable write, one observation per stored item (span, signal)', labelNames: ['topic'], buckets: [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 10, 30], registers });
    this.flushes = new Counter({ name: 'spanledger_flushes_total', help: 'Partition flushes, by what triggered them: records, bytes, age (the batch limits), caught_up (nothing more waiting in Kafka), paused (fetching paused on the in-flight budget)', labelNames: ['topic', 'reason'], registers });
    this.retries = new Counter({ name: 'spanledger_sink_retries_total', help: 'Retries of a sink write after a transient failure', labelNames: ['topic', 'sink'], registers });
    this.commitFailures = new Counter({ name: 'spanledger_commit_failures_total', help: 'Offset commits Kafka refused (retried at the next flush)', labelNames: ['topic'], registers });
    this.inFlightRecords = new Gauge({ name: 'spanledger_records_in_flight', help: 'Records buffered or being flushed', labelNames: ['topic'], registers });
    this.inFlightBytes = new Gauge({ name: 'spanledger_bytes_in_flight', help: 'Bytes of records buffered or being flushed, and fetched ahead by the consumer (counted against MAX_IN_FLIGHT_BYTES)', labelNames: ['topic'], registers });
    this.fetchPaused = new Gauge({ name: 'spanledger_fetch_paused', help: '1 while fetching is paused because too much is in flight', labelNames: ['topic'], registers });
    this.fetchPauses = new Counter({ name: 'spanledger_fetch_pauses_total', help: 'Times fetching paused because too much was in flight', labelNames: ['topic'], registers });
    this.inFlightBytesMax = new Gauge({ name: 'spanledger_bytes_in_flight_max', help: 'Most bytes of records buffered or being flushed at once since start', labelNames: ['topic'], registers });
    this.lag = new Gauge({ name: 'spanledger_consumer_lag', help: 'High watermark minus the committed offset, per partition', labelNames: ['topic', 'partition'], registers });
    this.partitionStuck = new Gauge({ name: 'spanledger_partition_stuck', help: '1 while a partition is paused at a batch that cannot be decompressed', labelNames: ['topic', 'partition', 'reason'], registers });
    this.partitionsPaused = new Gauge({ name: 'spanledger_partitions_paused', help: 'Assigned partitions whose fetching is paused, by reason: backpressure (in-flight bytes over the pause mark), breaker (a flush waits for an open circuit breaker), stuck (an undecodable batch)', labelNames: ['topic', 'reason'], registers });
    this.inFlightRatio = new Gauge({ name: 'spanledger_in_flight_ratio', help: 'Bytes of records buffered or being flushed, and fetched ahead by the consumer, / MAX_IN_FLIGHT_BYTES', labelNames: ['topic'], registers });
    this.backpressurePauseBytes = new Gauge({ name: 'spanledger_backpressure_pause_bytes', help: 'In-flight bytes above which fetching pauses (BACKPRESSURE_PAUSE_FRACTION of MAX_IN_FLIGHT_BYTES)', labelNames: ['topic'], registers });
    this.backpressureResumeBytes = new Gauge({ name: 'spanledger_backpressure_resume_bytes', help: 'In-flight bytes at or below which paused fetching resumes (BACKPRESSURE_RESUME_FRACTION of MAX_IN_FLIGHT_BYTES)', labelNames: ['topic'], registers });
    this.breakerState = new Gauge({ name: 'spanledger_breaker_state', help: 'Circuit breaker of a store: 0 closed, 1 half-open (a probe is under way), 2 open', labelNames: ['store'], registers });
    const hooks = this.scrapeHooks;
    this.breakerStateSeconds = new Counter({
      name: 'spanledger_breaker_state_seconds_total',
      help: 'Time a store\'s circuit breaker spent in each state (closed, half_open, open)',
      labelNames: ['store', 'state'],
      registers,
      collect() {
        for (const hook of hooks) hook();
      },
    });
    this.breakerTransitions = new Counter({ name: 'spanledger_breaker_transitions_total', help: 'Circuit breaker state changes of a store, by the state it went to', labelNames: ['store', 'to'], registers });
    this.assignedPartitions = new Gauge({ name: 'spanledger_assigned_partitions', help: 'Partitions assigned to this worker', labelNames: ['topic'], registers });
  }

  /** `hook` runs before every scrape of the registry. */
  beforeScrape(hook: () => void): void {
    this.scrapeHooks.push(hook);
  }
}
