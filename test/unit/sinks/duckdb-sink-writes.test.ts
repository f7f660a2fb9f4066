// DuckDbSignalSink, continued from duckdb-sink.test.ts (the same set-up): the appender fast path,
// coalesced writes, DuckDB memory, idempotency without a primary key, an invalidated instance.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { RetriableError } from '../../../src/errors.js';
import { tenantAlias } from '../../../src/sinks/duckdb/sql.js';
import { duckDbSinkFixture, records, signal, TENANT_A, TENANT_B, writeTenant } from '../../support/duckdb-sink.js';
import { registryValue } from '../../support/metrics.js';

describe('DuckDbSignalSink', () => {
  const fx = duckDbSinkFixture();

  describe('appender fast path and coalesced writes', () => {
    const value = (name: string, labels?: Record<string, string>) => registryValue(fx.registry, name, labels);
    const stored = async (tenantId: string) => Object.values(await fx.sink.countBySeverity(tenantId)).reduce((x, y) => x + y, 0);

    it('writes a small batch in one appender transaction; a replay rolls it back and takes the staged path, with exact counts', async () => {
      fx.makeSink({ appendMaxRows: 8 });
      const batch = Array.from({ length: 5 }, (_, i) => signal(TENANT_A, i));
      expect((await writeTenant(fx.sink, TENANT_A, records(batch))).rejected.size).toBe(0);
      expect(await value('spanledger_duckdb_transactions_total', { outcome: 'committed' })).toBe(1);
      expect(await value('spanledger_duckdb_rows_written_total')).toBe(5);

      // Two stored (one changed: a conflict), three new: the appender's transaction finds the
      // stored ids and rolls back, the staged path writes the new ones and checks the stored ones.
      const fresh = Array.from({ length: 3 }, (_, i) => signal(TENANT_A, 10 + i));
      const { rejected } = await writeTenant(fx.sink, TENANT_A, records([batch[0]!, fresh[0]!, { ...batch[1]!, message: 'changed' }, fresh[1]!, fresh[2]!], 5));
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
      fx.makeSink({ appendMaxRows: 8 });
      const batch = Array.from({ length: 6 }, (_, i) => signal(TENANT_A, i));
      // Past the signal decoder's checks only in a test: an invalid calendar date, a lone surrogate.
      batch[2] = { ...batch[2]!, timestamp: '2026-02-30T00:00:00Z' };
      batch[4] = { ...batch[4]!, metadata: { note: 'broken \ud800' } };
      const { rejected } = await writeTenant(fx.sink, TENANT_A, records(batch));
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
      const again = await writeTenant(fx.sink, TENANT_A, records(second, 10));
      expect([...again.rejected.keys()]).toEqual([1]);
      expect(await value('spanledger_duckdb_rows_written_total')).toBe(6);
      expect(await value('spanledger_duckdb_rows_duplicate_total')).toBe(0);
      expect(await stored(TENANT_A)).toBe(6);
    });

    it('coalesces concurrent writes to one tenant into one transaction; each caller gets its own rejects', async () => {
      fx.makeSink({ connections: 1 });
      await fx.sink.start();
      // Occupy the only connection with another tenant's write so the next writes queue up together.
      const blocker = writeTenant(fx.sink, TENANT_B, records(Array.from({ length: 2000 }, (_, i) => signal(TENANT_B, i))));
      const shared = signal(TENANT_A, 100);
      const dup = signal(TENANT_A, 101);
      const w1 = [signal(TENANT_A, 1), dup, signal(TENANT_A, 2)];
      // Same id as w1's second record: identical → duplicate; changed → conflict; a bad row; another tenant's record.
      const w2 = [{ ...dup }, signal(TENANT_A, 3), { ...dup, severity: 'CRITICAL' as const }];
      const w3 = [signal(TENANT_A, 4, { metadata: { bad: '\udc00' } }), signal(TENANT_B, 5), signal(TENANT_A, 6)];
      const results = await Promise.all([
        writeTenant(fx.sink, TENANT_A, records(w1, 0)),
        writeTenant(fx.sink, TENANT_A, records(w2, 10)),
        writeTenant(fx.sink, TENANT_A, records(w3, 20)),
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
      const blocker2 = writeTenant(fx.sink, TENANT_B, records(Array.from({ length: 2000 }, (_, i) => signal(TENANT_B, i)), 5000));
      const more = await Promise.all([0, 1, 2].map((k) => writeTenant(fx.sink, TENANT_A, records([signal(TENANT_A, 30 + k), shared], 40 + k * 2))));
      await blocker2;
      expect(more.every((r) => r.rejected.size === 0)).toBe(true);
      expect(await value('spanledger_duckdb_transactions_total', { outcome: 'committed' }) - c0).toBe(2);
      expect(await stored(TENANT_A)).toBe(9);
      expect(await value('spanledger_duckdb_rows_duplicate_total')).toBe(3);
      expect(await value('spanledger_duckdb_coalesced_writes_total')).toBe(6);
    });

    it('checkpoints the least recently written tenants when DuckDB memory passes checkpointAtMemoryFraction', async () => {
      fx.makeSink({ memoryLimit: '64MB', checkpointAtMemoryFraction: 0.1 });
      await fx.sink.start();
      const tenants = Array.from({ length: 60 }, () => randomUUID());
      for (const [k, t] of tenants.entries()) {
        expect((await writeTenant(fx.sink, t, records(Array.from({ length: 4 }, (_, i) => signal(t, k * 4 + i))))).rejected.size).toBe(0);
      }
      await fx.sink.close(); // waits for the checkpoints started after the 50th write
      // The memory check that started them is the gauge's sample: above 10% of 64 MB.
      expect(await value('spanledger_duckdb_memory_bytes')).toBeGreaterThan(0.1 * 64e6);
      const checkpoints = await value('spanledger_duckdb_checkpoints_total');
      expect(checkpoints).toBeGreaterThan(0);
      expect(checkpoints).toBeLessThan(50);
      expect(await value('spanledger_duckdb_rows_written_total')).toBe(240);
      const reader = fx.makeSink();
      fx.sink = reader;
      for (const t of [tenants[0]!, tenants[59]!]) expect(Object.values(await reader.countBySeverity(t)).reduce((x, y) => x + y, 0)).toBe(4);
    });

    it('spills into a folder of its own process inside dir, removed when it closes', async () => {
      fx.makeSink({ memoryLimit: '16MB' });
      await fx.sink.start();
      const own = path.join(fx.dir, '.tmp', `${os.hostname()}-${process.pid}`);
      const other = path.join(fx.dir, '.tmp', 'another-worker-1');
      // The first spill finds no .tmp folder: DuckDB makes only the last folder of its temp_directory.
      const rows = Array.from({ length: 60_000 }, (_, i) => signal(TENANT_A, i));
      expect((await writeTenant(fx.sink, TENANT_A, records(rows))).rejected.size).toBe(0);
      fs.mkdirSync(other, { recursive: true });
      expect(fs.readdirSync(path.join(fx.dir, '.tmp')).sort()).toEqual([path.basename(own), 'another-worker-1'].sort());
      expect(fs.readdirSync(own).length).toBeGreaterThan(0);
      await fx.sink.close();
      expect(fs.existsSync(own)).toBe(false);
      expect(fs.existsSync(other)).toBe(true); // another worker sharing DUCKDB_DIR keeps its own
    }, 60_000);

    it('keeps no primary-key index in memory, and still finds replays after the tenant was detached, old times among new', async () => {
      fx.makeSink({ appendMaxRows: 64 });
      await fx.sink.start();
      const day = 86_400_000;
      const old = Array.from({ length: 8000 }, (_, i) => signal(TENANT_A, i));
      for (let k = 0; k < old.length; k += 2000) expect((await writeTenant(fx.sink, TENANT_A, records(old.slice(k, k + 2000), k))).rejected.size).toBe(0);
      const memory = (await fx.sink.stats()).memoryByTag;
      expect(memory['ART_INDEX'] ?? 0).toBe(0);
      await fx.sink.releaseTenant(TENANT_A);

      // Small writes (the appender's path) and a large one (staged), each a replay of old signals
      // beside new ones ten days later: only the new ones are stored.
      const later = (i: number) => signal(TENANT_A, i, { timestamp: new Date(Date.UTC(2026, 10, 24, 10) + 10 * day + i * 1000).toISOString() });
      const fresh = Array.from({ length: 1000 }, (_, i) => later(i));
      expect((await writeTenant(fx.sink, TENANT_A, records([old[7]!, fresh[0]!, old[7999]!, fresh[1]!]))).rejected.size).toBe(0);
      expect((await writeTenant(fx.sink, TENANT_A, records([fresh[2]!, fresh[3]!]))).rejected.size).toBe(0);
      expect((await writeTenant(fx.sink, TENANT_A, records([...old.slice(100, 1100), ...fresh.slice(4)]))).rejected.size).toBe(0);
      expect((await writeTenant(fx.sink, TENANT_A, records(fresh.slice(0, 10)))).rejected.size).toBe(0);
      expect(await value('spanledger_duckdb_rows_written_total')).toBe(9000);
      expect(await value('spanledger_duckdb_rows_duplicate_total')).toBe(2 + 1000 + 10);
      expect(await stored(TENANT_A)).toBe(9000);
      // A stored id with another time within the write's times is a conflict, as with the primary
      // key (farther away it is not looked for: docs/signals.md).
      const moved = { ...fresh[5]!, timestamp: new Date(Date.parse(fresh[5]!.timestamp) + 1).toISOString() };
      const { rejected } = await writeTenant(fx.sink, TENANT_A, records([fresh[4]!, moved]));
      expect([...rejected.entries()].map(([i, e]) => [i, e.errorClass])).toEqual([[1, 'DuckDbConflict']]);
      expect(await stored(TENANT_A)).toBe(9000);
    }, 60_000);

    it('looks for stored ids only when a write has signals no later than the latest stored one', async () => {
      fx.makeSink({ appendMaxRows: 8 });
      await fx.sink.start();
      const { DuckDBConnection } = await import('@duckdb/node-api');
      const isLookup = (sql: unknown) => typeof sql === 'string' && /HAVING count\(\*\) > 1|AND NOT EXISTS \(SELECT 1/.test(sql);
      // Every query goes through run (runAndReadAll too).
      const run = vi.spyOn(DuckDBConnection.prototype, 'run');
      const lookups = () => run.mock.calls.filter(([sql]) => isLookup(sql)).length;
      const at = (i: number) => signal(TENANT_A, i); // a new id at 10:00:00 + i s
      const first = [at(0), at(1), at(2)];
      try {
        // In time order, small (appender) and large (staged): nothing to look up.
        expect((await writeTenant(fx.sink, TENANT_A, records(first))).rejected.size).toBe(0);
        expect((await writeTenant(fx.sink, TENANT_A, records(Array.from({ length: 100 }, (_, i) => at(10 + i)), 3))).rejected.size).toBe(0);
        expect(lookups()).toBe(0);
        // Earlier than the latest stored signal: looked up (a new one is stored, a replay is not).
        expect((await writeTenant(fx.sink, TENANT_A, records([at(5)]))).rejected.size).toBe(0);
        expect(lookups()).toBe(1);
        expect((await writeTenant(fx.sink, TENANT_A, records([at(200), first[0]!]))).rejected.size).toBe(0);
        expect(lookups()).toBeGreaterThanOrEqual(2);
      } finally {
        run.mockRestore();
      }
      expect(await value('spanledger_duckdb_rows_written_total')).toBe(3 + 100 + 1 + 1);
      expect(await value('spanledger_duckdb_rows_duplicate_total')).toBe(1);
      // Attached again, the latest stored time comes from the table: a replay is still found.
      await fx.sink.releaseTenant(TENANT_A);
      expect((await writeTenant(fx.sink, TENANT_A, records([first[1]!]))).rejected.size).toBe(0);
      expect(await value('spanledger_duckdb_rows_duplicate_total')).toBe(2);
      expect(await stored(TENANT_A)).toBe(105);
    });

    it('checkpoints each tenant database by itself once its WAL passes checkpointWalSize', async () => {
      const largestWalAfter = async (checkpointWalSize: string) => {
        fx.makeSink({ checkpointWalSize, checkpointAtMemoryFraction: 0 });
        await fx.sink.start();
        const tenants = Array.from({ length: 3 }, () => randomUUID());
        for (let round = 0; round < 5; round++) {
          for (const t of tenants) {
            expect((await writeTenant(fx.sink, t, records(Array.from({ length: 400 }, (_, i) => signal(t, round * 400 + i)), round * 400))).rejected.size).toBe(0);
          }
        }
        // While they are still attached: a DETACH checkpoints too.
        const wals = fs.readdirSync(fx.dir).filter((f) => f.endsWith('.wal')).map((f) => fs.statSync(path.join(fx.dir, f)).size);
        expect(await stored(tenants[0]!)).toBe(2000);
        await fx.sink.close();
        fs.rmSync(fx.dir, { recursive: true, force: true });
        fs.mkdirSync(fx.dir);
        return Math.max(0, ...wals);
      };
      // 2,000 rows a tenant: ~1 MB of WAL each without a checkpoint.
      const never = await largestWalAfter('1GB');
      const often = await largestWalAfter('64KB');
      expect(never).toBeGreaterThan(256 * 1024);
      expect(often).toBeLessThan(never / 4);
    }, 60_000);

    it('rebuilds a signals table made with the old primary key without it, keeping its rows', async () => {
      const file = path.join(fx.dir, `${TENANT_A}.duckdb`);
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

      fx.makeSink();
      const fresh = signal(TENANT_A, 9);
      expect((await writeTenant(fx.sink, TENANT_A, records([before[1]!, fresh]))).rejected.size).toBe(0);
      expect(await value('spanledger_duckdb_rows_written_total')).toBe(1);
      expect(await value('spanledger_duckdb_rows_duplicate_total')).toBe(1);
      expect(await stored(TENANT_A)).toBe(4);
      await fx.sink.close();
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
      fx.makeSink({ appendMaxRows: 8 });
      await fx.sink.start();
      expect((await writeTenant(fx.sink, TENANT_A, records([signal(TENANT_A, 0)]))).rejected.size).toBe(0);
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
        await expect(writeTenant(fx.sink, TENANT_A, records(batch, 1))).rejects.toBeInstanceOf(RetriableError);
        expect(await value('spanledger_duckdb_instances_invalidated_total')).toBe(1);
        // The worker retries the flush: a new instance attaches the tenant again.
        expect((await writeTenant(fx.sink, TENANT_A, records(batch, 1))).rejected.size).toBe(0);
        expect(await stored(TENANT_A)).toBe(5);
        expect((await fx.sink.stats()).attached).toEqual([tenantAlias(TENANT_A)]);
        expect(fs.readdirSync(path.join(fx.dir, '.tmp'))).toEqual([`${os.hostname()}-${process.pid}-1`]);
      } finally {
        spy.mockRestore();
      }
    });

    it('fails every coalesced caller with the batch\'s retriable error', async () => {
      fx.makeSink({ connections: 1 });
      await fx.sink.start();
      await fx.sink.close();
      const results = await Promise.allSettled([0, 1].map((k) => writeTenant(fx.sink, TENANT_A, records([signal(TENANT_A, k)]))));
      expect(results.every((r) => r.status === 'rejected' && r.reason instanceof RetriableError)).toBe(true);
    });
  });
});
