/** The TigerBeetle sink's metrics (README.md, "Metrics"), re-used if the registry has them already. */
import { Counter, Histogram, type Registry } from 'prom-client';

export interface TigerBeetleMetrics {
  requests: Counter<'op'>;
  duration: Histogram<'op'>;
  transfers: Counter<'result'>;
  requestErrors: Counter<'op' | 'reason'>;
  writesPerRequest: Histogram;
}

function counter<L extends string>(registry: Registry, name: string, help: string, labelNames: L[]): Counter<L> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Counter<L>;
  return new Counter({ name, help, labelNames, registers: [registry] });
}

function histogram<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: L[],
  buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
): Histogram<L> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Histogram<L>;
  return new Histogram({ name, help, labelNames, buckets, registers: [registry] });
}

export function tigerBeetleMetrics(registry: Registry): TigerBeetleMetrics {
  return {
    requests: counter(registry, 'spanledger_tigerbeetle_requests_total', 'TigerBeetle requests issued by the sink', ['op']),
    duration: histogram(
      registry,
      'spanledger_tigerbeetle_request_duration_seconds',
      'Time from issuing a TigerBeetle request to its answer, error or timeout',
      ['op'],
    ),
    transfers: counter(
      registry,
      'spanledger_tigerbeetle_transfers_total',
      'Signal transfers by result: ok (created), exists (replay, counts as success), rejected',
      ['result'],
    ),
    requestErrors: counter(
      registry,
      'spanledger_tigerbeetle_request_errors_total',
      'TigerBeetle requests that failed as a whole, by reason',
      ['op', 'reason'],
    ),
    writesPerRequest: histogram(
      registry,
      'spanledger_tigerbeetle_writes_per_request',
      'Sink writes (one tenant of one flush each) whose transfers share one create_transfers request',
      [],
      [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000],
    ),
  };
}
