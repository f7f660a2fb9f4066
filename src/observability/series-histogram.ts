import type { Metric, Registry } from 'prom-client';

/** One label set of a SeriesHistogram: observing is a bucket search and three additions. */
export class HistogramSeries {
  /** Non-cumulative count per bucket; the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    private readonly bounds: readonly number[],
    readonly labels: Readonly<Record<string, string>>,
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const { bounds } = this;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i += 1;
    this.counts[i]! += 1;
    this.sum += value;
    this.count += 1;
  }
}

interface Sample {
  labels: Record<string, string | number>;
  sharedLabels?: Readonly<Record<string, string>>;
  value: number;
  metricName: string;
}

interface MetricData {
  name: string;
  help: string;
  type: 'histogram';
  aggregator: 'sum';
  values: Sample[];
}

interface Options<L extends string> {
  name: string;
  help: string;
  labelNames: readonly L[];
  buckets: readonly number[];
  registers: Registry[];
}

/**
 * A Prometheus histogram for hot paths, exposed exactly as prom-client's Histogram (same
 * `_bucket{le}`, `_sum`, `_count` lines): callers take the series of a label set once (`series`)
 * and observe on it, without the label hashing and the objects prom-client's `observe` costs per
 * call (~0.35 µs on the development machine; the span worker observed once per span).
 */
export class SeriesHistogram<L extends string = string> {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram' as const;
  readonly aggregator = 'sum' as const;
  private readonly bounds: number[];
  private readonly byKey = new Map<string, HistogramSeries>();

  constructor(private readonly options: Options<L>) {
    this.name = options.name;
    this.help = options.help;
    this.bounds = [...options.buckets].sort((a, b) => a - b);
    for (const registry of options.registers) registry.registerMetric(this as unknown as Metric);
  }

  /** The series of one label set (created on first use; keep it, it stays valid until `remove`/`reset`). */
  series(labels: Record<L, string>): HistogramSeries {
    const key = this.key(labels);
    let s = this.byKey.get(key);
    if (s === undefined) {
      s = new HistogramSeries(this.bounds, { ...labels });
      this.byKey.set(key, s);
    }
    return s;
  }

  observe(labels: Record<L, string>, value: number): void {
    this.series(labels).observe(value);
  }

  remove(labels: Record<L, string>): void {
    this.byKey.delete(this.key(labels));
  }

  reset(): void {
    this.byKey.clear();
  }

  /** What prom-client's Registry formats: the same values, in the same order, a prom-client Histogram gives. */
  getForPromString(): MetricData {
    const values: Sample[] = [];
    for (const s of this.byKey.values()) {
      let cumulative = 0;
      this.bounds.forEach((le, i) => {
        cumulative += s.counts[i]!;
        values.push({ labels: { le }, sharedLabels: s.labels, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { le: '+Inf' }, sharedLabels: s.labels, value: s.count, metricName: `${this.name}_bucket` });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** The same, with the label sets merged (getMetricsAsJSON). */
  get(): MetricData {
    const data = this.getForPromString();
    data.values = data.values.map(({ sharedLabels, labels, ...rest }) => ({ ...rest, labels: { ...labels, ...sharedLabels } }));
    return data;
  }

  private key(labels: Record<L, string>): string {
    return this.options.labelNames.map((n) => labels[n]).join('\u0000');
  }
}
