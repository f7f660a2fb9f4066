import { describe, expect, it } from 'vitest';
import { PartitionBatch, mergePlans, type FlushLimits } from '../../../src/batching/partition-batch.js';
import { RecordRejectedError } from '../../../src/errors.js';

const source = (offset: bigint) => ({ offset, key: null, value: null, headers: {}, timestamp: '0' });
const valid = (offset: bigint, tenantId: string, bytes = 10) => ({ kind: 'valid' as const, offset, tenantId, value: `v${offset}`, bytes, source: source(offset) });
const limits: FlushLimits = { maxRecords: 3, maxBytes: 100, maxAgeMs: 1000 };

describe('PartitionBatch', () => {
  it('groups records per tenant in offset order and drains everything at once', () => {
    const batch = new PartitionBatch<string>();
    batch.add(valid(10n, 'a'), 0);
    batch.add(valid(11n, 'b'), 0);
    batch.add({ kind: 'rejected', offset: 12n, bytes: 5, error: new RecordRejectedError('InvalidJson', 'x'), source: source(12n) }, 0);
    batch.add(valid(13n, 'a'), 0);
    const plan = batch.drain()!;
    expect([...plan.tenants.keys()]).toEqual(['a', 'b']);
    expect(plan.tenants.get('a')!.map((e) => e.offset)).toEqual([10n, 13n]);
    expect(plan.rejected.map((e) => e.offset)).toEqual([12n]);
    expect(plan).toMatchObject({ firstOffset: 10n, lastOffset: 13n, records: 4, bytes: 35 });
    expect(batch.isEmpty).toBe(true);
    expect(batch.drain()).toBeUndefined();
  });

  it('reports the first limit reached: records, bytes, then age', () => {
    const batch = new PartitionBatch<string>();
    expect(batch.flushReason(limits, 0)).toBeUndefined();
    batch.add(valid(1n, 'a'), 0);
    expect(batch.flushReason(limits, 999)).toBeUndefined();
    expect(batch.msUntilDue(limits, 400)).toBe(600);
    expect(batch.flushReason(limits, 1000)).toBe('age');
    batch.add(valid(2n, 'a', 95), 0);
    expect(batch.flushReason(limits, 0)).toBe('bytes');
    batch.add(valid(3n, 'a'), 0);
    expect(batch.flushReason(limits, 0)).toBe('records');
  });

  it('measures age from the oldest record of the current buffer', () => {
    const batch = new PartitionBatch<string>();
    batch.add(valid(1n, 'a'), 100);
    batch.drain();
    batch.add(valid(2n, 'a'), 5000);
    expect(batch.flushReason(limits, 5999)).toBeUndefined();
    expect(batch.flushReason(limits, 6000)).toBe('age');
  });

  it('refuses offsets that do not increase', () => {
    const batch = new PartitionBatch<string>();
    batch.add(valid(5n, 'a'), 0);
    expect(() => batch.add(valid(5n, 'a'), 0)).toThrow(/must increase/);
  });
});

describe('mergePlans', () => {
  it('appends a later batch to a waiting plan, per tenant in offset order', () => {
    const batch = new PartitionBatch<string>();
    batch.add(valid(1n, 'a'), 0);
    batch.add(valid(2n, 'b'), 0);
    const waiting = batch.drain()!;
    batch.add(valid(3n, 'b'), 5);
    batch.add({ kind: 'rejected', offset: 4n, bytes: 1, error: new RecordRejectedError('InvalidJson', 'x'), source: source(4n) }, 5);
    batch.add(valid(5n, 'c'), 5);
    batch.add(valid(6n, 'a'), 5);
    mergePlans(waiting, batch.drain()!);
    expect([...waiting.tenants].map(([t, es]) => [t, es.map((e) => e.offset)])).toEqual([
      ['a', [1n, 6n]],
      ['b', [2n, 3n]],
      ['c', [5n]],
    ]);
    expect(waiting.rejected.map((r) => r.offset)).toEqual([4n]);
    expect(waiting).toMatchObject({ firstOffset: 1n, lastOffset: 6n, records: 6, bytes: 51, openedAt: 0 });
  });
});
