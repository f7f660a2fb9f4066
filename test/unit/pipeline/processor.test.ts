import { describe, expect, it } from 'vitest';
import { RetriableError, SpanledgerError } from '../../../src/errors.js';
import { RecordingProcessor, deferred, eventually, failingFirst, metric, records, settleFor, startPipeline } from './fixtures.js';

/** Ticks far apart unless a test wants them: they would only add noise to the call log. */
const NO_TICKS = 60_000;

describe('pipeline with a partition processor (rule worker)', () => {
  it('applies the valid items of all tenants in (offset, index) order, syncs, dead-letters, then commits', async () => {
    const processor = new RecordingProcessor();
    const h = await startPipeline({ processor, tickIntervalMs: NO_TICKS });
    h.consumer.append(0, records('a:1,b:1', 'b:2', 'bad', 'a:3,c:1,a:4'));
    h.consumer.assign([0]);
    await h.consumer.deliver(0);
    await eventually(() => expect(h.consumer.committedOffsets(0)).toEqual([4]));
    expect(processor.calls).toEqual(['start', 'open 0', 'apply 0 0.0 0.1 1.0 3.0 3.1 3.2 last=3', 'sync 0', 'beforeCommit 0 4']);
    expect(processor.applied[0]!.items.map((i) => `${i.tenantId}:${i.value}`)).toEqual(['a:1', 'b:1', 'b:2', 'a:3', 'c:1', 'a:4']);
    expect(h.deadLetters.sent.map((l) => [l.source.offset, l.stage])).toEqual([[2n, 'DECODE']]);
    await h.stop(1_000);
  });

  it('merges flushes queued behind a busy one into one apply, still in order', async () => {
    const processor = new RecordingProcessor();
    const syncing = deferred();
    processor.onSync = () => syncing.promise;
    const h = await startPipeline({ processor, tickIntervalMs: NO_TICKS });
    h.consumer.assign([0]);
    h.consumer.append(0, records('a:1'));
    await h.consumer.deliver(0);
    await eventually(() => expect(processor.applied).toHaveLength(1));
    h.consumer.append(0, records('b:1'));
    await h.consumer.deliver(0);
    h.consumer.append(0, records('a:2,b:2'));
    await h.consumer.deliver(0);
    await settleFor();
    processor.onSync = () => {};
    syncing.resolve();
    await eventually(() => expect(h.consumer.committedOffsets(0).at(-1)).toBe(3));
    expect(processor.calls.filter((c) => c.startsWith('apply'))).toEqual(['apply 0 0.0 last=0', 'apply 0 1.0 2.0 2.1 last=2']);
    await h.stop(1_000);
  });

  it('applies a flush once even when its sync is retried, and commits nothing until the sync succeeded', async () => {
    const processor = new RecordingProcessor();
    const failing = failingFirst(2);
    processor.onSync = failing.hook;
    const h = await startPipeline({ processor, tickIntervalMs: NO_TICKS });
    h.consumer.onCommit = () => {
      expect(failing.failures()).toBe(2);
    };
    h.consumer.assign([0]);
    h.consumer.append(0, records('a:1', 'a:2'));
    await h.consumer.deliver(0);
    await eventually(() => expect(h.consumer.committedOffsets(0)).toEqual([2]));
    expect(processor.applied).toHaveLength(1);
    expect(processor.calls.filter((c) => c === 'sync 0')).toHaveLength(3);
    await h.stop(1_000);
  });

  it('stops the worker when a sync fails for good, without committing', async () => {
    const processor = new RecordingProcessor();
    processor.onSync = () => {
      throw new SpanledgerError('signals topic not authorized', { retriable: false });
    };
    const h = await startPipeline({ processor, tickIntervalMs: NO_TICKS });
    h.consumer.assign([0]);
    h.consumer.append(0, records('a:1'));
    await h.consumer.deliver(0);
    await eventually(() => expect(h.fatal.map((e) => e.message)).toEqual(['signals topic not authorized']));
    expect(h.consumer.commits).toEqual([]);
    await h.stop(1_000);
  });

  it('commits min(durable offset, committable offset), never backwards', async () => {
    const processor = new RecordingProcessor();
    let restartFrom: bigint | undefined = 2n;
    processor.committable = () => restartFrom;
    const h = await startPipeline({ processor, tickIntervalMs: NO_TICKS });
    h.consumer.assign([0]);
    h.consumer.append(0, records('a:1', 'a:2', 'a:3', 'a:4', 'a:5'));
    await h.consumer.deliver(0);
    await eventually(() => expect(h.consumer.committedOffsets(0)).toEqual([2]));
    // Beyond what is durable: the durable offset wins.
    restartFrom = 100n;
    h.consumer.append(0, records('a:6'));
    await h.consumer.deliver(0);
    await eventually(() => expect(h.consumer.committedOffsets(0)).toEqual([2, 6]));
    // Lower than what Kafka already has: no commit.
    restartFrom = 3n;
    h.consumer.append(0, records('a:7'));
    await h.consumer.deliver(0);
    await eventually(() => expect(processor.applied).toHaveLength(3));
    await settleFor();
    expect(h.consumer.committedOffsets(0)).toEqual([2, 6]);
    expect(processor.calls.filter((c) => c.startsWith('beforeCommit'))).toEqual(['beforeCommit 0 2', 'beforeCommit 0 6']);
    await h.stop(1_000);
  });

  it('awaits beforeCommit before the commit, and a throwing beforeCommit skips that commit until the next flush', async () => {
    const processor = new RecordingProcessor();
    const checkpointing = deferred();
    processor.onBeforeCommit = () => checkpointing.promise;
    const h = await startPipeline({ processor, tickIntervalMs: NO_TICKS });
    h.consumer.assign([0]);
    h.consumer.append(0, records('a:1'));
    await h.consumer.deliver(0);
    await eventually(() => expect(processor.calls).toContain('beforeCommit 0 1'));
    await settleFor();
    expect(h.consumer.commits).toEqual([]);
    checkpointing.resolve();
    await eventually(() => expect(h.consumer.committedOffsets(0)).toEqual([1]));

    processor.onBeforeCommit = () => {
      throw new Error('disk full');
    };
    h.consumer.append(0, records('a:2'));
    await h.consumer.deliver(0);
    await eventually(() => expect(processor.calls).toContain('beforeCommit 0 2'));
    await settleFor();
    expect(h.consumer.committedOffsets(0)).toEqual([1]);
    expect(await metric(h.registry, 'spanledger_commit_failures_total')).toBe(1);

    processor.onBeforeCommit = () => {};
    h.consumer.append(0, records('a:3'));
    await h.consumer.deliver(0);
    await eventually(() => expect(h.consumer.committedOffsets(0)).toEqual([1, 3]));
    expect(processor.calls.filter((c) => c.startsWith('beforeCommit'))).toEqual(['beforeCommit 0 1', 'beforeCommit 0 2', 'beforeCommit 0 3']);
    await h.stop(1_000);
  });

  it('ticks each assigned partition in its chain, not while a flush is under way, and commits what a tick released', async () => {
    const processor = new RecordingProcessor();
    let restartFrom: bigint | undefined = 1n;
    processor.committable = () => restartFrom;
    const h = await startPipeline({ processor, tickIntervalMs: 5 });
    h.consumer.assign([0]);
    await eventually(() => expect(processor.calls).toContain('tick 0'));
    h.consumer.append(0, records('a:1', 'a:2', 'a:3'));
    const syncing = deferred();
    // Only the flush's sync hangs (a tick's sync may come first).
    processor.onSync = () => (processor.calls.at(-2)?.startsWith('apply') ? syncing.promise : undefined);
    await h.consumer.deliver(0);
    await eventually(() => expect(processor.calls.slice(-2)).toEqual(['apply 0 0.0 1.0 2.0 last=2', 'sync 0']));
    const syncAt = processor.calls.length;
    await settleFor(40);
    // The flush's sync hangs: no tick in between.
    expect(processor.calls.length).toBe(syncAt);
    processor.onSync = () => {};
    syncing.resolve();
    await eventually(() => expect(h.consumer.committedOffsets(0)).toEqual([1]));
    // The open work closes on a tick: the next tick's sync lets the commit reach the durable offset.
    restartFrom = undefined;
    await eventually(() => expect(h.consumer.committedOffsets(0)).toEqual([1, 3]));
    const calls = processor.calls;
    const last = calls.lastIndexOf('beforeCommit 0 3');
    expect(calls.slice(last - 2, last + 1)).toEqual(['tick 0', 'sync 0', 'beforeCommit 0 3']);
    expect(calls.indexOf('apply 0 0.0 1.0 2.0 last=2')).toBeGreaterThan(calls.indexOf('tick 0'));
    await h.stop(1_000);
    const stoppedAt = calls.length;
    await settleFor(30);
    expect(calls.length).toBe(stoppedAt);
  });

  it('opens a partition before its first apply, retrying a RetriableError', async () => {
    const processor = new RecordingProcessor();
    const opening = deferred();
    let failures = 0;
    processor.onOpen = async () => {
      if (failures === 0) {
        failures += 1;
        throw new RetriableError('checkpoint store unreachable');
      }
      await opening.promise;
    };
    const h = await startPipeline({ processor, tickIntervalMs: NO_TICKS });
    h.consumer.assign([0]);
    h.consumer.append(0, records('a:1'));
    await h.consumer.deliver(0);
    await eventually(() => expect(processor.calls.filter((c) => c === 'open 0')).toHaveLength(2));
    await settleFor();
    expect(processor.applied).toEqual([]);
    opening.resolve();
    await eventually(() => expect(h.consumer.committedOffsets(0)).toEqual([1]));
    expect(processor.calls.slice(1, 4)).toEqual(['open 0', 'open 0', 'apply 0 0.0 last=0']);
    await h.stop(1_000);
  });

  it('stops the worker when openPartition fails with anything but a RetriableError', async () => {
    const processor = new RecordingProcessor();
    processor.onOpen = () => {
      throw new Error('checkpoint is corrupt');
    };
    const h = await startPipeline({ processor, tickIntervalMs: NO_TICKS });
    h.consumer.assign([0]);
    h.consumer.append(0, records('a:1'));
    await h.consumer.deliver(0);
    await eventually(() => expect(h.fatal.map((e) => e.message)).toEqual(['checkpoint is corrupt']));
    await settleFor();
    expect(processor.applied).toEqual([]);
    expect(h.consumer.commits).toEqual([]);
    await h.stop(1_000);
  });

  it('releases a revoked partition after its flush settled, and opens it again only after the release', async () => {
    const processor = new RecordingProcessor();
    const h = await startPipeline({ processor, tickIntervalMs: NO_TICKS });
    h.consumer.assign([0, 1]);
    h.consumer.append(0, records('a:1'));
    await h.consumer.deliver(0);
    await eventually(() => expect(h.consumer.committedOffsets(0)).toEqual([1]));
    h.consumer.rebalance([1]);
    h.consumer.rebalance([0, 1]);
    await eventually(() => expect(processor.calls.filter((c) => c === 'open 0')).toHaveLength(2));
    const calls = processor.calls;
    expect(calls.indexOf('release 0')).toBeGreaterThan(calls.indexOf('beforeCommit 0 1'));
    expect(calls.lastIndexOf('open 0')).toBeGreaterThan(calls.indexOf('release 0'));
    expect(calls).not.toContain('release 1');
    await h.stop(1_000);
    expect(calls.slice(-3).sort()).toEqual(['close', 'release 0', 'release 1'].sort());
    expect(calls.at(-1)).toBe('close');
  });

  it('graceful stop applies what is buffered, syncs, checkpoints and commits it', async () => {
    const processor = new RecordingProcessor();
    const h = await startPipeline({ processor, tickIntervalMs: NO_TICKS }, { flushWhenCaughtUp: false });
    h.consumer.assign([0]);
    h.consumer.append(0, records('a:1', 'b:1'));
    await h.consumer.deliver(0);
    await settleFor();
    expect(processor.applied).toEqual([]);
    expect(await h.stop(1_000)).toBe(true);
    expect(h.consumer.committedOffsets(0)).toEqual([2]);
    expect(processor.calls).toEqual(['start', 'open 0', 'apply 0 0.0 1.0 last=1', 'sync 0', 'beforeCommit 0 2', 'release 0', 'close']);
  });
});
