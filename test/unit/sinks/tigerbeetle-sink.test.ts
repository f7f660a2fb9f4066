import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { CreateTransferStatus, ErrorCodes, RequestError } from 'tigerbeetle-node';
import { signalSettings } from '../../../src/config/settings.js';
import { FatalStoreError, InvariantError, RecordRejectedError, RetriableError, dispositionOf } from '../../../src/errors.js';
import type { Severity, Signal } from '../../../src/model/signal.js';
import { accountIdFor, ruleTag, signalToTransfer, transferIdFor, uuidToU128 } from '../../../src/sinks/tigerbeetle/derivation.js';
import { TigerBeetleSignalSink, type TigerBeetleSinkConfig } from '../../../src/sinks/tigerbeetle/tigerbeetle-sink.js';
import { TB_SETTING_DEFAULTS, writeFlush, writeTenant } from '../../support/tigerbeetle-flush.js';
import { StandInCluster } from '../../support/tigerbeetle-standin.js';
import { registryValue } from '../../support/metrics.js';

const TENANT = '6f1c2d3e-4a5b-4c6d-8e7f-901a2b3c4d5e';
const OTHER_TENANT = '0b6a7c1d-2e3f-4a5b-9c6d-7e8f9a0b1c2d';

function signal(overrides: Partial<Signal> = {}): Signal {
  return {
    id: randomUUID(),
    tenantId: TENANT,
    ruleId: 'rule.latency.p99',
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    timestamp: '2026-11-24T10:00:00.000Z',
    severity: 'HIGH',
    message: 'p99 latency above threshold',
    metadata: {},
    ...overrides,
  };
}

function setup(config: Partial<TigerBeetleSinkConfig> = {}, cluster = new StandInCluster()) {
  const registry = new Registry();
  const logs: Array<{ level: number; msg: string }> = [];
  const logger = pino(
    { level: 'debug' },
    { write: (line: string) => void logs.push(JSON.parse(line) as { level: number; msg: string }) },
  );
  const sink = new TigerBeetleSignalSink(
    { clusterId: 0n, addresses: ['127.0.0.1:3000'], ...TB_SETTING_DEFAULTS, ...config },
    { logger, registry },
    { clientFactory: cluster.factory },
  );
  return { sink, cluster, registry, logs };
}


describe('id and field derivations', () => {
  it('transfer id is derived from (tenant, signal id): stable, per tenant, never 0 or 2^128-1', () => {
    const id = randomUUID();
    const a = transferIdFor(TENANT, id);
    expect(transferIdFor(TENANT, id)).toBe(a);
    expect(transferIdFor(OTHER_TENANT, id)).not.toBe(a);
    expect(transferIdFor(TENANT, randomUUID())).not.toBe(a);
    expect(a).not.toBe(uuidToU128(id));
    // TigerBeetle's reserved ids as signal ids still give usable transfer ids.
    for (const reserved of ['00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff']) {
      const derived = transferIdFor(TENANT, reserved);
      expect(derived > 0n && derived < (1n << 128n) - 1n).toBe(true);
    }
    // Golden value (also computed with Python's hashlib): changing the derivation would make
    // replays of stored signals count twice.
    expect(transferIdFor('00000000-0000-4000-8000-000000000000', '00000000-0000-4000-8000-000000000001').toString(16)).toBe(
      '6760beff40eee6f8ff8c3f1821eacaee',
    );
  });

  it('account ids are stable, per tenant and role, never 0 or 2^128-1', () => {
    const a = accountIdFor(TENANT, 'tenant');
    const b = accountIdFor(TENANT, 'signals');
    expect(a).not.toBe(b);
    expect(accountIdFor(TENANT, 'tenant')).toBe(a);
    expect(accountIdFor(OTHER_TENANT, 'tenant')).not.toBe(a);
    for (const id of [a, b]) {
      expect(id > 0n && id < (1n << 128n) - 1n).toBe(true);
    }
    // Golden value: changing the derivation would orphan every existing account.
    expect(accountIdFor('00000000-0000-4000-8000-000000000000', 'tenant').toString(16)).toBe(
      '7cf13fd5458a27070944069de017bec8',
    );
  });

  it('maps severity to code, trace id to user_data_128, time to user_data_64 (ms), rule to user_data_32', () => {
    const severities: Severity[] = ['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'];
    severities.forEach((severity, i) => {
      const t = signalToTransfer(signal({ severity }), TENANT, 7);
      if (t instanceof RecordRejectedError) throw t;
      expect(t.code).toBe(i + 1);
      expect(t.ledger).toBe(7);
      expect(t.amount).toBe(1n);
      expect(t.timestamp).toBe(0n);
      expect(t.user_data_128).toBe(0x4bf92f3577b34da6a3ce929d0e0e4736n);
      expect(t.user_data_64).toBe(BigInt(Date.parse('2026-11-24T10:00:00.000Z')));
      expect(t.user_data_32).toBe(ruleTag('rule.latency.p99'));
      expect(t.debit_account_id).toBe(accountIdFor(TENANT, 'tenant'));
      expect(t.credit_account_id).toBe(accountIdFor(TENANT, 'signals'));
    });
  });
});

