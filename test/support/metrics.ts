import type { Registry } from 'prom-client';

/**
 * A metric's value in a prom-client registry: the sum of the samples whose labels include
 * `labels` (for a histogram, of its `_count` series). A metric that is not registered is an error,
 * so that an expected zero cannot pass by a typo.
 */
export async function registryValue(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const data = await metric.get();
  const series = String(data.type) === 'histogram' ? `${name}_count` : undefined;
  return data.values
    .filter((v) => series === undefined || (v as { metricName?: string }).metricName === series)
    .filter((v) => Object.entries(labels).every(([k, value]) => (v.labels as Record<string, unknown>)[k] === value))
    .reduce((sum, v) => sum + v.value, 0);
}
