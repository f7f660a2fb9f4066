/**
 * TigerBeetleSignalSink against a real TigerBeetle replica (see test/support/tigerbeetle.ts for how
 * one is found or started). Skipped, with one line saying why, when none is available.
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { AccountFlags, createClient } from 'tigerbeetle-node';
import { FatalStoreError, RetriableError } from '../../src/errors.js';
import type { Signal } from '../../src/model/signal.js';
import { accountIdFor, uuidToU128 } from '../../src/sinks/tigerbeetle/derivation.js';
import { TigerBeetleSignalSink, type TigerBeetleSinkConfig } from '../../src/sinks/tigerbeetle/tigerbeetle-sink.js';
import { TB_SETTING_DEFAULTS, writeTenant } from '../support/tigerbeetle-flush.js';
import { startTigerBeetle } from '../support/tigerbeetle.js';
import { registryValue } from '../support/metrics.js';

const tb = await startTigerBeetle();
// When skipped, the suite says so once, in one line (test/support/tigerbeetle-notice.ts).
const skipped = 'skipped' in tb ? tb.skipped : null;

afterAll(async () => {
  if (!('skipped' in tb)) await tb.stop();
});

function signalFor(tenantId: string, overrides: Partial<Signal> = {}): Signal {
  return {
    id: randomUUID(),
    tenantId,
    ruleId: 'rule.error-rate',
    traceId: randomUUID().replace(/-/g, ''),
    timestamp: new Date().toISOString(),
    severity: 'MEDIUM',
    message: 'error rate above 5%',
    metadata: { service: 'checkout' },
    ...overrides,
  };
}

const logger = pino({ level: 'warn' });

function makeSink(config: Partial<TigerBeetleSinkConfig> = {}) {
  if ('skipped' in tb) throw new Error('unreachable');
  const registry = new Registry();
  const sink = new TigerBeetleSignalSink(
    { clusterId: tb.clusterId, addresses: tb.addresses, ...TB_SETTING_DEFAULTS, maxBatch: 8189, ...config },
    { logger, registry },
  );
  return { sink, registry };
}


describe.skipIf(skipped !== null)('TigerBeetleSignalSink on a real TigerBeetle', () => {
  const tenantId = randomUUID();
  const signals = Array.from({ length: 10_000 }, () => signalFor(tenantId));

  it('creates the tenant\'s two accounts on first sight, and accepts them existing later', async () => {
    if ('skipped' in tb) return;
    const first = makeSink();
    await first.sink.start();
    const seed = signalFor(randomUUID());
    await writeTenant(first.sink, seed.tenantId, [seed]);
    expect(await registryValue(first.registry, 'spanledger_tigerbeetle_requests_total', { op: 'create_accounts' })).toBe(1);

    const client = createClient({ cluster_id: tb.clusterId, replica_addresses: tb.addresses });
    try {
      const ids = [accountIdFor(seed.tenantId, 'tenant'), accountIdFor(seed.tenantId, 'signals')];
      const accounts = await client.lookupAccounts(ids);
      expect(accounts.map((a) => a.id)).toEqual(ids);
      for (const account of accounts) {
        expect(account.ledger).toBe(1);
        expect(account.flags).toBe(AccountFlags.none);
        expect(account.user_data_128).toBe(uuidToU128(seed.tenantId));
      }
      expect(accounts.map((a) => a.code)).toEqual([1, 2]);
    } finally {
      client.destroy();
    }

    // A second process: its create_accounts answers `exists`, which is fine.
    const second = makeSink();
    await second.sink.start();
    const again = signalFor(seed.tenantId);
    expect((await writeTenant(second.sink, seed.tenantId, [again])).rejected.size).toBe(0);
    expect((await second.sink.lookupTenantBalances(seed.tenantId)).signals?.creditsPosted).toBe(2n);
    await first.sink.close();
    await second.sink.close();
  });

  it('stores 10,000 signals of one tenant in exactly 2 createTransfers requests', async () => {
    const { sink, registry } = makeSink();
    await sink.start();
    const result = await writeTenant(sink, tenantId, signals);
    expect(result.rejected.size).toBe(0);
    expect(await registryValue(registry, 'spanledger_tigerbeetle_requests_total', { op: 'create_transfers' })).toBe(2);
    expect(await registryValue(registry, 'spanledger_tigerbeetle_transfers_total', { result: 'ok' })).toBe(10_000);
    const balances = await sink.lookupTenantBalances(tenantId);
    expect(balances.tenant?.debitsPosted).toBe(10_000n);
    expect(balances.tenant?.creditsPosted).toBe(0n);
    expect(balances.signals?.creditsPosted).toBe(10_000n);
    expect(balances.signals?.debitsPosted).toBe(0n);
    await sink.close();
  });

  it('treats a replay of the same signals as success and leaves balances unchanged', async () => {
    const { sink, registry } = makeSink();
    await sink.start();
    const result = await writeTenant(sink, tenantId, signals);
    expect(result.rejected.size).toBe(0);
    expect(await registryValue(registry, 'spanledger_tigerbeetle_transfers_total', { result: 'exists' })).toBe(10_000);
    expect(await registryValue(registry, 'spanledger_tigerbeetle_transfers_total', { result: 'ok' })).toBe(0);
    const balances = await sink.lookupTenantBalances(tenantId);
    expect(balances.tenant?.debitsPosted).toBe(10_000n);
    expect(balances.signals?.creditsPosted).toBe(10_000n);
    await sink.close();
  });

  it('rejects a conflicting signal (same id, other content) by result name and stores the rest', async () => {
    const { sink } = makeSink();
    await sink.start();
    const batch = [
      signalFor(tenantId),
      { ...signals[0]!, severity: 'CRITICAL' as const },
      signalFor(tenantId),
      { ...signals[1]!, timestamp: '2020-01-01T00:00:00.000Z' },
    ];
    const result = await writeTenant(sink, tenantId, batch);
    expect([...result.rejected.keys()].sort()).toEqual([1, 3]);
    expect(result.rejected.get(1)?.errorClass).toBe('exists_with_different_code');
    expect(result.rejected.get(1)?.message).toContain(signals[0]!.id);
    expect(result.rejected.get(3)?.errorClass).toBe('exists_with_different_user_data_64');
    const balances = await sink.lookupTenantBalances(tenantId);
    expect(balances.signals?.creditsPosted).toBe(10_002n);
    await sink.close();
  });

  it('refuses to run with a ledger other than the one the accounts were created with (FatalStoreError: the worker stops)', async () => {
    const { sink } = makeSink({ ledger: 2 });
    await sink.start();
    const err = await writeTenant(sink, tenantId, [signalFor(tenantId)]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FatalStoreError);
    expect((err as Error).message).toContain('exists_with_different_ledger');
    await sink.close();
  });
});

describe('TigerBeetleSignalSink with the real client and no cluster', () => {
  it('times out into a RetriableError and closes cleanly', async () => {
    const port = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const address = server.address();
        server.close(() => resolve(typeof address === 'object' && address ? address.port : 1));
      });
    });
    const sink = new TigerBeetleSignalSink(
      { clusterId: 0n, addresses: [`127.0.0.1:${port}`], ...TB_SETTING_DEFAULTS, requestTimeoutMs: 300 },
      { logger, registry: new Registry() },
    );
    await sink.start();
    const tenant = randomUUID();
    const started = Date.now();
    const err = await writeTenant(sink, tenant, [signalFor(tenant)]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RetriableError);
    expect(Date.now() - started).toBeLessThan(5_000);
    await sink.close();
  });
});
