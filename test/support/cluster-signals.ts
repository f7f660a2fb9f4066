/**
 * The signals group's part of the 3-broker cluster tests (test/integration/cluster.test.ts): a
 * TigerBeetle started once for the file, a paced signal producer, and the check that every signal
 * is stored once in TigerBeetle (one transfer each) and in DuckDB (one row each).
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { DuckDBInstance } from '@duckdb/node-api';
import type { Kafka, Message, Producer } from 'kafkajs';
import { createClient } from 'tigerbeetle-node';
import { expect } from 'vitest';
import type { TenantStats } from '../../src/cli/signals.js';
import { generateSignal } from '../../src/model/generate.js';
import type { Signal } from '../../src/model/signal.js';
import { transferIdFor } from '../../src/sinks/tigerbeetle/derivation.js';
import { CLI, ROOT, sleep } from './harness.js';
import { startTigerBeetle, type TigerBeetleInstance } from './tigerbeetle.js';

const run = promisify(execFile);

let started: Promise<TigerBeetleInstance> | undefined;

/** The file's TigerBeetle, started on first use (so the span and rule scenarios never wait for it). */
export async function tigerBeetle(): Promise<TigerBeetleInstance> {
  started ??= startTigerBeetle().then((tb) => {
    if ('skipped' in tb) throw new Error(tb.skipped);
    return tb;
  });
  return started;
}

export async function stopTigerBeetle(): Promise<void> {
  if (started) await (await started.catch(() => null))?.stop();
}

/** The settings that point signal workers (and `spanledger signals stats`) at it. */
export function tigerBeetleEnv(tb: TigerBeetleInstance): Record<string, string> {
  return { TB_ADDRESS: tb.addresses.join(','), TB_CLUSTER_ID: String(tb.clusterId) };
}

/**
 * `total` signals of `tenants` fresh tenants (a shared TigerBeetle has no accounts of theirs),
 * `perTick` every 200 ms with acks=all, tenant i to partition i % partitions, one send per
 * partition (see sendToOnePartition in cluster.test.ts: kafkajs#1303). With 8 tenants on 6
 * partitions, partitions 0 and 1 carry two tenants each: the busiest.
 */
export class SignalLoad {
  readonly tenantIds: string[];
  /** Signals acknowledged, and per partition. */
  readonly acknowledged: Signal[] = [];
  readonly acked = new Map<number, number>();
  readonly done: Promise<void>;

  constructor(kafka: Kafka, topic: string, opts: { total: number; tenants: number; partitions: number; perTick: number }, send: (p: Producer, topic: string, m: Message[]) => Promise<void>) {
    const tenantIds = Array.from({ length: opts.tenants }, () => randomUUID());
    this.tenantIds = tenantIds;
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    this.done = (async () => {
      await producer.connect();
      try {
        for (let i = 0; i < opts.total; ) {
          const tick = Date.now();
          const byPartition = new Map<number, Signal[]>();
          for (const end = Math.min(opts.total, i + opts.perTick); i < end; i += 1) {
            const t = i % opts.tenants;
            const p = t % opts.partitions;
            byPartition.set(p, [...(byPartition.get(p) ?? []), generateSignal(tenantIds[t]!, i)]);
          }
          for (const [p, signals] of [...byPartition].sort((a, b) => a[0] - b[0])) {
            await send(producer, topic, signals.map((s) => ({ key: s.tenantId, value: JSON.stringify(s), partition: p })));
            this.acknowledged.push(...signals);
            this.acked.set(p, (this.acked.get(p) ?? 0) + signals.length);
          }
          await sleep(Math.max(0, 200 - (Date.now() - tick)));
        }
      } finally {
        await producer.disconnect();
      }
    })();
  }

  busiest(): number {
    return [...this.acked].sort((a, b) => b[1] - a[1])[0]![0];
  }

  async reach(count: number, timeoutMs = 90_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.acknowledged.length < count) {
      if (Date.now() > deadline) throw new Error(`only ${this.acknowledged.length} of ${count} signals acknowledged within ${timeoutMs} ms`);
      await Promise.race([sleep(100), this.done]);
    }
  }
}

/**
 * With the workers stopped: each acknowledged signal has exactly one transfer in TigerBeetle and
 * one row in its tenant's DuckDB file, nothing else is there, and `spanledger signals stats` (as
 * a user runs it) says both stores agree with those counts. Returns a line for the report.
 */
export async function expectEachSignalOnceInBothStores(tb: TigerBeetleInstance, duckdbDir: string, env: Record<string, string>, signals: Signal[], tenantIds: string[]): Promise<string> {
  const byTenant = new Map(tenantIds.map((t) => [t, [] as Signal[]]));
  for (const s of signals) byTenant.get(s.tenantId)!.push(s);
  expect(new Set(signals.map((s) => s.id)).size, 'distinct signal ids produced').toBe(signals.length);

  // TigerBeetle: a transfer id is derived from (tenant, signal id) and unique in the ledger, so
  // every expected id found once + tenant debits equal to the count = each signal once, no other.
  const client = createClient({ cluster_id: tb.clusterId, replica_addresses: tb.addresses });
  let transfers = 0;
  try {
    // 250 ids a request: replies of 128-byte transfers fit a --development replica's 32 KiB limit.
    for (let i = 0; i < signals.length; i += 250) {
      const chunk = signals.slice(i, i + 250);
      const found = await client.lookupTransfers(chunk.map((s) => transferIdFor(s.tenantId, s.id)));
      expect(found.length, `transfers found for signals ${i}..${i + chunk.length - 1}`).toBe(chunk.length);
      for (const t of found) expect(t.amount).toBe(1n);
      transfers += found.length;
    }
  } finally {
    client.destroy();
  }

  // DuckDB: the ids in each tenant's file, read directly.
  let rows = 0;
  for (const [tenantId, expected] of byTenant) {
    const instance = await DuckDBInstance.create(path.join(duckdbDir, `${tenantId}.duckdb`), { access_mode: 'READ_ONLY' });
    const conn = await instance.connect();
    try {
      const ids = (await conn.runAndReadAll('SELECT id::VARCHAR FROM signals')).getRowsJS().map((r) => String(r[0]));
      rows += ids.length;
      const counts = new Map<string, number>();
      for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
      const doubled = [...counts].filter(([, n]) => n > 1).length;
      const missing = expected.filter((s) => !counts.has(s.id)).length;
      expect({ tenantId, rows: ids.length, doubled, missing }).toEqual({ tenantId, rows: expected.length, doubled: 0, missing: 0 });
    } finally {
      conn.disconnectSync();
      instance.closeSync();
    }
  }

  const { stdout } = await run(process.execPath, [CLI, 'signals', 'stats', '--json'], { cwd: ROOT, env: { ...process.env, ...env } });
  const stats = JSON.parse(stdout) as TenantStats[];
  expect(stats.map((r) => r.tenantId).sort()).toEqual([...tenantIds].sort());
  for (const r of stats) {
    const n = String(byTenant.get(r.tenantId)!.length);
    expect(r).toMatchObject({ agree: true, duckdb: { total: Number(n) }, tigerbeetle: { tenantDebits: n, signalsCredits: n } });
  }
  return `${transfers} transfers in TigerBeetle and ${rows} DuckDB rows for ${signals.length} signals of ${tenantIds.length} tenants; signals stats: both stores agree`;
}
