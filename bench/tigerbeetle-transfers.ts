/**
 * Micro-benchmark: createTransfers throughput with full 8189-event batches against one replica.
 *
 *   TB_ADDRESS=127.0.0.1:3000 npx vite-node bench/tigerbeetle-transfers.ts
 *   TIGERBEETLE_BIN=/path/to/tigerbeetle npx vite-node bench/tigerbeetle-transfers.ts
 *
 * (Same cluster discovery as the integration tests: test/support/tigerbeetle.ts. A replica it
 * starts runs with --development, i.e. without Direct IO: numbers are indicative only.)
 *
 * Three loops, each BATCHES (default 20) rounds after 2 warm-up rounds: (1) the raw
 * tigerbeetle-node client, one request of 8189 pre-built transfers a round; (2) the sink's write()
 * of a flush of 8189 signals of one tenant a round, which also turns signals into transfers and
 * reads the results; (3) flush-shaped: one flush of TENANTS (default 500) tenants × 16 signals a
 * round, as the pipeline writes a partition's flush over many tenants (the sink sends them in
 * shared requests; the round's createTransfers count is printed). Each prints transfers/s next to the
 * 50K signals/s target. Bounded: about 3 × (2 + BATCHES) requests (plus TENANTS account
 * requests) and it stops.
 */
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { createClient, CreateTransferStatus, type Transfer } from 'tigerbeetle-node';
import type { Signal } from '../src/model/signal.js';
import { accountIdFor, signalToTransfer } from '../src/sinks/tigerbeetle/derivation.js';
import { TIGERBEETLE_BATCH_MAX, TigerBeetleSignalSink } from '../src/sinks/tigerbeetle/tigerbeetle-sink.js';
import { startTigerBeetle } from '../test/support/tigerbeetle.js';
import { TB_SETTING_DEFAULTS, signalFlush } from '../test/support/tigerbeetle-flush.js';

const TARGET_PER_SECOND = 50_000;
const BATCHES = Number(process.env.BATCHES ?? 20);
const TENANTS = Number(process.env.TENANTS ?? 500);
const PER_TENANT = 16;
const WARMUP = 2;

function makeSignals(tenantId: string, n: number): Signal[] {
  const now = new Date().toISOString();
  return Array.from({ length: n }, (_, i) => ({
    id: randomUUID(),
    tenantId,
    ruleId: `rule.${i % 16}`,
    traceId: randomUUID().replace(/-/g, ''),
    timestamp: now,
    severity: 'HIGH' as const,
    message: 'benchmark signal',
    metadata: {},
  }));
}

function report(label: string, transfers: number, seconds: number, latenciesMs: number[]): void {
  const rate = transfers / seconds;
  latenciesMs.sort((a, b) => a - b);
  const p50 = latenciesMs[Math.floor(latenciesMs.length * 0.5)] ?? 0;
  const max = latenciesMs[latenciesMs.length - 1] ?? 0;
  const verdict = rate >= TARGET_PER_SECOND ? 'meets' : 'BELOW';
  console.log(
    `${label}: ${transfers} transfers in ${seconds.toFixed(2)} s = ${Math.round(rate).toLocaleString('en-US')} transfers/s ` +
      `(target ${TARGET_PER_SECOND.toLocaleString('en-US')}/s: ${verdict}, ${(rate / TARGET_PER_SECOND).toFixed(2)}×); ` +
      `per batch p50 ${p50.toFixed(1)} ms, max ${max.toFixed(1)} ms`,
  );
}

const tb = await startTigerBeetle();
if ('skipped' in tb) {
  console.log(tb.skipped);
  process.exit(0);
}
console.log(`TigerBeetle from ${tb.source} at ${tb.address}; ${BATCHES} batches of ${TIGERBEETLE_BATCH_MAX} after ${WARMUP} warm-up batches`);

