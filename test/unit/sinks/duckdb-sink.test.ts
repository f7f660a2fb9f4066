import { execFile, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RecordRejectedError, RetriableError } from '../../../src/errors.js';
import type { Signal } from '../../../src/model/signal.js';
import { SEVERITIES } from '../../../src/model/signal.js';
import { classifyDuckDbError, DuckDbSignalSink, tenantAlias } from '../../../src/sinks/duckdb/duckdb-sink.js';
import type { DuckDbSinkConfig } from '../../../src/sinks/duckdb/duckdb-sink.js';
import type { SourcePosition } from '../../../src/sinks/types.js';
import { registryValue } from '../../support/metrics.js';

const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, '../../..');

const TENANT_A = '0b7d1b5e-3c1a-4f7e-9d7a-2f1e6b9c8a11';
const TENANT_B = '5f0c9a62-8d4e-4b1f-a3c7-e21d0f6b9a34';
const TENANT_C = 'c3a1e8f0-7b2d-4e6a-9f5c-1d8b0a2e4c67';

type Rec = { value: Signal; source: SourcePosition };

function signal(tenantId: string, i: number, overrides: Partial<Signal> = {}): Signal {
  return {
    id: randomUUID(),
    tenantId,
    ruleId: `rule-${i % 13}`,
    traceId: randomBytes(16).toString('hex'),
    timestamp: new Date(Date.UTC(2026, 10, 24, 10) + i * 1000).toISOString(),
    severity: SEVERITIES[i % SEVERITIES.length]!,
    message: `signal ${i}`,
    metadata: { i, tags: ['a', 'b'], nested: { ok: true } },
    ...overrides,
  };
}

function records(signals: Signal[], firstOffset = 0): Rec[] {
  return signals.map((value, i) => ({ value, source: { topic: 'signals', partition: 2, offset: String(firstOffset + i) } }));
}

function expectedCounts(signals: Signal[]): Record<string, number> {
  const counts: Record<string, number> = Object.fromEntries(SEVERITIES.map((s) => [s, 0]));
  for (const s of signals) counts[s.severity]! += 1;
  return counts;
}

/** Opens the file from another process, as the next owner of a partition would. */
async function openFromChildProcess(file: string): Promise<{ ok: boolean; output: string }> {
  const script = `
    import { DuckDBInstance } from '@duckdb/node-api';
    const instance = await DuckDBInstance.create(${JSON.stringify(file)});
    const conn = await instance.connect();
    const reader = await conn.runAndReadAll('SELECT count(*)::INTEGER FROM signals');
    console.log(reader.getRowsJS()[0][0]);
    conn.disconnectSync();
    instance.closeSync();`;
  try {
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: repoRoot });
    return { ok: true, output: stdout.trim() };
  } catch (err) {
    return { ok: false, output: String((err as { stderr?: string }).stderr ?? err) };
  }
}


/** Another process opens the file and holds its lock for `ms`; `held` resolves once it has it. */
function holdFromChildProcess(file: string, ms: number): { held: Promise<void>; done: Promise<void> } {
  const script = `
    import { DuckDBInstance } from '@duckdb/node-api';
    const instance = await DuckDBInstance.create(${JSON.stringify(file)});
    console.log('holding');
    await new Promise((r) => setTimeout(r, ${ms}));
    instance.closeSync();`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const held = new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => d.toString().includes('holding') && resolve());
    child.on('exit', () => reject(new Error(`holder exited before holding: ${stderr}`)));
  });
  const done = new Promise<void>((resolve, reject) => child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(stderr)))));
  return { held, done };
}

