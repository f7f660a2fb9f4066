// The sink's appender fast path, coalesced writes, memory and idempotency without a primary key
// are in duckdb-sink-writes.test.ts (two files run side by side).
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { envValues, resolveSettings } from '../../../src/config/load.js';
import { signalSettings } from '../../../src/config/settings.js';
import { ConfigError, FatalStoreError, InvariantError, RecordRejectedError, RetriableError } from '../../../src/errors.js';
import type { Signal } from '../../../src/model/signal.js';
import { SEVERITIES } from '../../../src/model/signal.js';
import { tenantAlias } from '../../../src/sinks/duckdb/sql.js';
import { duckDbSink, duckDbSinkFixture, records, signal, TENANT_A, TENANT_B, TENANT_C, writeTenant } from '../../support/duckdb-sink.js';
import { registryValue } from '../../support/metrics.js';

const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, '../../..');

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
  const fx = duckDbSinkFixture();

  it('writes signals for two tenants, counts them, and a replay inserts nothing', async () => {
    fx.makeSink();
    await fx.sink.start();
    const a = Array.from({ length: 2500 }, (_, i) => signal(TENANT_A, i));
    const b = Array.from({ length: 700 }, (_, i) => signal(TENANT_B, i * 3 + 1));

    expect((await writeTenant(fx.sink, TENANT_A, records(a))).rejected.size).toBe(0);
    expect((await writeTenant(fx.sink, TENANT_B, records(b))).rejected.size).toBe(0);
    expect(await fx.sink.countBySeverity(TENANT_A)).toEqual(expectedCounts(a));
    expect(await fx.sink.countBySeverity(TENANT_B)).toEqual(expectedCounts(b));
    expect(await fx.sink.listTenants()).toEqual([TENANT_A, TENANT_B].sort());
    expect(await registryValue(fx.registry, 'spanledger_duckdb_rows_written_total')).toBe(3200);

    // Replay (the worker retries after a crash before committing offsets): nothing new.
    expect((await writeTenant(fx.sink, TENANT_A, records(a))).rejected.size).toBe(0);
    expect((await writeTenant(fx.sink, TENANT_B, records(b.slice(100, 300), 100))).rejected.size).toBe(0);
    expect(await registryValue(fx.registry, 'spanledger_duckdb_rows_written_total')).toBe(3200);
    expect(await registryValue(fx.registry, 'spanledger_duckdb_rows_duplicate_total')).toBe(2700);
    expect(await fx.sink.countBySeverity(TENANT_A)).toEqual(expectedCounts(a));
    expect(await fx.sink.countBySeverity(TENANT_B)).toEqual(expectedCounts(b));

    // A replay mixed with new signals stores only the new ones.
    const more = Array.from({ length: 50 }, (_, i) => signal(TENANT_A, i));
    expect((await writeTenant(fx.sink, TENANT_A, records([...a.slice(0, 10), ...more]))).rejected.size).toBe(0);
    expect(await registryValue(fx.registry, 'spanledger_duckdb_rows_written_total')).toBe(3250);

    // Reads still work with the worker gone (read-only open of the files).
    await fx.sink.close();
    const reader = fx.makeSink();
    expect(await reader.countBySeverity(TENANT_A)).toEqual(expectedCounts([...a, ...more]));
    expect(await reader.countBySeverity(TENANT_C)).toEqual({ LOW: 0, MEDIUM: 0, HIGH: 0, CRITICAL: 0 });
  });

  it('keys signals per tenant: the same id in two tenants is two rows, not a conflict', async () => {
    fx.makeSink();
    await fx.sink.start();
    const id = randomUUID();
    const mine = signal(TENANT_A, 1, { id, severity: 'LOW' });
    const theirs = signal(TENANT_B, 2, { id, severity: 'CRITICAL', message: 'another tenant' });
    expect((await writeTenant(fx.sink, TENANT_A, records([mine]))).rejected.size).toBe(0);
    expect((await writeTenant(fx.sink, TENANT_B, records([theirs]))).rejected.size).toBe(0);
    expect(await fx.sink.countBySeverity(TENANT_A)).toEqual({ LOW: 1, MEDIUM: 0, HIGH: 0, CRITICAL: 0 });
    expect(await fx.sink.countBySeverity(TENANT_B)).toEqual({ LOW: 0, MEDIUM: 0, HIGH: 0, CRITICAL: 1 });
    expect(await registryValue(fx.registry, 'spanledger_duckdb_rows_written_total')).toBe(2);
  });

  it('stores the signal fields as written', async () => {
    fx.makeSink();
    const s = signal(TENANT_A, 1, {
      timestamp: '2026-11-24T11:00:00.123456+01:00',
      message: 'with a NUL \u0000 byte and ünïcödé',
      metadata: { deep: { list: [1, 'two', null] } },
    });
    await writeTenant(fx.sink, TENANT_A, [{ value: s, offset: 9007199254740993n, index: 0 }], 5);
    await fx.sink.close();
    const { DuckDBInstance } = await import('@duckdb/node-api');
    const instance = await DuckDBInstance.create(path.join(fx.dir, `${TENANT_A}.duckdb`), { access_mode: 'READ_ONLY' });
    const conn = await instance.connect();
    const rows = (await conn.runAndReadAll(`SELECT id::VARCHAR, tenant_id::VARCHAR, message, metadata::VARCHAR, epoch_us(ts)::VARCHAR, kafka_partition, kafka_offset::VARCHAR, ingested_at IS NOT NULL FROM signals`)).getRowsJS();
    conn.disconnectSync();
    instance.closeSync();
    expect(rows).toEqual([[s.id, TENANT_A, s.message, JSON.stringify(s.metadata), String(Date.UTC(2026, 10, 24, 10) * 1000 + 123456), 5, '9007199254740993', true]]);
  });

  it('rejects exactly the one bad row in a batch of 1000 and stores the other 999', async () => {
    fx.makeSink({ maxRowsPerTransaction: 1000 });
    const batch = Array.from({ length: 1000 }, (_, i) => signal(TENANT_A, i));
    // Passes our validation (JSON.parse accepts a lone surrogate escape, zod takes any metadata)
    // but DuckDB's JSON type refuses it: "Malformed JSON ... no low surrogate in string".
    batch[637] = { ...batch[637]!, metadata: { note: 'broken \ud800 surrogate' } };

    const { rejected } = await writeTenant(fx.sink, TENANT_A, records(batch));
    expect([...rejected.keys()]).toEqual([637]);
    const err = rejected.get(637)!;
    expect(err).toBeInstanceOf(RecordRejectedError);
    expect(err.errorClass).toBe('DuckDbRowRejected');
    expect(err.message).toMatch(/JSON/);
    const counts = await fx.sink.countBySeverity(TENANT_A);
    expect(Object.values(counts).reduce((x, y) => x + y, 0)).toBe(999);
    expect(await registryValue(fx.registry, 'spanledger_duckdb_rows_written_total')).toBe(999);
    // Bisecting 1000 rows down to one: about 2 * log2(1000) transactions, half of them rolled back.
    const rolledBack = await registryValue(fx.registry, 'spanledger_duckdb_transactions_total', { outcome: 'rolled_back' });
    expect(rolledBack).toBeGreaterThanOrEqual(10);
    expect(rolledBack).toBeLessThanOrEqual(11);

    // Retrying the batch (as the worker would for the 999) changes nothing and rejects 637 again.
    const again = await writeTenant(fx.sink, TENANT_A, records(batch));
    expect([...again.rejected.keys()]).toEqual([637]);
    expect(await registryValue(fx.registry, 'spanledger_duckdb_rows_written_total')).toBe(999);
  });

  it('isolates several bad rows across transactions', async () => {
    fx.makeSink({ maxRowsPerTransaction: 256 });
    const batch = Array.from({ length: 1000 }, (_, i) => signal(TENANT_A, i));
    const bad = [0, 255, 256, 511, 999];
    for (const i of bad) batch[i] = { ...batch[i]!, metadata: { note: '\udc00' } };
    const { rejected } = await writeTenant(fx.sink, TENANT_A, records(batch));
    expect([...rejected.keys()].sort((x, y) => x - y)).toEqual(bad);
    const counts = await fx.sink.countBySeverity(TENANT_A);
    expect(Object.values(counts).reduce((x, y) => x + y, 0)).toBe(995);
  });

  it('reports the same id with different content as DuckDbConflict', async () => {
    fx.makeSink();
    const original = signal(TENANT_A, 1);
    const other = signal(TENANT_A, 2);
    expect((await writeTenant(fx.sink, TENANT_A, records([original, other]))).rejected.size).toBe(0);

    const changed = { ...original, message: 'different message' };
    const fresh = signal(TENANT_A, 3);
    const { rejected } = await writeTenant(fx.sink, TENANT_A, records([other, changed, fresh], 10));
    expect([...rejected.keys()]).toEqual([1]);
    expect(rejected.get(1)!.errorClass).toBe('DuckDbConflict');

    // Same instant written with another offset and another Kafka position is not a conflict.
    const sameInstant = { ...original, timestamp: original.timestamp.replace('Z', '+00:00') };
    expect((await writeTenant(fx.sink, TENANT_A, records([sameInstant], 99))).rejected.size).toBe(0);

    // Within one batch: the first occurrence wins, an identical repeat is a duplicate.
    const dup = signal(TENANT_A, 4);
    const inBatch = await writeTenant(fx.sink, TENANT_A, records([dup, { ...dup }, { ...dup, severity: 'CRITICAL' as const }], 200));
    expect([...inBatch.rejected.keys()]).toEqual([2]);
    expect(inBatch.rejected.get(2)!.errorClass).toBe('DuckDbConflict');

    const counts = await fx.sink.countBySeverity(TENANT_A);
    expect(Object.values(counts).reduce((x, y) => x + y, 0)).toBe(4);
  });

  it('rejects records of another tenant; a path-like (non-canonical) tenant id is an InvariantError, nothing written', async () => {
    fx.makeSink();
    const wrong = signal(TENANT_B, 1);
    const { rejected } = await writeTenant(fx.sink, TENANT_A, records([signal(TENANT_A, 0), wrong]));
    expect(rejected.get(1)?.errorClass).toBe('TenantMismatch');

    for (const bad of ['../x', '../../etc/passwd', `${TENANT_A}/../../x`, TENANT_A.toUpperCase(), '']) {
      // The decoders refuse such ids before any sink: one reaching the sink is a bug (fatal, loud), not a dead letter.
      const error = await writeTenant(fx.sink, bad, records([signal(TENANT_A, 0), signal(TENANT_A, 1)])).catch((err: unknown) => err);
      expect(error).toBeInstanceOf(InvariantError);
      expect((error as Error).message).toMatch(/canonical UUID/);
      // A flush with a good tenant beside the bad one writes nothing either.
      const both = fx.sink.write({ topic: 'signals', partition: 2, tenants: new Map([[TENANT_C, records([signal(TENANT_C, 0)])], [bad, records([signal(TENANT_A, 2)])]]) });
      await expect(both).rejects.toBeInstanceOf(InvariantError);
      await expect(fx.sink.countBySeverity(bad)).rejects.toThrow(/canonical UUID/);
      await expect(fx.sink.releaseTenant(bad)).rejects.toThrow(/canonical UUID/);
      expect(() => fx.sink.tenantFile(bad)).toThrow(InvariantError);
    }
    expect(fs.readdirSync(path.dirname(fx.dir)).filter((n) => n === 'x' || n.startsWith('x.'))).toEqual([]);
    expect(await fx.sink.listTenants()).toEqual([TENANT_A]);
  });

  it('writes a 10,000 row flush in ceil(rows / maxRowsPerTransaction) transactions', async () => {
    fx.makeSink({ maxRowsPerTransaction: 3000 });
    const batch = Array.from({ length: 10_000 }, (_, i) => signal(TENANT_A, i));
    expect((await writeTenant(fx.sink, TENANT_A, records(batch))).rejected.size).toBe(0);
    expect(await registryValue(fx.registry, 'spanledger_duckdb_transactions_total', { outcome: 'committed' })).toBe(Math.ceil(10_000 / 3000));
    expect(await registryValue(fx.registry, 'spanledger_duckdb_transactions_total', { outcome: 'rolled_back' })).toBe(0);
    expect(await registryValue(fx.registry, 'spanledger_duckdb_rows_written_total')).toBe(10_000);
    const exposition = await fx.registry.getSingleMetricAsString('spanledger_duckdb_transaction_duration_seconds');
    expect(exposition).toMatch(/^spanledger_duckdb_transaction_duration_seconds_count 4$/m);
  });

  it('a tenant whose DETACH failed (still attached, forgotten by the sink) is adopted on its next write, not refused forever', async () => {
    fx.makeSink();
    await fx.sink.start();
    const first = Array.from({ length: 5 }, (_, i) => signal(TENANT_A, i));
    expect((await writeTenant(fx.sink, TENANT_A, records(first))).rejected.size).toBe(0);
    // The next DETACH fails as it does under load (no connection in time) or out of DuckDB memory.
    const internals = (fx.sink as unknown as { tenants: { instance: { withConnection: (what: string, fn: unknown) => Promise<unknown> } } }).tenants.instance;
    const withConnection = internals.withConnection.bind(internals);
    internals.withConnection = (what, fn) => (what.startsWith('detaching') ? Promise.reject(new Error('no DuckDB connection within 60000 ms')) : withConnection(what, fn));
    await fx.sink.releaseTenant(TENANT_A); // logs the failure and lets the tenant go, DuckDB still has it attached
    internals.withConnection = withConnection;
    const more = Array.from({ length: 5 }, (_, i) => signal(TENANT_A, 100 + i));
    expect((await writeTenant(fx.sink, TENANT_A, records(more))).rejected.size).toBe(0);
    expect(await fx.sink.countBySeverity(TENANT_A)).toEqual(expectedCounts([...first, ...more]));
  }, 60_000);

  it('staged writes do not hold memory: the staging table is made afresh for every write', async () => {
    fx.makeSink({ connections: 1, checkpointAtMemoryFraction: 0 });
    await fx.sink.start();
    const rows = Array.from({ length: 2000 }, (_, i) => signal(TENANT_A, i));
    expect((await writeTenant(fx.sink, TENANT_A, records(rows))).rejected.size).toBe(0);
    // DuckDB's buffer-managed memory: the sum of duckdb_memory(), what memory_limit bounds.
    const memory = async () => Object.values((await fx.sink.stats()).memoryByTag).reduce((x, y) => x + y, 0);
    // Replays: every row is staged again and found stored, so the tenant's table does not grow.
    for (let i = 0; i < 5; i++) await writeTenant(fx.sink, TENANT_A, records(rows));
    const before = await memory();
    for (let i = 0; i < 30; i++) await writeTenant(fx.sink, TENANT_A, records(rows));
    // A TRUNCATEd temp table kept ~0.3 KiB per staged row: 60,000 rows here, ~18 MiB.
    expect((await memory()) - before).toBeLessThan(4 * 2 ** 20);
  }, 120_000);

  it('releaseTenant releases the file lock for another process', async () => {
    fx.makeSink();
    await writeTenant(fx.sink, TENANT_A, records([signal(TENANT_A, 0), signal(TENANT_A, 1), signal(TENANT_A, 2)]));
    const file = path.join(fx.dir, `${TENANT_A}.duckdb`);

    const whileOpen = await openFromChildProcess(file);
    expect(whileOpen.ok).toBe(false);
    expect(whileOpen.output).toMatch(/lock/i);

    await fx.sink.releaseTenant(TENANT_A);
    expect(await registryValue(fx.registry, 'spanledger_duckdb_open_tenants')).toBe(0);
    expect(await openFromChildProcess(file)).toEqual({ ok: true, output: '3' });

    // The sink reopens the database on the next write.
    expect((await writeTenant(fx.sink, TENANT_A, records([signal(TENANT_A, 3)], 3))).rejected.size).toBe(0);
    expect(Object.values(await fx.sink.countBySeverity(TENANT_A)).reduce((x, y) => x + y, 0)).toBe(4);
  }, 60_000);

  it('closes the least recently used tenant beyond maxOpenTenants', async () => {
    fx.makeSink({ maxOpenTenants: 2 });
    await writeTenant(fx.sink, TENANT_A, records([signal(TENANT_A, 0)]));
    await writeTenant(fx.sink, TENANT_B, records([signal(TENANT_B, 0)]));
    await writeTenant(fx.sink, TENANT_A, records([signal(TENANT_A, 1)], 1)); // B is now least recently used
    expect(await registryValue(fx.registry, 'spanledger_duckdb_open_tenants')).toBe(2);
    await writeTenant(fx.sink, TENANT_C, records([signal(TENANT_C, 0)]));
    expect(await registryValue(fx.registry, 'spanledger_duckdb_open_tenants')).toBe(2);

    expect((await openFromChildProcess(path.join(fx.dir, `${TENANT_B}.duckdb`))).ok).toBe(true);
    expect((await openFromChildProcess(path.join(fx.dir, `${TENANT_A}.duckdb`))).ok).toBe(false);

    // Evicted tenants reopen transparently.
    expect((await writeTenant(fx.sink, TENANT_B, records([signal(TENANT_B, 1)], 1))).rejected.size).toBe(0);
    expect(Object.values(await fx.sink.countBySeverity(TENANT_B)).reduce((x, y) => x + y, 0)).toBe(2);
    expect(await registryValue(fx.registry, 'spanledger_duckdb_open_tenants')).toBe(2);
  }, 60_000);

  it('closes tenants idle for idleTimeoutMs, and releasePartition closes the tenants it wrote', async () => {
    fx.makeSink({ idleTimeoutMs: 100 });
    await fx.sink.start();
    await writeTenant(fx.sink, TENANT_A, records([signal(TENANT_A, 0)]));
    expect(await registryValue(fx.registry, 'spanledger_duckdb_open_tenants')).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await registryValue(fx.registry, 'spanledger_duckdb_open_tenants')).toBe(0);

    await fx.sink.close();
    fx.makeSink({ idleTimeoutMs: 60_000 });
    await writeTenant(fx.sink, TENANT_A, records([signal(TENANT_A, 1)], 1)); // partition 2
    await writeTenant(fx.sink, TENANT_B, records([signal(TENANT_B, 0)]), 7);
    await fx.sink.releasePartition('signals', 2);
    expect(await registryValue(fx.registry, 'spanledger_duckdb_open_tenants')).toBe(1);
  });

  it('hands a database held for maxHoldMs over only when another process waits for it', async () => {
    fx.makeSink({ maxHoldMs: 200 });
    await fx.sink.start();
    const marker = path.join(fx.dir, `${TENANT_A}.duckdb.wait`);
    fs.writeFileSync(marker, 'stale'); // written before the database was opened: nobody waits now
    await writeTenant(fx.sink, TENANT_A, records([signal(TENANT_A, 1)]));
    await new Promise((r) => setTimeout(r, 500));
    expect(await registryValue(fx.registry, 'spanledger_duckdb_handovers_total')).toBe(0);
    expect(await registryValue(fx.registry, 'spanledger_duckdb_open_tenants')).toBe(1);

    fs.writeFileSync(marker, String(process.pid + 1)); // a waiter refreshes it
    await expect.poll(() => registryValue(fx.registry, 'spanledger_duckdb_open_tenants'), { timeout: 2000 }).toBe(0);
    expect(await registryValue(fx.registry, 'spanledger_duckdb_handovers_total')).toBe(1);
    // The lock is free for the waiter now.
    expect(await openFromChildProcess(fx.sink.tenantFile(TENANT_A))).toEqual({ ok: true, output: '1' });
    // The next write reopens after the cool-down; nothing else waits, so it keeps the database.
    fs.rmSync(marker);
    await writeTenant(fx.sink, TENANT_A, records([signal(TENANT_A, 2)]));
    expect(await fx.sink.countBySeverity(TENANT_A)).toMatchObject({ MEDIUM: 1, HIGH: 1 });
    expect(await registryValue(fx.registry, 'spanledger_duckdb_lock_waits_total')).toBe(0);
  });

  it('throws RetriableError for store failures, not per-record rejections', async () => {
    fx.makeSink();
    fs.mkdirSync(path.join(fx.dir, `${TENANT_A}.duckdb`)); // "IO Error: ... Is a directory"
    const error = await writeTenant(fx.sink, TENANT_A, records([signal(TENANT_A, 0)])).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(RetriableError);
    expect((error as Error).message).toMatch(/IO Error/);
  });

  it('throws FatalStoreError for a tenant file DuckDB can never read (not a DuckDB file), not a retry forever', async () => {
    fx.makeSink();
    fs.writeFileSync(path.join(fx.dir, `${TENANT_A}.duckdb`), Buffer.alloc(20_000, 7));
    const error = await writeTenant(fx.sink, TENANT_A, records([signal(TENANT_A, 0)])).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(FatalStoreError);
    expect(error).not.toBeInstanceOf(RetriableError);
    expect((error as Error).message).toMatch(/^duckdb: cannot open DuckDB database .*not a valid DuckDB database file/);
  });

  it('refuses a second sink of the same process on an open file until the first releases it', async () => {
    fx.makeSink();
    const first = fx.sink;
    await writeTenant(first, TENANT_A, records([signal(TENANT_A, 0)]));
    const second = duckDbSink(fx.dir);
    try {
      await expect(writeTenant(second, TENANT_A, records([signal(TENANT_A, 1)], 1))).rejects.toBeInstanceOf(RetriableError);
      await expect(second.countBySeverity(TENANT_A)).rejects.toBeInstanceOf(RetriableError);
      await first.releaseTenant(TENANT_A);
      expect((await writeTenant(second, TENANT_A, records([signal(TENANT_A, 1)], 1))).rejected.size).toBe(0);
    } finally {
      await second.close();
    }
  });

  it('attaches every tenant to the one instance (memory_limit, threads as configured) and detaches it on release', async () => {
    fx.makeSink({ memoryLimit: '64MB', threads: 2 });
    await fx.sink.start();
    expect(await fx.sink.stats()).toMatchObject({ attached: [], memoryLimit: '61.0 MiB', threads: 2 });
    for (const t of [TENANT_A, TENANT_B, TENANT_C]) await writeTenant(fx.sink, t, records([signal(t, 0), signal(t, 1)]));
    expect((await fx.sink.stats()).attached).toEqual([TENANT_A, TENANT_B, TENANT_C].map(tenantAlias).sort());
    expect(await registryValue(fx.registry, 'spanledger_duckdb_open_tenants')).toBe(3);
    // Each attached file is one lock of this process: another process cannot open it.
    expect((await openFromChildProcess(fx.sink.tenantFile(TENANT_B))).ok).toBe(false);

    await fx.sink.releaseTenant(TENANT_B);
    expect((await fx.sink.stats()).attached).toEqual([TENANT_A, TENANT_C].map(tenantAlias).sort());
    expect(await openFromChildProcess(fx.sink.tenantFile(TENANT_B))).toEqual({ ok: true, output: '2' });
    // Nothing is written outside dir: the database files, and DuckDB's spill folder if it spilled.
    expect(fs.readdirSync(fx.dir).filter((f) => !f.startsWith('.tmp')).sort()).toEqual(
      [TENANT_A, TENANT_B, TENANT_C].flatMap((t) => [`${t}.duckdb`, ...(t === TENANT_B ? [] : [`${t}.duckdb.wal`])]).sort(),
    );
  }, 60_000);

  it('evicts only idle tenants: a tenant with a write in flight stays attached beyond maxOpenTenants', async () => {
    fx.makeSink({ maxOpenTenants: 1, maxRowsPerTransaction: 50 });
    const big = Array.from({ length: 2000 }, (_, i) => signal(TENANT_A, i));
    const writingA = writeTenant(fx.sink, TENANT_A, records(big));
    // B attaches while A writes: A is busy, so both stay attached for now.
    await writeTenant(fx.sink, TENANT_B, records([signal(TENANT_B, 0)]));
    expect((await writingA).rejected.size).toBe(0);
    // The next attach evicts the least recently used idle tenant (A was used before B).
    await writeTenant(fx.sink, TENANT_C, records([signal(TENANT_C, 0)]));
    expect((await fx.sink.stats()).attached).not.toContain(tenantAlias(TENANT_A));
    expect(Object.values(await fx.sink.countBySeverity(TENANT_A)).reduce((x, y) => x + y, 0)).toBe(2000);
  }, 60_000);

  it('waits while another process holds a tenant file (ATTACH fails on its lock), then writes', async () => {
    fx.makeSink({ acquireTimeoutMs: 20_000 });
    await writeTenant(fx.sink, TENANT_A, records([signal(TENANT_A, 0)]));
    await fx.sink.releaseTenant(TENANT_A);
    const file = fx.sink.tenantFile(TENANT_A);
    // Another process opens the file and holds it for 0.8 s.
    const holder = holdFromChildProcess(file, 800);
    await holder.held;
    const started = Date.now();
    expect((await writeTenant(fx.sink, TENANT_A, records([signal(TENANT_A, 1)], 1))).rejected.size).toBe(0);
    await holder.done;
    expect(Date.now() - started).toBeGreaterThan(300);
    expect(await registryValue(fx.registry, 'spanledger_duckdb_lock_waits_total')).toBe(1);
    expect(Object.values(await fx.sink.countBySeverity(TENANT_A)).reduce((x, y) => x + y, 0)).toBe(2);

    // With a short acquireTimeoutMs the write gives up as retriable, naming the lock.
    await fx.sink.releaseTenant(TENANT_A);
    const impatient = duckDbSink(fx.dir, { acquireTimeoutMs: 200 });
    const again = holdFromChildProcess(file, 1200);
    try {
      await again.held;
      const error = await writeTenant(impatient, TENANT_A, records([signal(TENANT_A, 2)], 2)).catch((err: unknown) => err);
      expect(error).toBeInstanceOf(RetriableError);
      expect((error as Error).message).toMatch(/Could not set lock/);
    } finally {
      await impatient.close();
      await again.done;
    }
  }, 60_000);

  it('refuses an invalid instance config (checked by the settings table, the one place)', () => {
    const resolve = (env: Record<string, string>) => () => resolveSettings(signalSettings, envValues(signalSettings, env), {});
    expect(resolve({ DUCKDB_MEMORY_LIMIT: 'lots' })).toThrow(/DUCKDB_MEMORY_LIMIT="lots": must be a size like 256MB/);
    expect(resolve({ DUCKDB_CHECKPOINT_WAL_SIZE: '256' })).toThrow(/DUCKDB_CHECKPOINT_WAL_SIZE="256": must be a size like 256MB/);
    expect(resolve({ DUCKDB_CONNECTIONS: '0' })).toThrow(/DUCKDB_CONNECTIONS="0": must be a positive whole number/);
    expect(resolve({ DUCKDB_THREADS: '1.5' })).toThrow(/DUCKDB_THREADS="1.5": must be a positive whole number/);
    expect(resolve({ DUCKDB_APPEND_MAX_ROWS: '-1' })).toThrow(/DUCKDB_APPEND_MAX_ROWS/);
    expect(resolve({ DUCKDB_CHECKPOINT_AT_MEMORY_FRACTION: '1' })).toThrow(/DUCKDB_CHECKPOINT_AT_MEMORY_FRACTION/);
    expect(resolve({ DUCKDB_MEMORY_LIMIT: 'lots' })).toThrow(ConfigError);
  });

  it('serializes concurrent writes to one tenant', async () => {
    fx.makeSink({ maxRowsPerTransaction: 100 });
    const batches = Array.from({ length: 5 }, (_, b) => Array.from({ length: 300 }, (_, i) => signal(TENANT_A, b * 300 + i)));
    const results = await Promise.all(batches.map((batch, b) => writeTenant(fx.sink, TENANT_A, records(batch, b * 300))));
    expect(results.every((r) => r.rejected.size === 0)).toBe(true);
    expect(Object.values(await fx.sink.countBySeverity(TENANT_A)).reduce((x, y) => x + y, 0)).toBe(1500);
  });
});