describe('TigerBeetleSignalSink with the stand-in client', () => {
  it('splits a batch into createTransfers calls of at most maxBatch (default 8189)', async () => {
    const { sink, cluster, registry } = setup();
    await sink.start();
    const result = await writeTenant(sink, TENANT, Array.from({ length: 20_000 }, () => signal()));
    expect(result.rejected.size).toBe(0);
    expect(cluster.callsOf('create_transfers')).toEqual([8189, 8189, 3622]);
    expect(await registryValue(registry, 'spanledger_tigerbeetle_requests_total', { op: 'create_transfers' })).toBe(3);
    expect(await registryValue(registry, 'spanledger_tigerbeetle_requests_total', { op: 'create_accounts' })).toBe(1);
    expect(await registryValue(registry, 'spanledger_tigerbeetle_transfers_total', { result: 'ok' })).toBe(20_000);
    expect(await registryValue(registry, 'spanledger_tigerbeetle_request_duration_seconds', { op: 'create_transfers' })).toBe(3);
    const balances = await sink.lookupTenantBalances(TENANT);
    expect(balances.tenant?.debitsPosted).toBe(20_000n);
    expect(balances.tenant?.creditsPosted).toBe(0n);
    expect(balances.signals?.creditsPosted).toBe(20_000n);
    expect(balances.signals?.debitsPosted).toBe(0n);
    await sink.close();
  });

  it('honours a configured maxBatch', async () => {
    const { sink, cluster } = setup({ maxBatch: 100 });
    await sink.start();
    await writeTenant(sink, TENANT, Array.from({ length: 250 }, () => signal()));
    expect(cluster.callsOf('create_transfers')).toEqual([100, 100, 50]);
  });

  it('counts a replay (exists) as success and leaves balances unchanged', async () => {
    const { sink, registry } = setup();
    await sink.start();
    const batch = Array.from({ length: 500 }, () => signal());
    expect((await writeTenant(sink, TENANT, batch)).rejected.size).toBe(0);
    expect((await writeTenant(sink, TENANT, batch)).rejected.size).toBe(0);
    expect(await registryValue(registry, 'spanledger_tigerbeetle_transfers_total', { result: 'exists' })).toBe(500);
    expect(await registryValue(registry, 'spanledger_tigerbeetle_transfers_total', { result: 'ok' })).toBe(500);
    expect((await sink.lookupTenantBalances(TENANT)).signals?.creditsPosted).toBe(500n);
  });

  it('rejects a conflicting record with the result name and stores the rest', async () => {
    const { sink, cluster, registry } = setup();
    await sink.start();
    const original = signal({ severity: 'LOW' });
    const traced = signal();
    await writeTenant(sink, TENANT, [original, traced]);

    const batch = [
      signal(),
      { ...original, severity: 'CRITICAL' as const },
      signal(),
      { ...traced, traceId: 'ffffffffffffffffffffffffffffffff' },
    ];
    const result = await writeTenant(sink, TENANT, batch);
    expect([...result.rejected.keys()].sort()).toEqual([1, 3]);
    const codeConflict = result.rejected.get(1)!;
    expect(codeConflict).toBeInstanceOf(RecordRejectedError);
    expect(codeConflict.errorClass).toBe('exists_with_different_code');
    expect(codeConflict.retriable).toBe(false);
    expect(codeConflict.message).toContain(original.id);
    expect(codeConflict.message).toContain('exists_with_different_code');
    expect(result.rejected.get(3)!.errorClass).toBe('exists_with_different_user_data_128');
    expect(await registryValue(registry, 'spanledger_tigerbeetle_transfers_total', { result: 'rejected' })).toBe(2);
    expect(cluster.transfers.has(transferIdFor(TENANT, batch[0]!.id))).toBe(true);
    expect(cluster.transfers.has(transferIdFor(TENANT, batch[2]!.id))).toBe(true);
    expect((await sink.lookupTenantBalances(TENANT)).signals?.creditsPosted).toBe(4n);
  });

  it('rejects records it cannot turn into transfers before sending anything for them', async () => {
    const { sink, cluster } = setup();
    await sink.start();
    const batch = [signal(), signal({ tenantId: OTHER_TENANT }), signal({ timestamp: '1969-12-31T23:59:59Z' })];
    const result = await writeTenant(sink, TENANT, batch);
    expect(result.rejected.get(1)?.errorClass).toBe('TenantMismatch');
    expect(result.rejected.get(2)?.errorClass).toBe('InvalidTimestamp');
    expect(cluster.callsOf('create_transfers')).toEqual([1]);
  });

  it('lets two tenants use the same signal id: each gets its own transfer, replays still answer exists', async () => {
    const { sink, cluster, registry } = setup();
    await sink.start();
    const id = randomUUID();
    const mine = signal({ id, severity: 'LOW' });
    const theirs = signal({ id, tenantId: OTHER_TENANT, severity: 'CRITICAL', traceId: 'ffffffffffffffffffffffffffffffff' });
    expect((await writeTenant(sink, TENANT, [mine])).rejected.size).toBe(0);
    expect((await writeTenant(sink, OTHER_TENANT, [theirs])).rejected.size).toBe(0);
    expect(cluster.transfers.get(transferIdFor(TENANT, id))?.code).toBe(1);
    expect(cluster.transfers.get(transferIdFor(OTHER_TENANT, id))?.code).toBe(4);
    // Replays of both, in the other order: exists, nothing counted twice.
    expect((await writeTenant(sink, OTHER_TENANT, [theirs])).rejected.size).toBe(0);
    expect((await writeTenant(sink, TENANT, [mine])).rejected.size).toBe(0);
    expect(await registryValue(registry, 'spanledger_tigerbeetle_transfers_total', { result: 'ok' })).toBe(2);
    expect(await registryValue(registry, 'spanledger_tigerbeetle_transfers_total', { result: 'exists' })).toBe(2);
    expect((await sink.lookupTenantBalances(TENANT)).signals?.creditsPosted).toBe(1n);
    expect((await sink.lookupTenantBalances(OTHER_TENANT)).signals?.creditsPosted).toBe(1n);
  });

  it('creates a tenant\'s accounts once per process, also under concurrent writes', async () => {
    const { sink, cluster } = setup();
    await sink.start();
    await Promise.all([
      writeTenant(sink, TENANT, [signal()]),
      writeTenant(sink, TENANT, [signal()]),
      writeTenant(sink, OTHER_TENANT, [signal({ tenantId: OTHER_TENANT })]),
    ]);
    await writeTenant(sink, TENANT, [signal()]);
    expect(cluster.callsOf('create_accounts')).toEqual([2, 2]);
    expect(cluster.accounts.size).toBe(4);
    const tenantAccount = cluster.accounts.get(accountIdFor(TENANT, 'tenant'))!;
    expect(tenantAccount.flags).toBe(0);
    expect(tenantAccount.code).toBe(1);
    expect(cluster.accounts.get(accountIdFor(TENANT, 'signals'))!.code).toBe(2);
  });

  it('accepts accounts that already exist (another process made them)', async () => {
    const cluster = new StandInCluster();
    const first = setup({}, cluster);
    await writeTenant(first.sink, TENANT, [signal()]);
    const second = setup({}, cluster);
    expect((await writeTenant(second.sink, TENANT, [signal()])).rejected.size).toBe(0);
    expect(cluster.callsOf('create_accounts')).toEqual([2, 2]);
  });

  it('throws a FatalStoreError (the worker stops) when accounts exist with a different ledger', async () => {
    const cluster = new StandInCluster();
    await writeTenant(setup({ ledger: 1 }, cluster).sink, TENANT, [signal()]);
    const { sink } = setup({ ledger: 2 }, cluster);
    const err = await writeTenant(sink, TENANT, [signal()]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FatalStoreError);
    expect((err as FatalStoreError).retriable).toBe(false);
    expect((err as Error).message).toContain('exists_with_different_ledger');
    expect(cluster.callsOf('create_transfers')).toEqual([1]);
  });

  it('turns a request that does not answer in time into a RetriableError, then recovers', async () => {
    const { sink, cluster, registry } = setup({ requestTimeoutMs: 50 });
    await sink.start();
    cluster.hang = true;
    const batch = [signal(), signal()];
    const err = await writeTenant(sink, TENANT, batch).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RetriableError);
    expect((err as Error).message).toMatch(/create_accounts did not answer within 50 ms/);
    expect(await registryValue(registry, 'spanledger_tigerbeetle_request_errors_total', { op: 'create_accounts', reason: 'timeout' })).toBe(1);

    cluster.hang = false;
    expect((await writeTenant(sink, TENANT, batch)).rejected.size).toBe(0);
    // The client was kept: one timed-out request is not a reason to replace it.
    expect(cluster.clients.length).toBe(1);

    cluster.hang = true;
    await expect(writeTenant(sink, TENANT, batch)).rejects.toBeInstanceOf(RetriableError);
    cluster.hang = false;
    const replay = await writeTenant(sink, TENANT, batch);
    expect(replay.rejected.size).toBe(0);
    expect((await sink.lookupTenantBalances(TENANT)).signals?.creditsPosted).toBe(2n);
  });

  it('replaces the client once too many timed-out requests are pending in it', async () => {
    const { sink, cluster } = setup({ requestTimeoutMs: 20, maxAbandonedRequests: 2 });
    await sink.start();
    cluster.hang = true;
    await expect(writeTenant(sink, TENANT, [signal()])).rejects.toBeInstanceOf(RetriableError);
    expect(cluster.clients.length).toBe(1);
    await expect(writeTenant(sink, TENANT, [signal()])).rejects.toBeInstanceOf(RetriableError);
    expect(cluster.clients.length).toBe(2);
    expect(cluster.clients[0]!.destroyed).toBe(true);
    cluster.hang = false;
    expect((await writeTenant(sink, TENANT, [signal()])).rejected.size).toBe(0);
  });

  it('maps the client\'s own errors: evicted → retriable (new client), release mismatch → FatalStoreError', async () => {
    const { sink, cluster } = setup();
    await sink.start();
    await writeTenant(sink, TENANT, [signal()]);
    cluster.failNext = new RequestError(ErrorCodes.ERR_CLIENT_EVICTED);
    await expect(writeTenant(sink, TENANT, [signal()])).rejects.toBeInstanceOf(RetriableError);
    expect(cluster.clients.length).toBe(2);
    cluster.failNext = new RequestError(ErrorCodes.ERR_CLIENT_RELEASE_TOO_HIGH);
    const err = await writeTenant(sink, TENANT, [signal()]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FatalStoreError);
    expect((err as Error).message).toContain('ERR_CLIENT_RELEASE_TOO_HIGH');
  });

  it('surfaces an answer the client must never give (not a RequestError) as a FatalStoreError: the worker stops', async () => {
    const { sink, cluster, registry } = setup();
    await sink.start();
    await writeTenant(sink, TENANT, [signal()]);
    cluster.failNext = new TypeError('invalid transfer event');
    const err = await writeTenant(sink, TENANT, [signal()]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FatalStoreError);
    expect(dispositionOf(err)).toBe('fatal');
    expect((err as Error).message).toContain('invalid transfer event');
    expect(await registryValue(registry, 'spanledger_tigerbeetle_request_errors_total', { op: 'create_transfers', reason: 'unexpected' })).toBe(1);
  });

  it('stops with a FatalStoreError when the cluster refuses even one transfer per request (ERR_TOO_MUCH_DATA)', async () => {
    const { sink, cluster } = setup({ maxBatch: 4 });
    await sink.start();
    cluster.failWhen = (call) => (call.op === 'create_transfers' ? new RequestError(ErrorCodes.ERR_TOO_MUCH_DATA) : undefined);
    const err = await writeTenant(sink, TENANT, [signal(), signal(), signal(), signal()]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FatalStoreError);
    expect((err as Error).message).toContain('ERR_TOO_MUCH_DATA');
    expect(cluster.callsOf('create_transfers')).toEqual([4, 2, 1]);
  });

  it('throws an InvariantError for a tenant id that is not canonical (the decoder refuses those)', async () => {
    const { sink, cluster } = setup();
    await sink.start();
    const upper = TENANT.toUpperCase();
    const err = await writeTenant(sink, upper, [signal({ tenantId: upper })]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvariantError);
    expect((err as Error).message).toContain(upper);
    expect(cluster.calls).toEqual([]);
  });

  it('halves the batch when the cluster refuses it as too large (ERR_TOO_MUCH_DATA)', async () => {
    const cluster = new StandInCluster();
    cluster.batchLimit = 253; // what a replica started with --development accepts
    const { sink, logs } = setup({}, cluster);
    await sink.start();
    const result = await writeTenant(sink, TENANT, Array.from({ length: 1000 }, () => signal()));
    expect(result.rejected.size).toBe(0);
    expect(cluster.transfers.size).toBe(1000);
    expect(Math.max(...cluster.callsOf('create_transfers'))).toBeLessThanOrEqual(253);
    expect(logs.some((l) => l.msg.includes('halving the batch size'))).toBe(true);
  });

  it('forgets a tenant whose accounts vanished from the cluster, so the next batch recreates them', async () => {
    const { sink, cluster } = setup();
    await sink.start();
    await writeTenant(sink, TENANT, [signal()]);
    cluster.accounts.clear(); // e.g. the cluster was re-formatted under a running worker
    const lost = signal();
    const result = await writeTenant(sink, TENANT, [lost]);
    expect(result.rejected.get(0)?.errorClass).toBe('debit_account_not_found');
    const next = await writeTenant(sink, TENANT, [signal(), lost]);
    expect(cluster.callsOf('create_accounts')).toEqual([2, 2]);
    expect(next.rejected.size).toBe(1);
    expect(next.rejected.get(1)?.errorClass).toBe(CreateTransferStatus[CreateTransferStatus.id_already_failed]);
  });

  it('validates its configuration', () => {
    expect(() => setup({ maxBatch: 0 })).toThrow(InvariantError);
    expect(() => setup({ maxBatch: 8190 })).toThrow(/maxBatch/);
    expect(() => setup({ ledger: 0 })).toThrow(/ledger/);
    expect(() => setup({ addresses: [] })).toThrow(/addresses/);
    expect(() => setup({ requestTimeoutMs: 0 })).toThrow(/requestTimeoutMs/);
  });

  it('the settings table checks the cluster id the sink needs (0..2^128-1)', () => {
    const clusterId = signalSettings.tbClusterId.schema;
    expect(clusterId.parse(String((1n << 128n) - 1n))).toBe((1n << 128n) - 1n);
    expect(clusterId.safeParse(String(1n << 128n)).success).toBe(false);
    expect(() => setup({ clusterId: 1n << 128n })).toThrow(/clusterId/);
  });

  it('close() destroys the client', async () => {
    const { sink, cluster } = setup();
    await sink.start();
    await sink.close();
    expect(cluster.current.destroyed).toBe(true);
    await expect(writeTenant(sink, TENANT, [signal()])).rejects.toBeInstanceOf(RetriableError);
  });
});

