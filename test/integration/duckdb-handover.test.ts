import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { DuckDBInstance } from '@duckdb/node-api';
import { afterEach, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, '../..');
const child = path.join(import.meta.dirname, 'duckdb-handover.child.ts');
const viteNode = path.join(repoRoot, 'node_modules', '.bin', 'vite-node');

const TENANT = '0b7d1b5e-3c1a-4f7e-9d7a-2f1e6b9c8a11';
const MAX_HOLD_MS = 1_000;
const RUN_MS = 10_000;
/**
 * Longest a writer may go without completing a write: a hold (maxHoldMs), the sweep that notices
 * the waiter, the holder's write in flight and its close (a checkpoint), with room for a loaded
 * machine. Without handing over, the second writer would wait the whole run.
 */
const MAX_STALL_MS = 6_000;

interface ChildResult {
  writes: number[];
  summary: { writes: number; retries: number; own: number; shared: number; lockWaits: number; handovers: number };
}

async function writer(dir: string, partition: number, startAt: number): Promise<ChildResult> {
  const { stdout } = await run(viteNode, [child, dir, TENANT, String(partition), String(startAt), String(startAt + RUN_MS), String(MAX_HOLD_MS)], {
    cwd: repoRoot,
    timeout: 90_000,
  });
  const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  return {
    writes: lines.filter((l) => typeof l.at === 'number').map((l) => l.at as number),
    summary: lines.find((l) => l.done) as unknown as ChildResult['summary'],
  };
}

describe('two processes writing one tenant database', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('both make progress within a bounded time, and every row lands exactly once', async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spanledger-handover-'));
    // Both start writing at the same moment, after vite-node has loaded in both.
    const startAt = Date.now() + 5_000;
    const [a, b] = await Promise.all([writer(dir, 1, startAt), writer(dir, 2, startAt)]);

    for (const w of [a, b]) {
      expect(w.summary.writes).toBe(w.writes.length);
      expect(w.writes.length).toBeGreaterThanOrEqual(2);
      const stalls = [w.writes[0]! - startAt, ...w.writes.slice(1).map((at, i) => at - w.writes[i]!)];
      expect(Math.max(...stalls)).toBeLessThan(MAX_STALL_MS);
    }
    // The wait is visible on both sides.
    expect(a.summary.lockWaits + b.summary.lockWaits).toBeGreaterThan(0);
    expect(a.summary.handovers + b.summary.handovers).toBeGreaterThan(0);

    const instance = await DuckDBInstance.create(path.join(dir, `${TENANT}.duckdb`), { access_mode: 'READ_ONLY' });
    const conn = await instance.connect();
    try {
      const [total, distinct] = (await conn.runAndReadAll('SELECT count(*)::INTEGER, count(DISTINCT id)::INTEGER FROM signals')).getRowsJS()[0] as number[];
      const sharedDistinct = Math.max(a.summary.shared, b.summary.shared);
      expect(total).toBe(a.summary.own + b.summary.own + sharedDistinct);
      expect(distinct).toBe(total);
      const ownRows = (await conn.runAndReadAll(
        `SELECT kafka_partition, count(*)::INTEGER FROM signals WHERE NOT starts_with(id::VARCHAR, '00000000') GROUP BY ALL ORDER BY 1`,
      )).getRowsJS();
      expect(ownRows).toEqual([[1, a.summary.own], [2, b.summary.own]]);
    } finally {
      conn.disconnectSync();
      instance.closeSync();
    }
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.wait'))).toEqual([]);
  }, 120_000);
});
