import { describe, expect, it } from 'vitest';
import { PartitionBatch, mergePlans, type FlushLimits } from '../../../src/pipeline/partition-batch.js';
import { RecordRejectedError } from '../../../src/errors.js';

const source = (offset: bigint) => ({ offset, key: null, value: null, headers: {}, timestamp: '0' });
/** Adds a valid one-item record. */
const valid = (batch: PartitionBatch<string>, offset: bigint, tenantId: string, now: number, bytes = 10) => batch.addValid(offset, [{ tenantId, value: `v${offset}` }], bytes, source(offset), now);
const limits: FlushLimits = { maxRecords: 3, maxBytes: 100, maxAgeMs: 1000 };

describe('PartitionBatch', () => {
  it('groups records per tenant in offset order and drains everything at once', () => {
    const batch = new PartitionBatch<string>();
    valid(batch, 10n, 'a', 0);
    valid(batch, 11n, 'b', 0);
    batch.addRejected(12n, new RecordRejectedError('InvalidJson', 'x'), 5, source(12n), 0);
    valid(batch, 13n, 'a', 0);
    const plan = batch.drain()!;
    expect([...plan.tenants.keys()]).toEqual(['a', 'b']);
    expect(plan.tenants.get('a')!.map((e) => e.offset)).toEqual([10n, 13n]);
    expect(plan.rejected.map((e) => e.offset)).toEqual([12n]);
    expect(plan).toMatchObject({ firstOffset: 10n, lastOffset: 13n, records: 4, bytes: 35 });
    expect(batch.isEmpty).toBe(true);
    expect(batch.drain()).toBeUndefined();
  });

  it("by offset: keeps every tenant's items in one list in (offset, index) order, also across merged plans", () => {
    const batch = new PartitionBatch<string>('by-offset');
    valid(batch, 10n, 'a', 0);
    batch.addValid(11n, [{ tenantId: 'b', value: 'x' }, { tenantId: 'a', value: 'y' }], 10, source(11n), 0);
    batch.addRejected(12n, new RecordRejectedError('InvalidJson', 'x'), 5, source(12n), 0);
    const plan = batch.drain()!;
    valid(batch, 13n, 'b', 0);
    mergePlans(plan, batch.drain()!);
    expect(plan.ordered.map((e) => `${e.offset}.${e.index}:${e.tenantId}`)).toEqual(['10.0:a', '11.0:b', '11.1:a', '13.0:b']);
    expect(plan.tenants.size).toBe(0);
    expect(plan).toMatchObject({ lastOffset: 13n, records: 4, items: 5 });
  });

  it('reports the first limit reached: records, bytes, then age', () => {
    const batch = new PartitionBatch<string>();
    expect(batch.flushReason(limits, 0)).toBeUndefined();
    valid(batch, 1n, 'a', 0);
    expect(batch.flushReason(limits, 999)).toBeUndefined();
    expect(batch.msUntilDue(limits, 400)).toBe(600);
    expect(batch.flushReason(limits, 1000)).toBe('age');
    valid(batch, 2n, 'a', 0, 95);
    expect(batch.flushReason(limits, 0)).toBe('bytes');
    valid(batch, 3n, 'a', 0);
    expect(batch.flushReason(limits, 0)).toBe('records');
  });

  it('measures age from the oldest record of the current buffer', () => {
    const batch = new PartitionBatch<string>();
    valid(batch, 1n, 'a', 100);
    batch.drain();
    valid(batch, 2n, 'a', 5000);
    expect(batch.flushReason(limits, 5999)).toBeUndefined();
    expect(batch.flushReason(limits, 6000)).toBe('age');
  });

  it('spreads a many-item record over its tenants, in item order, and counts its items for the record limit', () => {
    const batch = new PartitionBatch<string>();
    valid(batch, 1n, 'a', 0);
    batch.addValid(2n, [{ tenantId: 'b', value: 'x0' }, { tenantId: 'a', value: 'x1' }, { tenantId: 'b', value: 'x2' }], 50, source(2n), 0);
    expect(batch.flushReason(limits, 0)).toBe('records');
    const plan = batch.drain()!;
    expect(plan.tenants.get('a')!.map((e) => [e.offset, e.index, e.value])).toEqual([[1n, 0, 'v1'], [2n, 1, 'x1']]);
    expect(plan.tenants.get('b')!.map((e) => [e.offset, e.index, e.value])).toEqual([[2n, 0, 'x0'], [2n, 2, 'x2']]);
    expect(plan).toMatchObject({ records: 2, items: 4, bytes: 60 });
  });

  it('refuses offsets that do not increase', () => {
    const batch = new PartitionBatch<string>();
    valid(batch, 5n, 'a', 0);
    expect(() => valid(batch, 5n, 'a', 0)).toThrow(/must increase/);
  });
});

describe('mergePlans', () => {
  it('appends a later batch to a waiting plan, per tenant in offset order', () => {
    const batch = new PartitionBatch<string>();
    valid(batch, 1n, 'a', 0);
    valid(batch, 2n, 'b', 0);
    const waiting = batch.drain()!;
    valid(batch, 3n, 'b', 5);
    batch.addRejected(4n, new RecordRejectedError('InvalidJson', 'x'), 1, source(4n), 5);
    valid(batch, 5n, 'c', 5);
    valid(batch, 6n, 'a', 5);
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