const logger = pino({ level: 'warn' });
const registry = new Registry();
const sink = new TigerBeetleSignalSink(
  { clusterId: tb.clusterId, addresses: tb.addresses, ...TB_SETTING_DEFAULTS, maxBatch: TIGERBEETLE_BATCH_MAX },
  { logger, registry },
);
async function requestCount(): Promise<number> {
  const metric = await registry.getSingleMetric('spanledger_tigerbeetle_requests_total')?.get();
  return metric?.values.find((v) => v.labels.op === 'create_transfers')?.value ?? 0;
}
const client = createClient({ cluster_id: tb.clusterId, replica_addresses: tb.addresses });
try {
  await sink.start();

  // (1) Raw client. The sink creates the tenant's accounts; transfers are built before timing.
  const rawTenant = randomUUID();
  await sink.write(signalFlush(new Map([[rawTenant, makeSignals(rawTenant, 1)]])));
  const accounts = { debit: accountIdFor(rawTenant, 'tenant'), credit: accountIdFor(rawTenant, 'signals') };
  const batches: Transfer[][] = [];
  for (let b = 0; b < WARMUP + BATCHES; b += 1) {
    batches.push(
      makeSignals(rawTenant, TIGERBEETLE_BATCH_MAX).map((s) => signalToTransfer(s, rawTenant, 1, accounts) as Transfer),
    );
  }
  const rawLatencies: number[] = [];
  let rawStart = 0;
  for (let b = 0; b < batches.length; b += 1) {
    if (b === WARMUP) rawStart = performance.now();
    const t0 = performance.now();
    const results = await client.createTransfers(batches[b]!);
    if (b >= WARMUP) rawLatencies.push(performance.now() - t0);
    const failed = results.filter((r) => r.status !== CreateTransferStatus.created).length;
    if (failed > 0) throw new Error(`${failed} transfers not created in batch ${b}`);
  }
  report('raw client createTransfers', BATCHES * TIGERBEETLE_BATCH_MAX, (performance.now() - rawStart) / 1000, rawLatencies);

  // (2) Through the sink: signals → transfers → createTransfers → results.
  const sinkTenant = randomUUID();
  const signalBatches = Array.from({ length: WARMUP + BATCHES }, () =>
    signalFlush(new Map([[sinkTenant, makeSignals(sinkTenant, TIGERBEETLE_BATCH_MAX)]])),
  );
  const sinkLatencies: number[] = [];
  let sinkStart = 0;
  for (let b = 0; b < signalBatches.length; b += 1) {
    if (b === WARMUP) sinkStart = performance.now();
    const t0 = performance.now();
    const result = await sink.write(signalBatches[b]!);
    if (b >= WARMUP) sinkLatencies.push(performance.now() - t0);
    if (result.rejected.size > 0) throw new Error(`${result.rejected.size} signals rejected in batch ${b}`);
  }
  report('sink.write (signals)       ', BATCHES * TIGERBEETLE_BATCH_MAX, (performance.now() - sinkStart) / 1000, sinkLatencies);

  // (3) Flush-shaped: one flush of TENANTS tenants × PER_TENANT signals (the first round, a
  // warm-up, also creates the tenants' accounts).
  const tenants = Array.from({ length: TENANTS }, () => randomUUID());
  const rounds = Array.from({ length: WARMUP + BATCHES }, () =>
    signalFlush(new Map(tenants.map((tenantId) => [tenantId, makeSignals(tenantId, PER_TENANT)]))),
  );
  const flushLatencies: number[] = [];
  let flushStart = 0;
  let requestsBefore = 0;
  for (let b = 0; b < rounds.length; b += 1) {
    if (b === WARMUP) {
      flushStart = performance.now();
      requestsBefore = await requestCount();
    }
    const t0 = performance.now();
    const result = await sink.write(rounds[b]!);
    if (b >= WARMUP) flushLatencies.push(performance.now() - t0);
    const rejected = result.rejected.size;
    if (rejected > 0) throw new Error(`${rejected} signals rejected in round ${b}`);
  }
  const flushSeconds = (performance.now() - flushStart) / 1000;
  const requests = (await requestCount()) - requestsBefore;
  report(`sink.write, one flush of ${TENANTS} tenants × ${PER_TENANT}`, BATCHES * TENANTS * PER_TENANT, flushSeconds, flushLatencies);
  console.log(`  ${requests} createTransfers requests for ${BATCHES} rounds (${(requests / BATCHES).toFixed(1)} a round of ${TENANTS} tenants)`);
} finally {
  client.destroy();
  await sink.close();
  await tb.stop();
}
