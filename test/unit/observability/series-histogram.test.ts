import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { SeriesHistogram } from '../../../src/observability/series-histogram.js';

const buckets = [0.01, 0.05, 0.1, 0.5, 1, 10];

describe('SeriesHistogram', () => {
  it('exposes exactly what a prom-client Histogram fed the same observations exposes', async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const h = new SeriesHistogram({ name: 'lat_seconds', help: 'latency', labelNames: ['topic'], buckets, registers: [ours] });
    const ref = new Histogram({ name: 'lat_seconds', help: 'latency', labelNames: ['topic'], buckets, registers: [theirs] });
    const values = [0, 0.01, 0.010001, 0.05, 0.3, 1, 9.99, 10, 11, 1e6, -1, 0.099];
    const a = h.series({ topic: 'a' });
    for (const v of values) {
      a.observe(v);
      ref.observe({ topic: 'a' }, v);
    }
    h.observe({ topic: 'b' }, 0.2);
    ref.observe({ topic: 'b' }, 0.2);
    expect(await ours.metrics()).toBe(await theirs.metrics());
    h.remove({ topic: 'b' });
    ref.remove({ topic: 'b' });
    expect(await ours.metrics()).toBe(await theirs.metrics());
    // The same JSON too, but for prom-client's exemplar slots (always null without exemplars).
    const withoutExemplars = (await theirs.getMetricsAsJSON()).map((m) => ({ ...m, values: m.values.map((v) => { const { exemplar: _e, ...rest } = v as typeof v & { exemplar?: unknown }; return rest; }) }));
    expect(await ours.getMetricsAsJSON()).toEqual(withoutExemplars);
  });

  it('keeps one series per label set: taking it twice gives the same counts', () => {
    const h = new SeriesHistogram({ name: 'x', help: 'x', labelNames: ['topic'], buckets, registers: [new Registry()] });
    h.series({ topic: 't' }).observe(0.02);
    h.series({ topic: 't' }).observe(20);
    const s = h.series({ topic: 't' });
    expect([s.count, s.sum, [...s.counts]]).toEqual([2, 20.02, [0, 1, 0, 0, 0, 0, 1]]);
  });
});
