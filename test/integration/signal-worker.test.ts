import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { promisify } from 'node:util';
import type { Kafka } from 'kafkajs';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { readDeadLetters } from '../../src/cli/dlq.js';
import type { TenantStats } from '../../src/cli/signals.js';
import { generateSignal } from '../../src/model/generate.js';
import type { Signal } from '../../src/model/signal.js';
import { CLI, ROOT, committedTotal, metricValue, kafkaClient, sleep, waitForCommitted, WorkerProcess, kafkaFacade, kafkaClientsUnderTest, useKafkaClient } from '../support/harness.js';
import { produceSignals as produceTo, signalSetup, type SignalSetup } from '../support/signal-topics.js';
import { startTigerBeetle } from '../support/tigerbeetle.js';

const run = promisify(execFile);
const brokers = inject('kafkaBrokers');
let kafka: Kafka;
const workers: WorkerProcess[] = [];
const dirs: string[] = [];

// Started once for the file; the suite prints one line when it is skipped (test/support/tigerbeetle-notice.ts).
const tb = await startTigerBeetle();
const tbSkipped = 'skipped' in tb;

type Setup = SignalSetup;

async function setup(partitions: number, env: Record<string, string> = {}): Promise<Setup> {
  const s = await signalSetup(kafka, brokers, partitions, {
    TB_ADDRESS: 'skipped' in tb ? '127.0.0.1:1' : tb.addresses.join(','),
    TB_CLUSTER_ID: 'skipped' in tb ? '0' : String(tb.clusterId),
    // Idle tenants close their database quickly, so `signals stats` can open the files.
    DUCKDB_IDLE_TIMEOUT_MS: '1000',
    ...env,
  });
  dirs.push(s.duckdbDir);
  return s;
}

function startWorker(s: Setup, env: Record<string, string> = {}): WorkerProcess {
  const w = new WorkerProcess('signals', { ...s.env, ...env });
  workers.push(w);
  return w;
}

function produceSignals(topic: string, signals: Signal[]): Promise<void> {
  return produceTo(kafka, topic, signals);
}

/** Signals of fresh tenants: a shared cluster (TB_ADDRESS) has no accounts of theirs yet. */
function makeSignals(count: number, tenants: number): Signal[] {
  const ids = Array.from({ length: tenants }, () => randomUUID());
  return Array.from({ length: count }, (_, i) => generateSignal(ids[i % tenants]!, i));
}

/** `spanledger signals stats --json`, as a user runs it. */
async function stats(s: Setup): Promise<TenantStats[]> {
  const { stdout } = await run(process.execPath, [CLI, 'signals', 'stats', '--json'], { cwd: ROOT, env: { ...process.env, ...s.env } }).catch((e: { stdout: string }) => e);
  return JSON.parse(stdout) as TenantStats[];
}

async function metricsOf(w: WorkerProcess): Promise<string> {
  const started = await w.waitForLog('worker started');
  return (await fetch(`http://127.0.0.1:${String(started.metricsPort)}/metrics`)).text();
}


async function stopAll(): Promise<void> {
  for (const w of workers.splice(0)) {
    if (w.child.exitCode === null && w.child.signalCode === null) {
      w.kill('SIGTERM');
      await w.exited;
    }
  }
}

