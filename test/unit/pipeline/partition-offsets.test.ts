import { describe, expect, it } from 'vitest';
import { PartitionOffsets } from '../../../src/pipeline/partition-offsets.js';

describe('PartitionOffsets', () => {
  it('skips records already in custody (re-delivery after a rebalance)', () => {
    const o = new PartitionOffsets();
    expect(o.accept(5n)).toBe(true);
    expect(o.accept(6n)).toBe(true);
    expect(o.accept(5n)).toBe(false);
    expect(o.accept(6n)).toBe(false);
    // Gaps are normal (compaction, transaction markers).
    expect(o.accept(9n)).toBe(true);
    expect(o.nextCustodyOffset).toBe(10n);
  });

  it('commits only what is durable, once, and never backwards', () => {
    const o = new PartitionOffsets();
    o.accept(0n);
    o.accept(1n);
    expect(o.pendingCommit()).toBeUndefined();
    o.markDurable(0n);
    expect(o.pendingCommit()).toBe(1n);
    o.markCommitted(1n);
    expect(o.pendingCommit()).toBeUndefined();
    o.markDurable(1n);
    expect(o.pendingCommit()).toBe(2n);
    o.markDurable(0n);
    expect(o.pendingCommit()).toBe(2n);
    o.markCommitted(2n);
    o.markCommitted(1n);
    expect(o.committedOffset).toBe(2n);
  });

  it('holds commits at where a stateful stage still needs records from', () => {
    const o = new PartitionOffsets();
    o.markDurable(9n);
    o.holdAt(4n);
    expect(o.pendingCommit()).toBe(4n);
    o.holdAt(50n);
    expect(o.pendingCommit()).toBe(10n);
    o.markCommitted(10n);
    o.holdAt(4n);
    expect(o.pendingCommit()).toBeUndefined();
    o.holdAt(undefined);
    o.markDurable(19n);
    expect(o.pendingCommit()).toBe(20n);
  });

  it('with checkpoints, commits only an offset whose checkpoint was taken', () => {
    const o = new PartitionOffsets(true);
    expect(o.checkpointDue()).toBeUndefined();
    o.markDurable(9n);
    o.holdAt(4n);
    expect(o.checkpointDue()).toBe(4n);
    expect(o.pendingCommit()).toBeUndefined();
    o.markCheckpointed(4n);
    expect(o.checkpointDue()).toBeUndefined();
    expect(o.pendingCommit()).toBe(4n);
    o.markCommitted(4n);
    expect(o.pendingCommit()).toBeUndefined();
    o.holdAt(undefined);
    expect(o.checkpointDue()).toBe(10n);
    // A checkpoint that failed leaves the commit where it was.
    expect(o.pendingCommit()).toBeUndefined();
    o.markCheckpointed(10n);
    expect(o.pendingCommit()).toBe(10n);
  });
});