describe('DuckDbSignalSink', () => {
  let dir: string;
  let registry: Registry;
  let sink: DuckDbSignalSink;

  function makeSink(config: Partial<DuckDbSinkConfig> = {}): DuckDbSignalSink {
    registry = new Registry();
    sink = new DuckDbSignalSink({ dir, ...config }, { logger: pino({ level: 'silent' }), registry });
    return sink;
  }

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spanledger-duckdb-'));
  });

  afterEach(async () => {
    await sink?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('writes signals for two tenants, counts them, and a replay inserts nothing', async () => {
    makeSink();
    await sink.start();
    const a = Array.from({ length: 2500 }, (_, i) => signal(TENANT_A, i));
    const b = Array.from({ length: 700 }, (_, i) => signal(TENANT_B, i * 3 + 1));

    expect((await sink.write(TENANT_A, records(a))).rejected.size).toBe(0);
    expect((await sink.write(TENANT_B, records(b))).rejected.size).toBe(0);
    expect(await sink.countBySeverity(TENANT_A)).toEqual(expectedCounts(a));
    expect(await sink.countBySeverity(TENANT_B)).toEqual(expectedCounts(b));
    expect(await sink.listTenants()).toEqual([TENANT_A, TENANT_B].sort());
    expect(await registryValue(registry, 'spanledger_duckdb_rows_written_total')).toBe(3200);

    // Replay (the worker retries after a crash before committing offsets): nothing new.
    expect((await sink.write(TENANT_A, records(a))).rejected.size).toBe(0);
    expect((await sink.write(TENANT_B, records(b.slice(100, 300), 100))).rejected.size).toBe(0);
    expect(await registryValue(registry, 'spanledger_duckdb_rows_written_total')).toBe(3200);
    expect(await registryValue(registry, 'spanledger_duckdb_rows_duplicate_total')).toBe(2700);
    expect(await sink.countBySeverity(TENANT_A)).toEqual(expectedCounts(a));
    expect(await sink.countBySeverity(TENANT_B)).toEqual(expectedCounts(b));

    // A replay mixed with new signals stores only the new ones.
    const more = Array.from({ length: 50 }, (_, i) => signal(TENANT_A, i));
    expect((await sink.write(TENANT_A, records([...a.slice(0, 10), ...more]))).rejected.size).toBe(0);
    expect(await registryValue(registry, 'spanledger_duckdb_rows_written_total')).toBe(3250);

    // Reads still work with the worker gone (read-only open of the files).
    await sink.close();
    const reader = makeSink();
    expect(await reader.countBySeverity(TENANT_A)).toEqual(expectedCounts([...a, ...more]));
    expect(await reader.countBySeverity(TENANT_C)).toEqual({ LOW: 0, MEDIUM: 0, HIGH: 0, CRITICAL: 0 });
  });

  it('keys signals per tenant: the same id in two tenants is two rows, not a conflict', async () => {
    makeSink();
    await sink.start();
    const id = randomUUID();
    const mine = signal(TENANT_A, 1, { id, severity: 'LOW' });
    const theirs = signal(TENANT_B, 2, { id, severity: 'CRITICAL', message: 'another tenant' });
    expect((await sink.write(TENANT_A, records([mine]))).rejected.size).toBe(0);
    expect((await sink.write(TENANT_B, records([theirs]))).rejected.size).toBe(0);
    expect(await sink.countBySeverity(TENANT_A)).toEqual({ LOW: 1, MEDIUM: 0, HIGH: 0, CRITICAL: 0 });
    expect(await sink.countBySeverity(TENANT_B)).toEqual({ LOW: 0, MEDIUM: 0, HIGH: 0, CRITICAL: 1 });
    expect(await registryValue(registry, 'spanledger_duckdb_rows_written_total')).toBe(2);
  });

  it('stores the signal fields as written', async () => {
    makeSink();
    const s = signal(TENANT_A, 1, {
      timestamp: '2026-11-24T11:00:00.123456+01:00',
      message: 'with a NUL \u0000 byte and ünïcödé',
      metadata: { deep: { list: [1, 'two', null] } },
    });
    await sink.write(TENANT_A, [{ value: s, source: { topic: 'signals', partition: 5, offset: '9007199254740993' } }]);
    await sink.close();
    const { DuckDBInstance } = await import('@duckdb/node-api');
    const instance = await DuckDBInstance.create(path.join(dir, `${TENANT_A}.duckdb`), { access_mode: 'READ_ONLY' });
    const conn = await instance.connect();
    const rows = (await conn.runAndReadAll(`SELECT id::VARCHAR, tenant_id::VARCHAR, message, metadata::VARCHAR, epoch_us(ts)::VARCHAR, kafka_partition, kafka_offset::VARCHAR, ingested_at IS NOT NULL FROM signals`)).getRowsJS();
    conn.disconnectSync();
    instance.closeSync();
    expect(rows).toEqual([[s.id, TENANT_A, s.message, JSON.stringify(s.metadata), String(Date.UTC(2026, 10, 24, 10) * 1000 + 123456), 5, '9007199254740993', true]]);
  });

  it('rejects exactly the one bad row in a batch of 1000 and stores the other 999', async () => {
    makeSink({ maxRowsPerTransaction: 1000 });
    const batch = Array.from({ length: 1000 }, (_, i) => signal(TENANT_A, i));
    // Passes our validation (JSON.parse accepts a lone surrogate escape, zod takes any metadata)
    // but DuckDB's JSON type refuses it: "Malformed JSON ... no low surrogate in string".
    batch[637] = { ...batch[637]!, metadata: { note: 'broken \ud800 surrogate' } };

    const { rejected } = await sink.write(TENANT_A, records(batch));
    expect([...rejected.keys()]).toEqual([637]);
    const err = rejected.get(637)!;
    expect(err).toBeInstanceOf(RecordRejectedError);
    expect(err.errorClass).toBe('DuckDbRowRejected');
    expect(err.message).toMatch(/JSON/);
    const counts = await sink.countBySeverity(TENANT_A);
    expect(Object.values(counts).reduce((x, y) => x + y, 0)).toBe(999);
    expect(await registryValue(registry, 'spanledger_duckdb_rows_written_total')).toBe(999);
    // Bisecting 1000 rows down to one: about 2 * log2(1000) transactions, half of them rolled back.
    const rolledBack = await registryValue(registry, 'spanledger_duckdb_transactions_total', { outcome: 'rolled_back' });
    expect(rolledBack).toBeGreaterThanOrEqual(10);
    expect(rolledBack).toBeLessThanOrEqual(11);

    // Retrying the batch (as the worker would for the 999) changes nothing and rejects 637 again.
    const again = await sink.write(TENANT_A, records(batch));
    expect([...again.rejected.keys()]).toEqual([637]);
    expect(await registryValue(registry, 'spanledger_duckdb_rows_written_total')).toBe(999);
  });

  it('isolates several bad rows across transactions', async () => {
    makeSink({ maxRowsPerTransaction: 256 });
    const batch = Array.from({ length: 1000 }, (_, i) => signal(TENANT_A, i));
    const bad = [0, 255, 256, 511, 999];
    for (const i of bad) batch[i] = { ...batch[i]!, metadata: { note: '\udc00' } };
    const { rejected } = await sink.write(TENANT_A, records(batch));
    expect([...rejected.keys()].sort((x, y) => x - y)).toEqual(bad);
    const counts = await sink.countBySeverity(TENANT_A);
    expect(Object.values(counts).reduce((x, y) => x + y, 0)).toBe(995);
  });

  it('reports the same id with different content as DuckDbConflict', async () => {
    makeSink();
    const original = signal(TENANT_A, 1);
    const other = signal(TENANT_A, 2);
    expect((await sink.write(TENANT_A, records([original, other]))).rejected.size).toBe(0);

    const changed = { ...original, message: 'different message' };
    const fresh = signal(TENANT_A, 3);
    const { rejected } = await sink.write(TENANT_A, records([other, changed, fresh], 10));
    expect([...rejected.keys()]).toEqual([1]);
    expect(rejected.get(1)!.errorClass).toBe('DuckDbConflict');

    // Same instant written with another offset and another Kafka position is not a conflict.
    const sameInstant = { ...original, timestamp: original.timestamp.replace('Z', '+00:00') };
    expect((await sink.write(TENANT_A, records([sameInstant], 99))).rejected.size).toBe(0);

    // Within one batch: the first occurrence wins, an identical repeat is a duplicate.
    const dup = signal(TENANT_A, 4);
    const inBatch = await sink.write(TENANT_A, records([dup, { ...dup }, { ...dup, severity: 'CRITICAL' as const }], 200));
    expect([...inBatch.rejected.keys()]).toEqual([2]);
    expect(inBatch.rejected.get(2)!.errorClass).toBe('DuckDbConflict');

    const counts = await sink.countBySeverity(TENANT_A);
    expect(Object.values(counts).reduce((x, y) => x + y, 0)).toBe(4);
  });

  it('rejects records of another tenant and refuses path-like tenant ids', async () => {
    makeSink();
    const wrong = signal(TENANT_B, 1);
    const { rejected } = await sink.write(TENANT_A, records([signal(TENANT_A, 0), wrong]));
    expect(rejected.get(1)?.errorClass).toBe('TenantMismatch');

    for (const bad of ['../x', '../../etc/passwd', `${TENANT_A}/../../x`, TENANT_A.toUpperCase(), '']) {
      const result = await sink.write(bad, records([signal(TENANT_A, 0), signal(TENANT_A, 1)]));
      expect([...result.rejected.values()].map((e) => e.errorClass)).toEqual(['InvalidTenantId', 'InvalidTenantId']);
      await expect(sink.countBySeverity(bad)).rejects.toThrow(/canonical UUID/);
      await expect(sink.releaseTenant(bad)).rejects.toThrow(/canonical UUID/);
      expect(() => sink.tenantFile(bad)).toThrow(RecordRejectedError);
    }
    expect(fs.readdirSync(path.dirname(dir)).filter((n) => n === 'x' || n.startsWith('x.'))).toEqual([]);
    expect(await sink.listTenants()).toEqual([TENANT_A]);
  });

  it('writes a 10,000 row flush in ceil(rows / maxRowsPerTransaction) transactions', async () => {
    makeSink({ maxRowsPerTransaction: 3000 });
    const batch = Array.from({ length: 10_000 }, (_, i) => signal(TENANT_A, i));
    expect((await sink.write(TENANT_A, records(batch))).rejected.size).toBe(0);
    expect(await registryValue(registry, 'spanledger_duckdb_transactions_total', { outcome: 'committed' })).toBe(Math.ceil(10_000 / 3000));
    expect(await registryValue(registry, 'spanledger_duckdb_transactions_total', { outcome: 'rolled_back' })).toBe(0);
    expect(await registryValue(registry, 'spanledger_duckdb_rows_written_total')).toBe(10_000);
    const exposition = await registry.getSingleMetricAsString('spanledger_duckdb_transaction_duration_seconds');
    expect(exposition).toMatch(/^spanledger_duckdb_transaction_duration_seconds_count 4$/m);
  });

  it('a tenant whose DETACH failed (still attached, forgotten by the sink) is adopted on its next write, not refused forever', async () => {
    makeSink();
    await sink.start();
    const first = Array.from({ length: 5 }, (_, i) => signal(TENANT_A, i));
    expect((await sink.write(TENANT_A, records(first))).rejected.size).toBe(0);
    // The next DETACH fails as it does under load (no connection in time) or out of DuckDB memory.
    const internals = sink as unknown as { withConnection: (what: string, fn: unknown) => Promise<unknown> };
    const withConnection = internals.withConnection.bind(sink);
    internals.withConnection = (what, fn) => (what.startsWith('detaching') ? Promise.reject(new Error('no DuckDB connection within 60000 ms')) : withConnection(what, fn));
    await sink.releaseTenant(TENANT_A); // logs the failure and lets the tenant go, DuckDB still has it attached
    internals.withConnection = withConnection;
    const more = Array.from({ length: 5 }, (_, i) => signal(TENANT_A, 100 + i));
    expect((await sink.write(TENANT_A, records(more))).rejected.size).toBe(0);
    expect(await sink.countBySeverity(TENANT_A)).toEqual(expectedCounts([...first, ...more]));
  }, 60_000);

  it('staged writes do not hold memory: the staging table is made afresh for every write', async () => {
    makeSink({ connections: 1, checkpointAtMemoryFraction: 0 });
    await sink.start();
    const rows = Array.from({ length: 2000 }, (_, i) => signal(TENANT_A, i));
    expect((await sink.write(TENANT_A, records(rows))).rejected.size).toBe(0);
    const memory = (sink as unknown as { duckDbMemory: () => Promise<number> }).duckDbMemory.bind(sink);
    // Replays: every row is staged again and found stored, so the tenant's table does not grow.
    for (let i = 0; i < 5; i++) await sink.write(TENANT_A, records(rows));
    const before = await memory();
    for (let i = 0; i < 30; i++) await sink.write(TENANT_A, records(rows));
    // A TRUNCATEd temp table kept ~0.3 KiB per staged row: 60,000 rows here, ~18 MiB.
    expect((await memory()) - before).toBeLessThan(4 * 2 ** 20);
  }, 120_000);

  it('releaseTenant releases the file lock for another process', async () => {
    makeSink();
    await sink.write(TENANT_A, records([signal(TENANT_A, 0), signal(TENANT_A, 1), signal(TENANT_A, 2)]));
    const file = path.join(dir, `${TENANT_A}.duckdb`);

    const whileOpen = await openFromChildProcess(file);
    expect(whileOpen.ok).toBe(false);
    expect(whileOpen.output).toMatch(/lock/i);

    await sink.releaseTenant(TENANT_A);
    expect(await registryValue(registry, 'spanledger_duckdb_open_tenants')).toBe(0);
    expect(await openFromChildProcess(file)).toEqual({ ok: true, output: '3' });

    // The sink reopens the database on the next write.
    expect((await sink.write(TENANT_A, records([signal(TENANT_A, 3)], 3))).rejected.size).toBe(0);
    expect(Object.values(await sink.countBySeverity(TENANT_A)).reduce((x, y) => x + y, 0)).toBe(4);
  }, 60_000);

  it('closes the least recently used tenant beyond maxOpenTenants', async () => {
    makeSink({ maxOpenTenants: 2 });
    await sink.write(TENANT_A, records([signal(TENANT_A, 0)]));
    await sink.write(TENANT_B, records([signal(TENANT_B, 0)]));
    await sink.write(TENANT_A, records([signal(TENANT_A, 1)], 1)); // B is now least recently used
    expect(await registryValue(registry, 'spanledger_duckdb_open_tenants')).toBe(2);
    await sink.write(TENANT_C, records([signal(TENANT_C, 0)]));
    expect(await registryValue(registry, 'spanledger_duckdb_open_tenants')).toBe(2);

    expect((await openFromChildProcess(path.join(dir, `${TENANT_B}.duckdb`))).ok).toBe(true);
    expect((await openFromChildProcess(path.join(dir, `${TENANT_A}.duckdb`))).ok).toBe(false);

    // Evicted tenants reopen transparently.
    expect((await sink.write(TENANT_B, records([signal(TENANT_B, 1)], 1))).rejected.size).toBe(0);
    expect(Object.values(await sink.countBySeverity(TENANT_B)).reduce((x, y) => x + y, 0)).toBe(2);
    expect(await registryValue(registry, 'spanledger_duckdb_open_tenants')).toBe(2);
  }, 60_000);

  it('closes tenants idle for idleTimeoutMs, and releasePartition closes the tenants it wrote', async () => {
    makeSink({ idleTimeoutMs: 100 });
    await sink.start();
    await sink.write(TENANT_A, records([signal(TENANT_A, 0)]));
    expect(await registryValue(registry, 'spanledger_duckdb_open_tenants')).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await registryValue(registry, 'spanledger_duckdb_open_tenants')).toBe(0);

    await sink.close();
    makeSink({ idleTimeoutMs: 60_000 });
    await sink.write(TENANT_A, records([signal(TENANT_A, 1)], 1)); // partition 2
    await sink.write(TENANT_B, [{ value: signal(TENANT_B, 0), source: { topic: 'signals', partition: 7, offset: '0' } }]);
    await sink.releasePartition('signals', 2);
    expect(await registryValue(registry, 'spanledger_duckdb_open_tenants')).toBe(1);
  });

  it('hands a database held for maxHoldMs over only when another process waits for it', async () => {
    makeSink({ maxHoldMs: 200 });
    await sink.start();
    const marker = path.join(dir, `${TENANT_A}.duckdb.wait`);
    fs.writeFileSync(marker, 'stale'); // written before the database was opened: nobody waits now
    await sink.write(TENANT_A, records([signal(TENANT_A, 1)]));
    await new Promise((r) => setTimeout(r, 500));
    expect(await registryValue(registry, 'spanledger_duckdb_handovers_total')).toBe(0);
    expect(await registryValue(registry, 'spanledger_duckdb_open_tenants')).toBe(1);

    fs.writeFileSync(marker, String(process.pid + 1)); // a waiter refreshes it
    await expect.poll(() => registryValue(registry, 'spanledger_duckdb_open_tenants'), { timeout: 2000 }).toBe(0);
    expect(await registryValue(registry, 'spanledger_duckdb_handovers_total')).toBe(1);
    // The lock is free for the waiter now.
    expect(await openFromChildProcess(sink.tenantFile(TENANT_A))).toEqual({ ok: true, output: '1' });
    // The next write reopens after the cool-down; nothing else waits, so it keeps the database.
    fs.rmSync(marker);
    await sink.write(TENANT_A, records([signal(TENANT_A, 2)]));
    expect(await sink.countBySeverity(TENANT_A)).toMatchObject({ MEDIUM: 1, HIGH: 1 });
    expect(await registryValue(registry, 'spanledger_duckdb_lock_waits_total')).toBe(0);
  });

  it('throws RetriableError for store failures, not per-record rejections', async () => {
    makeSink();
    fs.mkdirSync(path.join(dir, `${TENANT_A}.duckdb`)); // "IO Error: ... Is a directory"
    const error = await sink.write(TENANT_A, records([signal(TENANT_A, 0)])).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(RetriableError);
    expect((error as Error).message).toMatch(/IO Error/);
  });

  it('refuses a second sink of the same process on an open file until the first releases it', async () => {
    makeSink();
    const first = sink;
    await first.write(TENANT_A, records([signal(TENANT_A, 0)]));
    const second = new DuckDbSignalSink({ dir }, { logger: pino({ level: 'silent' }), registry: new Registry() });
    try {
      await expect(second.write(TENANT_A, records([signal(TENANT_A, 1)], 1))).rejects.toBeInstanceOf(RetriableError);
      await expect(second.countBySeverity(TENANT_A)).rejects.toBeInstanceOf(RetriableError);
      await first.releaseTenant(TENANT_A);
      expect((await second.write(TENANT_A, records([signal(TENANT_A, 1)], 1))).rejected.size).toBe(0);
    } finally {
      await second.close();
    }
  });

  it('attaches every tenant to the one instance (memory_limit, threads as configured) and detaches it on release', async () => {
    makeSink({ memoryLimit: '64MB', threads: 2 });
    await sink.start();
    expect(await sink.stats()).toMatchObject({ attached: [], memoryLimit: '61.0 MiB', threads: 2 });
    for (const t of [TENANT_A, TENANT_B, TENANT_C]) await sink.write(t, records([signal(t, 0), signal(t, 1)]));
    expect((await sink.stats()).attached).toEqual([TENANT_A, TENANT_B, TENANT_C].map(tenantAlias).sort());
    expect(await registryValue(registry, 'spanledger_duckdb_open_tenants')).toBe(3);
    // Each attached file is one lock of this process: another process cannot open it.
    expect((await openFromChildProcess(sink.tenantFile(TENANT_B))).ok).toBe(false);

    await sink.releaseTenant(TENANT_B);
    expect((await sink.stats()).attached).toEqual([TENANT_A, TENANT_C].map(tenantAlias).sort());
    expect(await openFromChildProcess(sink.tenantFile(TENANT_B))).toEqual({ ok: true, output: '2' });
    // Nothing is written outside dir: the database files, and DuckDB's spill folder if it spilled.
    expect(fs.readdirSync(dir).filter((f) => !f.startsWith('.tmp')).sort()).toEqual(
      [TENANT_A, TENANT_B, TENANT_C].flatMap((t) => [`${t}.duckdb`, ...(t === TENANT_B ? [] : [`${t}.duckdb.wal`])]).sort(),
    );
  }, 60_000);

  it('evicts only idle tenants: a tenant with a write in flight stays attached beyond maxOpenTenants', async () => {
    makeSink({ maxOpenTenants: 1, maxRowsPerTransaction: 50 });
    const big = Array.from({ length: 2000 }, (_, i) => signal(TENANT_A, i));
    const writingA = sink.write(TENANT_A, records(big));
    // B attaches while A writes: A is busy, so both stay attached for now.
    await sink.write(TENANT_B, records([signal(TENANT_B, 0)]));
    expect((await writingA).rejected.size).toBe(0);
    // The next attach evicts the least recently used idle tenant (A was used before B).
    await sink.write(TENANT_C, records([signal(TENANT_C, 0)]));
    expect((await sink.stats()).attached).not.toContain(tenantAlias(TENANT_A));
    expect(Object.values(await sink.countBySeverity(TENANT_A)).reduce((x, y) => x + y, 0)).toBe(2000);
  }, 60_000);

  it('waits while another process holds a tenant file (ATTACH fails on its lock), then writes', async () => {
    makeSink({ acquireTimeoutMs: 20_000 });
    await sink.write(TENANT_A, records([signal(TENANT_A, 0)]));
    await sink.releaseTenant(TENANT_A);
    const file = sink.tenantFile(TENANT_A);
    // Another process opens the file and holds it for 0.8 s.
    const holder = holdFromChildProcess(file, 800);
    await holder.held;
    const started = Date.now();
    expect((await sink.write(TENANT_A, records([signal(TENANT_A, 1)], 1))).rejected.size).toBe(0);
    await holder.done;
    expect(Date.now() - started).toBeGreaterThan(300);
    expect(await registryValue(registry, 'spanledger_duckdb_lock_waits_total')).toBe(1);
    expect(Object.values(await sink.countBySeverity(TENANT_A)).reduce((x, y) => x + y, 0)).toBe(2);

    // With a short acquireTimeoutMs the write gives up as retriable, naming the lock.
    await sink.releaseTenant(TENANT_A);
    const impatient = new DuckDbSignalSink({ dir, acquireTimeoutMs: 200 }, { logger: pino({ level: 'silent' }), registry: new Registry() });
    const again = holdFromChildProcess(file, 1200);
    try {
      await again.held;
      const error = await impatient.write(TENANT_A, records([signal(TENANT_A, 2)], 2)).catch((err: unknown) => err);
      expect(error).toBeInstanceOf(RetriableError);
      expect((error as Error).message).toMatch(/Could not set lock/);
    } finally {
      await impatient.close();
      await again.done;
    }
  }, 60_000);

  it('refuses an invalid instance config', () => {
    expect(() => makeSink({ memoryLimit: 'lots' })).toThrow(/memoryLimit must look like 256MB/);
    expect(() => makeSink({ connections: 0 })).toThrow(/connections must be a positive integer/);
    expect(() => makeSink({ threads: 1.5 })).toThrow(/threads must be a positive integer/);
    expect(() => makeSink({ appendMaxRows: -1 })).toThrow(/appendMaxRows/);
    expect(() => makeSink({ checkpointAtMemoryFraction: 1 })).toThrow(/checkpointAtMemoryFraction/);
  });

  it('serializes concurrent writes to one tenant', async () => {
    makeSink({ maxRowsPerTransaction: 100 });
    const batches = Array.from({ length: 5 }, (_, b) => Array.from({ length: 300 }, (_, i) => signal(TENANT_A, b * 300 + i)));
    const results = await Promise.all(batches.map((batch, b) => sink.write(TENANT_A, records(batch, b * 300))));
    expect(results.every((r) => r.rejected.size === 0)).toBe(true);
    expect(Object.values(await sink.countBySeverity(TENANT_A)).reduce((x, y) => x + y, 0)).toBe(1500);
  });

  // The same sink set-up (makeSink, the temp dir) as above.
  describe('appender fast path and coalesced writes', () => {
    const value = (name: string, labels?: Record<string, string>) => registryValue(registry, name, labels);
    const stored = async (tenantId: string) => Object.values(await sink.countBySeverity(tenantId)).reduce((x, y) => x + y, 0);

    it('writes a small batch in one appender transaction; a replay rolls it back and takes the staged path, with exact counts', async () => {
      makeSink({ appendMaxRows: 8 });
      const batch = Array.from({ length: 5 }, (_, i) => signal(TENANT_A, i));
      expect((await sink.write(TENANT_A, records(batch))).rejected.size).toBe(0);
      expect(await value('spanledger_duckdb_transactions_total', { outcome: 'committed' })).toBe(1);
      expect(await value('spanledger_duckdb_rows_written_total')).toBe(5);

      // Two stored (one changed: a conflict), three new: the appender's transaction finds the
      // stored ids and rolls back, the staged path writes the new ones and checks the stored ones.
      const fresh = Array.from({ length: 3 }, (_, i) => signal(TENANT_A, 10 + i));
      const { rejected } = await sink.write(TENANT_A, records([batch[0]!, fresh[0]!, { ...batch[1]!, message: 'changed' }, fresh[1]!, fresh[2]!], 5));
      expect([...rejected.keys()]).toEqual([2]);
      expect(rejected.get(2)!.errorClass).toBe('DuckDbConflict');
      expect(await value('spanledger_duckdb_rows_written_total')).toBe(8);
      expect(await value('spanledger_duckdb_rows_duplicate_total')).toBe(1);
      // The appender's transaction (rolled back on the stored ids) and the staged one.
      expect(await value('spanledger_duckdb_transactions_total', { outcome: 'rolled_back' })).toBe(1);
      expect(await value('spanledger_duckdb_transactions_total', { outcome: 'committed' })).toBe(2);
      expect(await stored(TENANT_A)).toBe(8);
    });

    it('falls back to the staged path on a value DuckDB cannot cast and on a lone surrogate, rejecting only that row', async () => {
      makeSink({ appendMaxRows: 8 });
      const batch = Array.from({ length: 6 }, (_, i) => signal(TENANT_A, i));
      // Past the signal decoder's checks only in a test: an invalid calendar date, a lone surrogate.
      batch[2] = { ...batch[2]!, timestamp: '2026-02-30T00:00:00Z' };
      batch[4] = { ...batch[4]!, metadata: { note: 'broken \ud800' } };
      const { rejected } = await sink.write(TENANT_A, records(batch));
      expect([...rejected.keys()].sort()).toEqual([2, 4]);
      expect(rejected.get(2)!.errorClass).toBe('DuckDbRowRejected');
      expect(rejected.get(2)!.message).toMatch(/timestamp/);
      expect(rejected.get(4)!.message).toMatch(/JSON/);
      expect(await value('spanledger_duckdb_rows_written_total')).toBe(4);
      expect(await value('spanledger_duckdb_rows_duplicate_total')).toBe(0);
      expect(await stored(TENANT_A)).toBe(4);

      // Only the bad timestamp: the appender refuses the whole chunk (nothing flushed), the staged path bisects.
      const second = Array.from({ length: 3 }, (_, i) => signal(TENANT_A, 20 + i));
      second[1] = { ...second[1]!, timestamp: '2026-13-01T00:00:00Z' };
      const again = await sink.write(TENANT_A, records(second, 10));
      expect([...again.rejected.keys()]).toEqual([1]);
      expect(await value('spanledger_duckdb_rows_written_total')).toBe(6);
      expect(await value('spanledger_duckdb_rows_duplicate_total')).toBe(0);
      expect(await stored(TENANT_A)).toBe(6);
    });

    it('coalesces concurrent writes to one tenant into one transaction; each caller gets its own rejects', async () => {
      makeSink({ connections: 1 });
      await sink.start();
      // Occupy the only connection with another tenant's write so the next writes queue up together.
      const blocker = sink.write(TENANT_B, records(Array.from({ length: 2000 }, (_, i) => signal(TENANT_B, i))));
      const shared = signal(TENANT_A, 100);
      const dup = signal(TENANT_A, 101);
      const w1 = [signal(TENANT_A, 1), dup, signal(TENANT_A, 2)];
      // Same id as w1's second record: identical → duplicate; changed → conflict; a bad row; another tenant's record.
      const w2 = [{ ...dup }, signal(TENANT_A, 3), { ...dup, severity: 'CRITICAL' as const }];
      const w3 = [signal(TENANT_A, 4, { metadata: { bad: '\udc00' } }), signal(TENANT_B, 5), signal(TENANT_A, 6)];
      const results = await Promise.all([
        sink.write(TENANT_A, records(w1, 0)),
        sink.write(TENANT_A, records(w2, 10)),
        sink.write(TENANT_A, records(w3, 20)),
        blocker,
      ]);
      expect([...results[0]!.rejected.keys()]).toEqual([]);
      expect([...results[1]!.rejected.keys()]).toEqual([2]);
      expect(results[1]!.rejected.get(2)!.errorClass).toBe('DuckDbConflict');
      expect([...results[2]!.rejected.keys()].sort()).toEqual([0, 1]);
      expect(results[2]!.rejected.get(0)!.errorClass).toBe('DuckDbRowRejected');
      expect(results[2]!.rejected.get(1)!.errorClass).toBe('TenantMismatch');
      expect(results[3]!.rejected.size).toBe(0);
      expect(await value('spanledger_duckdb_coalesced_writes_total')).toBe(3);
      expect(await value('spanledger_duckdb_rows_written_total')).toBe(2000 + 5);
      expect(await value('spanledger_duckdb_rows_duplicate_total')).toBe(1);
      expect(await stored(TENANT_A)).toBe(5);

      // Without a bad row: three writes (each with its own new signal and one shared by all three)
      // are one transaction, plus TENANT_B's one; the shared one is written once, twice a duplicate.
      const c0 = await value('spanledger_duckdb_transactions_total', { outcome: 'committed' });
      const blocker2 = sink.write(TENANT_B, records(Array.from({ length: 2000 }, (_, i) => signal(TENANT_B, i)), 5000));
      const more = await Promise.all([0, 1, 2].map((k) => sink.write(TENANT_A, records([signal(TENANT_A, 30 + k), shared], 40 + k * 2))));
      await blocker2;
      expect(more.every((r) => r.rejected.size === 0)).toBe(true);
      expect(await value('spanledger_duckdb_transactions_total', { outcome: 'committed' }) - c0).toBe(2);
      expect(await stored(TENANT_A)).toBe(9);
      expect(await value('spanledger_duckdb_rows_duplicate_total')).toBe(3);
      expect(await value('spanledger_duckdb_coalesced_writes_total')).toBe(6);
    });

    it('checkpoints the least recently written tenants when DuckDB memory passes checkpointAtMemoryFraction', async () => {
      makeSink({ memoryLimit: '64MB', checkpointAtMemoryFraction: 0.1 });
      await sink.start();
      const tenants = Array.from({ length: 60 }, () => randomUUID());
      for (const [k, t] of tenants.entries()) {
        expect((await sink.write(t, records(Array.from({ length: 4 }, (_, i) => signal(t, k * 4 + i))))).rejected.size).toBe(0);
      }
      await sink.close(); // waits for the checkpoints started after the 50th write
      // The memory check that started them is the gauge's sample: above 10% of 64 MB.
      expect(await value('spanledger_duckdb_memory_bytes')).toBeGreaterThan(0.1 * 64e6);
      const checkpoints = await value('spanledger_duckdb_checkpoints_total');
      expect(checkpoints).toBeGreaterThan(0);
      expect(checkpoints).toBeLessThan(50);
      expect(await value('spanledger_duckdb_rows_written_total')).toBe(240);
      const reader = makeSink();
      sink = reader;
      for (const t of [tenants[0]!, tenants[59]!]) expect(Object.values(await reader.countBySeverity(t)).reduce((x, y) => x + y, 0)).toBe(4);
    });

    it('spills into a folder of its own process inside dir, removed when it closes', async () => {
      makeSink({ memoryLimit: '16MB' });
      await sink.start();
      const own = path.join(dir, '.tmp', `${os.hostname()}-${process.pid}`);
      const other = path.join(dir, '.tmp', 'another-worker-1');
      // The first spill finds no .tmp folder: DuckDB makes only the last folder of its temp_directory.
      const rows = Array.from({ length: 60_000 }, (_, i) => signal(TENANT_A, i));
      expect((await sink.write(TENANT_A, records(rows))).rejected.size).toBe(0);
      fs.mkdirSync(other, { recursive: true });
      expect(fs.readdirSync(path.join(dir, '.tmp')).sort()).toEqual([path.basename(own), 'another-worker-1'].sort());
      expect(fs.readdirSync(own).length).toBeGreaterThan(0);
      await sink.close();
      expect(fs.existsSync(own)).toBe(false);
      expect(fs.existsSync(other)).toBe(true); // another worker sharing DUCKDB_DIR keeps its own
    }, 60_000);

    it('keeps no primary-key index in memory, and still finds replays after the tenant was detached, old times among new', async () => {
      makeSink({ appendMaxRows: 64 });
      await sink.start();
      const day = 86_400_000;
      const old = Array.from({ length: 20_000 }, (_, i) => signal(TENANT_A, i));
      for (let k = 0; k < old.length; k += 5000) expect((await sink.write(TENANT_A, records(old.slice(k, k + 5000), k))).rejected.size).toBe(0);
      const memory = (await sink.stats()).memoryByTag;
      expect(memory['ART_INDEX'] ?? 0).toBe(0);
      await sink.releaseTenant(TENANT_A);

      // Small writes (the appender's path) and a large one (staged), each a replay of old signals
      // beside new ones ten days later: only the new ones are stored.
      const later = (i: number) => signal(TENANT_A, i, { timestamp: new Date(Date.UTC(2026, 10, 24, 10) + 10 * day + i * 1000).toISOString() });
      const fresh = Array.from({ length: 3000 }, (_, i) => later(i));
      expect((await sink.write(TENANT_A, records([old[7]!, fresh[0]!, old[19_999]!, fresh[1]!]))).rejected.size).toBe(0);
      expect((await sink.write(TENANT_A, records([fresh[2]!, fresh[3]!]))).rejected.size).toBe(0);
      expect((await sink.write(TENANT_A, records([...old.slice(100, 2100), ...fresh.slice(4)]))).rejected.size).toBe(0);
      expect((await sink.write(TENANT_A, records(fresh.slice(0, 10)))).rejected.size).toBe(0);
      expect(await value('spanledger_duckdb_rows_written_total')).toBe(23_000);
      expect(await value('spanledger_duckdb_rows_duplicate_total')).toBe(2 + 2000 + 10);
      expect(await stored(TENANT_A)).toBe(23_000);
      // A stored id with another time within the write's times is a conflict, as with the primary
      // key (farther away it is not looked for: docs/signals.md).
      const moved = { ...fresh[5]!, timestamp: new Date(Date.parse(fresh[5]!.timestamp) + 1).toISOString() };
      const { rejected } = await sink.write(TENANT_A, records([fresh[4]!, moved]));
      expect([...rejected.entries()].map(([i, e]) => [i, e.errorClass])).toEqual([[1, 'DuckDbConflict']]);
      expect(await stored(TENANT_A)).toBe(23_000);
    }, 60_000);

    it('looks for stored ids only when a write has signals no later than the latest stored one', async () => {
      makeSink({ appendMaxRows: 8 });
      await sink.start();
      const { DuckDBConnection } = await import('@duckdb/node-api');
      const isLookup = (sql: unknown) => typeof sql === 'string' && /HAVING count\(\*\) > 1|AND NOT EXISTS \(SELECT 1/.test(sql);
      // Every query goes through run (runAndReadAll too).
      const run = vi.spyOn(DuckDBConnection.prototype, 'run');
      const lookups = () => run.mock.calls.filter(([sql]) => isLookup(sql)).length;
      const at = (i: number) => signal(TENANT_A, i); // a new id at 10:00:00 + i s
      const first = [at(0), at(1), at(2)];
      try {
        // In time order, small (appender) and large (staged): nothing to look up.
        expect((await sink.write(TENANT_A, records(first))).rejected.size).toBe(0);
        expect((await sink.write(TENANT_A, records(Array.from({ length: 100 }, (_, i) => at(10 + i)), 3))).rejected.size).toBe(0);
        expect(lookups()).toBe(0);
        // Earlier than the latest stored signal: looked up (a new one is stored, a replay is not).
        expect((await sink.write(TENANT_A, records([at(5)]))).rejected.size).toBe(0);
        expect(lookups()).toBe(1);
        expect((await sink.write(TENANT_A, records([at(200), first[0]!]))).rejected.size).toBe(0);
        expect(lookups()).toBeGreaterThanOrEqual(2);
      } finally {
        run.mockRestore();
      }
      expect(await value('spanledger_duckdb_rows_written_total')).toBe(3 + 100 + 1 + 1);
      expect(await value('spanledger_duckdb_rows_duplicate_total')).toBe(1);
      // Attached again, the latest stored time comes from the table: a replay is still found.
      await sink.releaseTenant(TENANT_A);
      expect((await sink.write(TENANT_A, records([first[1]!]))).rejected.size).toBe(0);
      expect(await value('spanledger_duckdb_rows_duplicate_total')).toBe(2);
      expect(await stored(TENANT_A)).toBe(105);
    });

    it('checkpoints each tenant database by itself once its WAL passes checkpointWalSize', async () => {
      const largestWalAfter = async (checkpointWalSize: string) => {
        makeSink({ checkpointWalSize, checkpointAtMemoryFraction: 0 });
        await sink.start();
        const tenants = Array.from({ length: 10 }, () => randomUUID());
        for (let round = 0; round < 5; round++) {
          for (const t of tenants) {
            expect((await sink.write(t, records(Array.from({ length: 400 }, (_, i) => signal(t, round * 400 + i)), round * 400))).rejected.size).toBe(0);
          }
        }
        // While they are still attached: a DETACH checkpoints too.
        const wals = fs.readdirSync(dir).filter((f) => f.endsWith('.wal')).map((f) => fs.statSync(path.join(dir, f)).size);
        expect(await stored(tenants[0]!)).toBe(2000);
        await sink.close();
        fs.rmSync(dir, { recursive: true, force: true });
        fs.mkdirSync(dir);
        return Math.max(0, ...wals);
      };
      // 2,000 rows a tenant: ~1 MB of WAL each without a checkpoint.
      const never = await largestWalAfter('1GB');
      const often = await largestWalAfter('64KB');
      expect(never).toBeGreaterThan(256 * 1024);
      expect(often).toBeLessThan(never / 4);
    }, 60_000);

    it('rebuilds a signals table made with the old primary key without it, keeping its rows', async () => {
      const file = path.join(dir, `${TENANT_A}.duckdb`);
      const before = Array.from({ length: 3 }, (_, i) => signal(TENANT_A, i));
      const { DuckDBInstance } = await import('@duckdb/node-api');
      const legacy = await DuckDBInstance.create(file);
      const conn = await legacy.connect();
      await conn.run(`CREATE TABLE signals (id UUID PRIMARY KEY, tenant_id UUID NOT NULL, rule_id VARCHAR NOT NULL, trace_id VARCHAR NOT NULL,
        ts TIMESTAMPTZ NOT NULL, severity VARCHAR NOT NULL, message VARCHAR NOT NULL, metadata JSON NOT NULL, kafka_partition INTEGER NOT NULL,
        kafka_offset BIGINT NOT NULL, ingested_at TIMESTAMP NOT NULL)`);
      for (const [i, s] of before.entries()) {
        await conn.run(`INSERT INTO signals VALUES ('${s.id}', '${TENANT_A}', '${s.ruleId}', '${s.traceId}', '${s.timestamp}', '${s.severity}', '${s.message}', '${JSON.stringify(s.metadata)}', 2, ${i}, now()::TIMESTAMP)`);
      }
      conn.disconnectSync();
      legacy.closeSync();

      makeSink();
      const fresh = signal(TENANT_A, 9);
      expect((await sink.write(TENANT_A, records([before[1]!, fresh]))).rejected.size).toBe(0);
      expect(await value('spanledger_duckdb_rows_written_total')).toBe(1);
      expect(await value('spanledger_duckdb_rows_duplicate_total')).toBe(1);
      expect(await stored(TENANT_A)).toBe(4);
      await sink.close();
      const check = await DuckDBInstance.create(file);
      const c = await check.connect();
      const pk = (await c.runAndReadAll(`SELECT count(*)::INTEGER FROM duckdb_constraints() WHERE table_name = 'signals' AND constraint_type = 'PRIMARY KEY'`)).getRowsJS()[0]![0];
      const tables = (await c.runAndReadAll(`SELECT table_name FROM duckdb_tables() ORDER BY 1`)).getRowsJS().map((r) => r[0]);
      c.disconnectSync();
      check.closeSync();
      expect(pk).toBe(0);
      expect(tables).toEqual(['signals']);
    });

    it('replaces an instance DuckDB invalidated (a FATAL error, simulated) and writes on the new one', async () => {
      makeSink({ appendMaxRows: 8 });
      await sink.start();
      expect((await sink.write(TENANT_A, records([signal(TENANT_A, 0)]))).rejected.size).toBe(0);
      // What a rollback that ran out of memory does to DuckDB: from then on every query fails so.
      const { DuckDBConnection } = await import('@duckdb/node-api');
      const realRun = DuckDBConnection.prototype.run;
      const fatal = 'FATAL Error: Failed: database has been invalidated because of a previous fatal error. The database must be restarted prior to being used again.';
      let failing = 2;
      const spy = vi.spyOn(DuckDBConnection.prototype, 'run').mockImplementation(function (this: InstanceType<typeof DuckDBConnection>, sql: string, ...rest: unknown[]) {
        if (failing > 0 && sql.startsWith('BEGIN')) {
          failing--;
          return Promise.reject(new Error(fatal));
        }
        return (realRun as (...a: unknown[]) => ReturnType<typeof realRun>).call(this, sql, ...rest);
      } as typeof realRun);
      try {
        const batch = Array.from({ length: 4 }, (_, i) => signal(TENANT_A, 1 + i));
        await expect(sink.write(TENANT_A, records(batch, 1))).rejects.toBeInstanceOf(RetriableError);
        expect(await value('spanledger_duckdb_instances_invalidated_total')).toBe(1);
        // The worker retries the flush: a new instance attaches the tenant again.
        expect((await sink.write(TENANT_A, records(batch, 1))).rejected.size).toBe(0);
        expect(await stored(TENANT_A)).toBe(5);
        expect((await sink.stats()).attached).toEqual([tenantAlias(TENANT_A)]);
        expect(fs.readdirSync(path.join(dir, '.tmp'))).toEqual([`${os.hostname()}-${process.pid}-1`]);
      } finally {
        spy.mockRestore();
      }
    });

    it('fails every coalesced caller with the batch\'s retriable error', async () => {
      makeSink({ connections: 1 });
      await sink.start();
      await sink.close();
      const results = await Promise.allSettled([0, 1].map((k) => sink.write(TENANT_A, records([signal(TENANT_A, k)]))));
      expect(results.every((r) => r.status === 'rejected' && r.reason instanceof RetriableError)).toBe(true);
    });
  });
});

