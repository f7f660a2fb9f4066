/**
 * One "worker" for duckdb-handover.test.ts, run in its own process (DuckDB's file lock is per
 * process): writes one tenant's signals from one partition, back to back, until `until`, through
 * a DuckDbSignalSink, retrying retriable failures at once. Every write also carries the next
 * signals of a sequence shared by all writers (same ids, same content: a replay for the other
 * writer). Prints one JSON line per write and a summary line at the end.
 *
 *   vite-node duckdb-handover.child.ts <dir> <tenantId> <partition> <startAtMs> <untilMs> <maxHoldMs>
 */
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { envValues, resolveSettings } from '../../src/config/load.js';
import { signalSettings } from '../../src/config/settings.js';
import { RetriableError } from '../../src/errors.js';
import { SEVERITIES, type Signal } from '../../src/model/signal.js';
import { duckDbSinkConfig } from '../../src/sinks/duckdb/config.js';
import { DuckDbSignalSink } from '../../src/sinks/duckdb/duckdb-sink.js';
import { registryValue } from '../support/metrics.js';

const OWN_PER_WRITE = 180;
const SHARED_PER_WRITE = 20;

const [dir, tenantId, partitionArg, startAtArg, untilArg, maxHoldArg] = process.argv.slice(2);
const partition = Number(partitionArg);
const startAt = Number(startAtArg);
const until = Number(untilArg);

/** A deterministic UUID for (space, n): space 0 is the shared sequence, 1 + partition a writer's own. */
function idFor(space: number, n: number): string {
  const hex = `${space.toString(16).padStart(8, '0')}${n.toString(16).padStart(24, '0')}`;
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20)}`;
}

function signalFor(space: number, n: number): Signal {
  return {
    id: idFor(space, n),
    tenantId: tenantId!,
    ruleId: `rule-${n % 7}`,
    traceId: n.toString(16).padStart(32, '0'),
    timestamp: new Date(Date.UTC(2026, 10, 24) + n * 1000).toISOString(),
    severity: SEVERITIES[n % SEVERITIES.length]!,
    message: `signal ${space}/${n}`,
    metadata: { n },
  };
}

const registry = new Registry();
const settings = resolveSettings(signalSettings, envValues(signalSettings, {}), {});
const sink = new DuckDbSignalSink(
  { ...duckDbSinkConfig(settings), dir: dir!, maxHoldMs: Number(maxHoldArg), idleTimeoutMs: 600_000 },
  { logger: pino({ level: 'silent' }), registry },
);
await sink.start();
await new Promise((resolve) => setTimeout(resolve, Math.max(0, startAt - Date.now())));

let writes = 0;
let retries = 0;
let offset = 0;
while (Date.now() < until) {
  const own = Array.from({ length: OWN_PER_WRITE }, (_, i) => signalFor(1 + partition, writes * OWN_PER_WRITE + i));
  const shared = Array.from({ length: SHARED_PER_WRITE }, (_, i) => signalFor(0, writes * SHARED_PER_WRITE + i));
  const items = [...own, ...shared].map((value) => ({ value, offset: BigInt(offset++), index: 0 }));
  for (;;) {
    try {
      const { rejected } = await sink.write({ topic: 'signals', partition, tenants: new Map([[tenantId!, items]]) });
      if (rejected.size > 0) throw new Error(`rejected: ${[...rejected.values()].map((e) => e.message).join('; ')}`);
      break;
    } catch (err) {
      if (!(err instanceof RetriableError)) throw err;
      retries += 1;
    }
  }
  writes += 1;
  console.log(JSON.stringify({ write: writes, at: Date.now() }));
}
const summary = {
  done: true,
  writes,
  retries,
  own: writes * OWN_PER_WRITE,
  shared: writes * SHARED_PER_WRITE,
  lockWaits: await registryValue(registry, 'spanledger_duckdb_lock_waits_total'),
  handovers: await registryValue(registry, 'spanledger_duckdb_handovers_total'),
};
await sink.close();
console.log(JSON.stringify(summary));