beforeAll(() => {
  kafka = kafkaClient(brokers);
});
afterEach(async () => {
  for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.kill('SIGKILL');
  await Promise.all(workers.map((w) => w.exited));
  workers.splice(0);
});
afterAll(async () => {
  if (!('skipped' in tb)) await tb.stop();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe.each(kafkaClientsUnderTest())('signal worker without a reachable TigerBeetle on %s', (client) => {
  useKafkaClient(client);
  it('retries, never dead-letters, and commits nothing past the failure', async () => {
    const s = await setup(1, { TB_ADDRESS: '127.0.0.1:1', TB_REQUEST_TIMEOUT_MS: '1000', RETRY_MAX_DELAY_MS: '1000', SHUTDOWN_TIMEOUT_MS: '5000' });
    const w = startWorker(s);
    await produceSignals(s.topic, makeSignals(50, 2));
    await w.waitForLog('worker started');
    await w.waitForLog('store write failed; retrying', 30_000);
    await sleep(2000);
    const metrics = await metricsOf(w);
    expect(metricValue(metrics, 'spanledger_sink_retries_total', 'sink="tigerbeetle"')).toBeGreaterThan(0);
    expect(metricValue(metrics, 'spanledger_records_dead_lettered_total')).toBe(0);
    expect(await committedTotal(kafka, s.group, s.topic)).toBe(0n);
    // A graceful stop cannot finish the flush: it gives up within the timeout, commits nothing, exits 1.
    w.kill('SIGTERM');
    expect((await w.exited).code).toBe(1);
    expect(await committedTotal(kafka, s.group, s.topic)).toBe(0n);
    expect(await readDeadLetters(kafkaFacade(brokers), s.dlqTopic)).toEqual([]);
  });
});

describe.skipIf(tbSkipped).each(kafkaClientsUnderTest())('signal worker with TigerBeetle and DuckDB on %s', (client) => {
  useKafkaClient(client);
  it('stores each signal once in both; a replay of the same signals changes nothing', async () => {
    const s = await setup(3);
    const signals = makeSignals(3000, 3);
    await produceSignals(s.topic, signals);
    const w = startWorker(s);
    await waitForCommitted(kafka, s.group, s.topic);
    // The same signals again (same ids): both stores absorb them.
    await produceSignals(s.topic, signals);
    await waitForCommitted(kafka, s.group, s.topic);
    const metrics = await metricsOf(w);
    expect(metricValue(metrics, 'spanledger_records_written_total')).toBe(6000);
    await stopAll();
    const rows = await stats(s);
    expect(rows).toHaveLength(3);
    for (const r of rows) {
      expect(r.agree).toBe(true);
      expect(r.duckdb).toMatchObject({ total: 1000 });
      expect(r.tigerbeetle).toEqual({ tenantDebits: '1000', signalsCredits: '1000' });
    }
  });

  it('dead-letters a conflicting signal (same id, other content) with its reason and stores the rest', async () => {
    const s = await setup(1);
    const signals = makeSignals(200, 2);
    const original = signals[10]!;
    const conflicting: Signal = { ...original, severity: original.severity === 'LOW' ? 'HIGH' : 'LOW', message: 'changed' };
    await produceSignals(s.topic, [...signals, conflicting]);
    const w = startWorker(s);
    await waitForCommitted(kafka, s.group, s.topic);
    const letters = await readDeadLetters(kafkaFacade(brokers), s.dlqTopic);
    expect(letters).toHaveLength(1);
    expect(letters[0]!.source.offset).toBe('200');
    expect(letters[0]!.errorClass).toMatch(/Conflict|exists_with_different/);
    expect(JSON.parse(letters[0]!.value!)).toEqual(conflicting);
    await w.waitForLog('worker started');
    await stopAll();
    const rows = await stats(s);
    expect(rows.reduce((n, r) => n + ('total' in r.duckdb ? r.duckdb.total : 0), 0)).toBe(200);
    expect(rows.every((r) => r.agree)).toBe(true);
  });

  it('after SIGKILL mid-stream and a restart: DuckDB count = TigerBeetle balance = distinct valid signals', async () => {
    const s = await setup(3, { BATCH_MAX_RECORDS: '500' });
    const signals = makeSignals(30000, 4);
    const producing = produceSignals(s.topic, signals);
    let w = startWorker(s);
    for (let round = 0; round < 2; round += 1) {
      const deadline = Date.now() + 90_000;
      while ((await committedTotal(kafka, s.group, s.topic)) < BigInt(4000 * (round + 1)) && Date.now() < deadline) await sleep(50);
      w.kill('SIGKILL');
      await w.exited;
      w = startWorker(s);
    }
    await producing;
    await waitForCommitted(kafka, s.group, s.topic, 180_000);
    await stopAll();
    const rows = await stats(s);
    expect(rows).toHaveLength(4);
    expect(rows.reduce((n, r) => n + ('total' in r.duckdb ? r.duckdb.total : 0), 0)).toBe(30000);
    for (const r of rows) expect(r).toMatchObject({ agree: true, duckdb: { total: 7500 }, tigerbeetle: { tenantDebits: '7500', signalsCredits: '7500' } });
  });

  it('a 10,000-signal flush for one tenant takes at most 2 createTransfers calls and ceil(10000 / row limit) DuckDB transactions', async () => {
    const rowLimit = 4000;
    const s = await setup(1, { BATCH_MAX_RECORDS: '10000', BATCH_MAX_AGE_MS: '600000', BATCH_FLUSH_WHEN_CAUGHT_UP: 'false', BATCH_MAX_BYTES: '67108864', DUCKDB_MAX_ROWS_PER_TXN: String(rowLimit) });
    const tenantId = randomUUID();
    const signals = Array.from({ length: 10000 }, (_, i) => ({ ...generateSignal(tenantId, i) }));
    await produceSignals(s.topic, signals);
    const w = startWorker(s);
    await waitForCommitted(kafka, s.group, s.topic);
    const metrics = await metricsOf(w);
    expect(metricValue(metrics, 'spanledger_batch_records_count')).toBe(1);
    expect(metricValue(metrics, 'spanledger_batch_records_sum')).toBe(10000);
    expect(metricValue(metrics, 'spanledger_tigerbeetle_requests_total', 'op="create_transfers"')).toBeLessThanOrEqual(2);
    expect(metricValue(metrics, 'spanledger_tigerbeetle_transfers_total')).toBe(10000);
    expect(metricValue(metrics, 'spanledger_duckdb_transactions_total')).toBe(Math.ceil(10000 / rowLimit));
    await stopAll();
    const rows = await stats(s);
    expect(rows).toEqual([expect.objectContaining({ tenantId, agree: true, tigerbeetle: { tenantDebits: '10000', signalsCredits: '10000' } })]);
  });
});
