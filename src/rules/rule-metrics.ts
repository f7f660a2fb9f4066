import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/**
 * What a rule worker adds to WorkerMetrics: trace assembly, evaluation and signals. Rules loaded,
 * bad rules and rule-cache hits/misses are the RuleBook's (spanledger_rules_*).
 */
export class RuleWorkerMetrics {
  readonly spansEvaluated: Counter;
  readonly spansNotEvaluated: Counter<'reason'>;
  readonly tracesOpen: Gauge;
  readonly tracesOpenBytes: Gauge;
  readonly tracesClosed: Counter<'reason'>;
  readonly traceSpans: Histogram;
  readonly evaluationLatency: Histogram;
  readonly signalsProduced: Counter<'rule'>;
  readonly checkpointBytes: Gauge<'partition'>;
  readonly checkpointsWritten: Counter;
  readonly checkpointsRestored: Counter<'outcome'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.spansEvaluated = new Counter({ name: 'spanledger_rule_spans_evaluated_total', help: 'Spans added to an open trace and evaluated against their tenant\'s rules', registers });
    this.spansNotEvaluated = new Counter({
      name: 'spanledger_rule_spans_not_evaluated_total',
      help: 'Spans not evaluated, by reason: no_rules (tenant has none), late (its trace was already complete), replayed (its trace was evaluated before the last checkpoint)',
      labelNames: ['reason'],
      registers,
    });
    this.tracesOpen = new Gauge({ name: 'spanledger_rule_traces_open', help: 'Traces (segments) open in this worker', registers });
    this.tracesOpenBytes = new Gauge({ name: 'spanledger_rule_traces_open_bytes', help: 'Memory the open traces may hold at most (each at its upper bound), against MAX_OPEN_TRACE_BYTES', registers });
    this.tracesClosed = new Counter({ name: 'spanledger_rule_traces_closed_total', help: 'Traces (segments) closed and evaluated, by reason: idle, idle_wall, max_age, cap', labelNames: ['reason'], registers });
    this.traceSpans = new Histogram({ name: 'spanledger_rule_trace_spans', help: 'Spans per closed trace (segment)', buckets: [1, 2, 5, 10, 25, 50, 100, 250, 1000, 10_000, 100_000, 1_000_000], registers });
    this.evaluationLatency = new Histogram({
      name: 'spanledger_rule_evaluation_latency_seconds',
      help: 'From a trace closing to its signals being acknowledged by the broker (traces without signals: to the end of the flush)',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.signalsProduced = new Counter({ name: 'spanledger_rule_signals_produced_total', help: 'Signals acknowledged by the signals topic, by rule id', labelNames: ['rule'], registers });
    this.checkpointBytes = new Gauge({ name: 'spanledger_rule_checkpoint_bytes', help: 'Size of the last checkpoint written (compressed, as stored), per partition', labelNames: ['partition'], registers });
    this.checkpointsWritten = new Counter({ name: 'spanledger_rule_checkpoints_written_total', help: 'Checkpoints acknowledged by the checkpoint topic', registers });
    this.checkpointsRestored = new Counter({
      name: 'spanledger_rule_checkpoints_restored_total',
      help: 'Partitions taken over, by outcome: restored, none (no checkpoint: fresh start), unreadable (ignored; see the log)',
      labelNames: ['outcome'],
      registers,
    });
  }
}