describe('TigerBeetleSignalSink: one createTransfers request for the tenants of a flush and the concurrent flushes', () => {
  const tenants = (n: number) => Array.from({ length: n }, () => randomUUID());
  const signalsOf = (tenantId: string, n: number) => Array.from({ length: n }, () => signal({ tenantId }));
  /** Like the pipeline's runSink: one write of the whole flush; each tenant's result, in the flush's order. */
  const flush = async (sink: TigerBeetleSignalSink, batches: Map<string, Signal[]>) => [...(await writeFlush(sink, batches)).values()];

  /** A started sink whose `n` tenants have their accounts and one signal each; `calls` emptied. */
  const warmed = async (config: Partial<TigerBeetleSinkConfig>, n: number) => {
    const ctx = setup(config);
    await ctx.sink.start();
    const ids = tenants(n);
    await flush(ctx.sink, new Map(ids.map((t) => [t, signalsOf(t, 1)])));
    ctx.cluster.calls.length = 0;
    return { ...ctx, ids };
  };

  it('500 tenants written together make ceil(events / maxBatch) requests, each write gets its own result', async () => {
    const { sink, cluster, registry } = setup();
    await sink.start();
    const ids = tenants(500);
    // First sight: 500 account requests (one per tenant, as before), then the transfers together.
    const first = new Map(ids.map((t) => [t, signalsOf(t, 2)]));
    const firstResults = await flush(sink, first);
    expect(firstResults.every((r) => r.rejected.size === 0)).toBe(true);
    expect(cluster.callsOf('create_accounts').length).toBe(500);
    expect(cluster.callsOf('create_transfers')).toEqual([1000]);

    // Steady state: 500 tenants × 40 = 20,000 transfers → ceil(20000 / 8189) = 3 requests.
    cluster.calls.length = 0;
    const second = new Map(ids.map((t) => [t, signalsOf(t, 40)]));
    const results = await flush(sink, second);
    expect(results.every((r) => r.rejected.size === 0)).toBe(true);
    expect(cluster.callsOf('create_transfers')).toEqual([8189, 8189, 3622]);
    expect(cluster.callsOf('create_accounts')).toEqual([]);
    expect(await registryValue(registry, 'spanledger_tigerbeetle_transfers_total', { result: 'ok' })).toBe(21_000);
    for (const t of [ids[0]!, ids[250]!, ids[499]!]) {
      expect((await sink.lookupTenantBalances(t)).signals?.creditsPosted).toBe(42n);
    }
    for (const [t, signals] of second) {
      for (const s of signals) expect(cluster.transfers.get(transferIdFor(t, s.id))?.debit_account_id).toBe(accountIdFor(t, 'tenant'));
    }
    await sink.close();
  });

  it('respects a configured maxBatch across writes', async () => {
    const { sink, cluster, ids } = await warmed({ maxBatch: 1000 }, 500);
    // 499 tenants of 7 and one of 2,500 (a write larger than a request): 5,993 transfers.
    const batches = new Map(ids.map((t, i) => [t, signalsOf(t, i === 100 ? 2500 : 7)]));
    const results = await flush(sink, batches);
    expect(results.every((r) => r.rejected.size === 0)).toBe(true);
    expect(cluster.callsOf('create_transfers')).toEqual([1000, 1000, 1000, 1000, 1000, 993]);
    expect(cluster.transfers.size).toBe(500 + 5993);
    expect((await sink.lookupTenantBalances(ids[100]!)).signals?.creditsPosted).toBe(2501n);
  });

  it('maps each result to its write and record: exists is success, refusals land in the right tenant', async () => {
    const { sink, cluster, registry } = setup();
    await sink.start();
    const ids = tenants(50);
    const [a, b] = [ids[7]!, ids[31]!];
    const storedA = signalsOf(a, 3);
    const storedB = signalsOf(b, 3);
    await flush(sink, new Map([[a, storedA], [b, storedB]]));
    await flush(sink, new Map(ids.filter((t) => t !== a && t !== b).map((t) => [t, signalsOf(t, 1)])));
    cluster.calls.length = 0;

    const batches = new Map(ids.map((t) => [t, signalsOf(t, 4)]));
    // Tenant a: a replay (exists) at 0 and a changed severity (refused) at 2.
    batches.set(a, [storedA[0]!, signal({ tenantId: a }), { ...storedA[1]!, severity: 'CRITICAL' }, signal({ tenantId: a })]);
    // Tenant b: a changed trace id (refused) at 1, a replay at 3.
    batches.set(b, [signal({ tenantId: b }), { ...storedB[0]!, traceId: 'ffffffffffffffffffffffffffffffff' }, signal({ tenantId: b }), storedB[2]!]);
    const results = await flush(sink, batches);
    expect(cluster.callsOf('create_transfers')).toEqual([200]);
    const byTenant = new Map([...batches.keys()].map((t, i) => [t, results[i]!]));
    const ra = byTenant.get(a)!.rejected;
    const rb = byTenant.get(b)!.rejected;
    expect([...ra.keys()]).toEqual([2]);
    expect(ra.get(2)!.errorClass).toBe('exists_with_different_code');
    expect(ra.get(2)!.message).toContain(storedA[1]!.id);
    expect([...rb.keys()]).toEqual([1]);
    expect(rb.get(1)!.errorClass).toBe('exists_with_different_user_data_128');
    expect(rb.get(1)!.message).toContain(storedB[0]!.id);
    for (const [t, r] of byTenant) if (t !== a && t !== b) expect(r.rejected.size).toBe(0);
    expect(await registryValue(registry, 'spanledger_tigerbeetle_transfers_total', { result: 'exists' })).toBe(2);
    expect(await registryValue(registry, 'spanledger_tigerbeetle_transfers_total', { result: 'rejected' })).toBe(2);
    expect((await sink.lookupTenantBalances(a)).signals?.creditsPosted).toBe(5n);
    expect((await sink.lookupTenantBalances(b)).signals?.creditsPosted).toBe(5n);
  });

  it('a failed shared request rejects every write in it as retriable; the retries coalesce and succeed', async () => {
    const { sink, cluster, ids } = await warmed({ maxBatch: 100 }, 30);

    // 30 tenants × 7 = 210 transfers, in requests of at most 100. The second fails (the client
    // was closed under it): writes 0..13 are wholly in the first request and succeed; write 14
    // (transfers 98..104) straddles the first two and fails with writes 15..28; write 28
    // (196..202) straddles the second and third, so its last 3 transfers are not sent at all
    // (the caller retries the whole write): the third request holds write 29 only.
    cluster.failWhen = (call, index) => (index === 1 ? new RequestError(ErrorCodes.ERR_CLIENT_CLOSED) : undefined);
    const batches = new Map(ids.map((t) => [t, signalsOf(t, 7)]));
    const outcomes = await Promise.allSettled([...batches].map(([t, s]) => writeTenant(sink, t, s)));
    cluster.failWhen = null;
    expect(cluster.callsOf('create_transfers')).toEqual([100, 100, 7]);
    const failed = outcomes.flatMap((o, i) => (o.status === 'rejected' ? [i] : []));
    expect(failed).toEqual(Array.from({ length: 15 }, (_, i) => 14 + i));
    for (const i of failed) {
      const err = (outcomes[i] as PromiseRejectedResult).reason as RetriableError;
      expect(err).toBeInstanceOf(RetriableError);
      expect(err.retriable).toBe(true);
      expect(err.message).toContain('ERR_CLIENT_CLOSED');
    }

    // Each caller retries its own write; the retries go out together, replayed parts answer exists.
    cluster.calls.length = 0;
    const retried = await Promise.all(failed.map((i) => writeTenant(sink, ids[i]!, batches.get(ids[i]!)!)));
    expect(retried.every((r) => r.rejected.size === 0)).toBe(true);
    expect(cluster.callsOf('create_transfers')).toEqual([100, 5]);
    for (const t of ids) expect((await sink.lookupTenantBalances(t)).signals?.creditsPosted).toBe(8n);
  });

  it('a flush whose second request fails is refused as a whole (retriable); its retry stores every transfer once', async () => {
    const { sink, cluster, ids } = await warmed({ maxBatch: 100 }, 30);
    cluster.failWhen = (_call, index) => (index === 1 ? new RequestError(ErrorCodes.ERR_CLIENT_CLOSED) : undefined);
    const batches = new Map(ids.map((t) => [t, signalsOf(t, 7)]));
    const err = await flush(sink, batches).catch((e: unknown) => e);
    cluster.failWhen = null;
    expect(err).toBeInstanceOf(RetriableError);
    expect(cluster.callsOf('create_transfers')).toEqual([100, 100]);
    cluster.calls.length = 0;
    const retried = await flush(sink, batches);
    expect(retried.every((r) => r.rejected.size === 0)).toBe(true);
    expect(cluster.callsOf('create_transfers')).toEqual([100, 100, 10]);
    for (const t of ids) expect((await sink.lookupTenantBalances(t)).signals?.creditsPosted).toBe(8n);
  });

  it('a request that times out rejects all its writes as retriable, and a replay stores nothing twice', async () => {
    const { sink, cluster, ids } = await warmed({ requestTimeoutMs: 50 }, 20);
    cluster.hang = true;
    const batches = new Map(ids.map((t) => [t, signalsOf(t, 5)]));
    const outcomes = await Promise.allSettled([...batches].map(([t, s]) => writeTenant(sink, t, s)));
    expect(outcomes.every((o) => o.status === 'rejected' && o.reason instanceof RetriableError)).toBe(true);
    expect(cluster.callsOf('create_transfers')).toEqual([100]);
    cluster.hang = false;
    const retried = await flush(sink, batches);
    expect(retried.every((r) => r.rejected.size === 0)).toBe(true);
    expect(cluster.callsOf('create_transfers')).toEqual([100, 100]);
    for (const t of ids) expect((await sink.lookupTenantBalances(t)).signals?.creditsPosted).toBe(6n);
  });

  it('keeps a tenant\'s order across writes, and writes queued behind a request in flight go out together', async () => {
    const { sink, cluster } = setup({ maxBatch: 4 });
    await sink.start();
    const [t, u] = tenants(2) as [string, string];
    await flush(sink, new Map([[t, signalsOf(t, 1)], [u, signalsOf(u, 1)]]));
    cluster.calls.length = 0;
    const first = signalsOf(t, 3);
    const other = signalsOf(u, 3);
    const second = signalsOf(t, 3);
    const pending = [writeTenant(sink, t, first), writeTenant(sink, u, other), writeTenant(sink, t, second)];
    // Arrives while the first request is in flight: joins the queue behind it.
    await new Promise((resolve) => setImmediate(resolve));
    const late = signalsOf(u, 1);
    pending.push(writeTenant(sink, u, late));
    await Promise.all(pending);
    expect(cluster.callsOf('create_transfers')).toEqual([4, 4, 2]);
    const stamps = [...first, ...second].map((s) => cluster.transfers.get(transferIdFor(t, s.id))!.timestamp);
    expect(stamps).toEqual([...stamps].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)));
  });

  it('close() rejects writes still queued as retriable', async () => {
    const { sink, cluster } = setup();
    await sink.start();
    const t = randomUUID();
    await writeTenant(sink, t, signalsOf(t, 1));
    cluster.hang = true;
    const inFlight = writeTenant(sink, t, signalsOf(t, 2));
    await new Promise((resolve) => setImmediate(resolve));
    const queued = writeTenant(sink, t, signalsOf(t, 2));
    await sink.close();
    await expect(inFlight).rejects.toBeInstanceOf(RetriableError);
    await expect(queued).rejects.toBeInstanceOf(RetriableError);
  });
});