describe('classifyDuckDbError', () => {
  it.each([
    ['Conversion Error: Malformed JSON at byte 12 of input: no low surrogate in string.', 'row'],
    ['Conversion Error: timestamp field value out of range: "2026-02-30"', 'row'],
    ['Out of Range Error: Overflow in multiplication', 'row'],
    ['Constraint Error: NOT NULL constraint failed: signals.message', 'row'],
    ['IO Error: Could not set lock on file "/x.duckdb": Conflicting lock is held in node (PID 1)', 'retriable'],
    ['IO Error: Could not write file "/x.duckdb.wal": No space left on device', 'retriable'],
    ['Out of Memory Error: could not allocate block of size 256.0 KiB', 'retriable'],
    ['FATAL Error: Failed: database has been invalidated because of a previous fatal error.', 'retriable'],
    ['TransactionContext Error: Catalog write-write conflict on create with "signals"', 'retriable'],
    ['Constraint Error: Duplicate key "id: 1" violates primary key constraint.', 'retriable'],
    ['Invalid Input Error: Attempting to execute an unsuccessful or closed pending query result', 'retriable'],
    ['Binder Error: Referenced column "x" not found', 'retriable'],
    ['something unexpected', 'retriable'],
  ])('%s → %s', (message, kind) => {
    expect(classifyDuckDbError(new Error(message))).toBe(kind);
  });
});
