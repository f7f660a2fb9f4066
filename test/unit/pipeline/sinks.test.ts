import { describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { RecordRejectedError, SpanledgerError } from '../../../src/errors.js';
import { validateStages } from '../../../src/pipeline/types.js';
import { RecordingSink, TOPIC, deferred, eventually, failingFirst, metric, records, settleFor, startPipeline } from './fixtures.js';

describe('pipeline with sinks (span and signal workers)', () => {
  it('gives each sink its tenant batches in offset order, then commits after the last record', async () => {
    const first = new RecordingSink('first');
    const second = new RecordingSink('second');
    const h = await startPipeline({ sinks: [first, second] });
    h.consumer.append(0, records('a:1', 'b:1', 'a:2,b:2', 'a:3'));
    h.consumer.append(1, records('c:1'));
    h.consumer.assign([0, 1]);
    await h.consumer.deliver(0);
    await h.consumer.deliver(1);
    await eventually(() => expect(h.consumer.committedOffset(0)).toBe(4));
    await eventually(() => expect(h.consumer.committedOffset(1)).toBe(1));
    for (const sink of [first, second]) {
      expect(sink.stored('a')).toEqual(['1', '2', '3']);
      expect(sink.stored('b')).toEqual(['1', '2']);
      expect(sink.stored('c')).toEqual(['1']);
    }
    const a = first.writes.find((w) => w.tenantId === 'a')!;
    expect(a.partition).toBe(0);
    expect(a.positions.map((p) => [p.offset, p.index])).toEqual([
      [0n, 0],
      [2n, 0],
      [3n, 0],
    ]);
    expect(first.syncs).toBeGreaterThan(0);
    expect(h.consumer.subscribed).toEqual({ topic: TOPIC, fromBeginning: true });
    expect(h.pipeline.ready()).toBe(true);
    expect(await h.stop(1_000)).toBe(true);
  });

  it('commits only once every sink stored the flush and the dead-letter topic acknowledged it', async () => {
    const first = new RecordingSink('first');
    const second = new RecordingSink('second');
    const storing = deferred();
    second.onWrite = () => storing.promise;
    const h = await startPipeline({ sinks: [first, second] });
    const acking = deferred();
    h.deadLetters.onSend = () => acking.promise;
    h.consumer.append(0, records('a:1', 'bad', 'a:2'));
    h.consumer.assign([0]);
    await h.consumer.deliver(0);
    await eventually(() => expect(first.writes).toHaveLength(1));
    await settleFor();
    expect(h.consumer.commits).toEqual([]);
    storing.resolve();
    await eventually(() => expect(second.writes).toHaveLength(1));
    await settleFor();
    expect(h.consumer.commits).toEqual([]);
    acking.resolve();
    await eventually(() => expect(h.consumer.committedOffsets(0)).toEqual([3]));
    expect(h.deadLetters.sent.map((l) => [l.source.offset, l.stage, l.error.errorClass])).toEqual([[1n, 'DECODE', 'InvalidJson']]);
    await h.stop(1_000);
  });

  it('dead-letters a record a sink refuses and does not give it to the next sink', async () => {
    const first = new RecordingSink('first');
    const second = new RecordingSink('second');
    first.onWrite = (_tenant, values) => ({ rejected: new Map(values.flatMap((v, i) => (v === 'x' ? [[i, new RecordRejectedError('Conflict', 'stored differently')] as const] : []))) });
    const h = await startPipeline({ sinks: [first, second] });
    h.consumer.append(0, records('a:1', 'a:x', 'a:2'));
    h.consumer.assign([0]);
    await h.consumer.deliver(0);
    await eventually(() => expect(h.consumer.committedOffsets(0)).toEqual([3]));
    expect(second.stored('a')).toEqual(['1', '2']);
    expect(h.deadLetters.sent.map((l) => [l.source.offset, l.stage, l.error.errorClass])).toEqual([[1n, 'first', 'Conflict']]);
    expect(await metric(h.registry, 'spanledger_records_dead_lettered_total')).toBe(1);
    await h.stop(1_000);
  });

  it('keeps one commit in flight per partition, coalesces requests meanwhile, and never goes backwards', async () => {
    const sink = new RecordingSink();
    const h = await startPipeline({ sinks: [sink] });
    const firstCommit = deferred();
    let inFlight = 0;
    let most = 0;
    h.consumer.onCommit = async (c) => {
      inFlight += 1;
      most = Math.max(most, inFlight);
      if (c.offset === 2n) await firstCommit.promise;
      inFlight -= 1;
    };
    h.consumer.assign([0]);
    h.consumer.append(0, records('a:1', 'a:2'));
    await h.consumer.deliver(0);
    await eventually(() => expect(inFlight).toBe(1));
    for (const value of ['a:3', 'a:4', 'a:5']) {
      h.consumer.append(0, records(value));
      await h.consumer.deliver(0);
      await eventually(() => expect(sink.stored('a')).toContain(value.slice(2)));
    }
    await settleFor();
    expect(h.consumer.commits).toEqual([]);
    firstCommit.resolve();
    await eventually(() => expect(h.consumer.committedOffsets(0)).toEqual([2, 5]));
    expect(most).toBe(1);
    await h.stop(1_000);
  });

  it('retries a refused commit at the next flush and at the next assignment', async () => {
    const sink = new RecordingSink();
    const h = await startPipeline({ sinks: [sink] });
    let refuse = true;
    h.consumer.onCommit = () => {
      if (refuse) throw new Error('REBALANCE_IN_PROGRESS');
    };
    h.consumer.assign([0]);
    h.consumer.append(0, records('a:1'));
    await h.consumer.deliver(0);
    await eventually(async () => expect(await metric(h.registry, 'spanledger_commit_failures_total')).toBe(1));
    h.consumer.append(0, records('a:2'));
    await h.consumer.deliver(0);
    await eventually(async () => expect(await metric(h.registry, 'spanledger_commit_failures_total')).toBe(2));
    expect(h.consumer.commits).toEqual([]);
    refuse = false;
    h.consumer.rebalance([0]);
    await eventually(() => expect(h.consumer.committedOffsets(0)).toEqual([2]));
    await h.stop(1_000);
  });

  it('retries a sink that fails transiently and commits nothing meanwhile', async () => {
    const sink = new RecordingSink();
    const failing = failingFirst(2);
    sink.onWrite = failing.hook;
    const h = await startPipeline({ sinks: [sink] });
    h.consumer.onCommit = () => {
      expect(failing.failures()).toBe(2);
    };
    h.consumer.assign([0]);
    h.consumer.append(0, records('a:1', 'a:2'));
    await h.consumer.deliver(0);
    await eventually(() => expect(h.consumer.committedOffsets(0)).toEqual([2]));
    expect(sink.stored('a')).toEqual(['1', '2']);
    expect(await metric(h.registry, 'spanledger_sink_retries_total')).toBe(2);
    expect(h.fatal).toEqual([]);
    await h.stop(1_000);
  });

  it('stops the worker on a non-retriable failure and commits nothing past it', async () => {
    const sink = new RecordingSink();
    const h = await startPipeline({ sinks: [sink] });
    h.consumer.assign([0]);
    h.consumer.append(0, records('a:1'));
    await h.consumer.deliver(0);
    await eventually(() => expect(h.consumer.committedOffsets(0)).toEqual([1]));
    sink.onWrite = () => {
      throw new SpanledgerError('table is read-only', { retriable: false });
    };
    h.consumer.append(0, records('a:2'));
    await h.consumer.deliver(0);
    await eventually(() => expect(h.fatal.map((e) => e.message)).toEqual(['table is read-only']));
    sink.onWrite = () => {};
    h.consumer.append(0, records('a:3'));
    await h.consumer.deliver(0);
    await settleFor();
    expect(h.consumer.committedOffsets(0)).toEqual([1]);
    expect(h.pipeline.healthy()).toBe(false);
    expect(await h.stop(1_000)).toBe(false);
  });

  it('releases a partition revoked while a sink write hangs within shutdownTimeoutMs, commits nothing after, and waits for the release before taking it back', async () => {
    const sink = new RecordingSink();
    const hanging = deferred();
    sink.onWrite = () => hanging.promise;
    const h = await startPipeline({ sinks: [sink] }, { shutdownTimeoutMs: 100 });
    h.consumer.assign([0, 1]);
    h.consumer.append(0, records('a:1', 'a:2'));
    await h.consumer.deliver(0);
    await eventually(() => expect(h.pipeline['partitions'].pipes.get(0)?.pending).toBe(1));
    const revokedAt = Date.now();
    h.consumer.rebalance([1]);
    // Back at once: the new pipeline takes nothing before the old one is released.
    h.consumer.rebalance([0, 1]);
    sink.onWrite = () => {};
    const delivering = h.consumer.deliver(0);
    await eventually(() => expect(sink.released).toEqual([0]));
    expect(Date.now() - revokedAt).toBeGreaterThanOrEqual(90);
    expect(Date.now() - revokedAt).toBeLessThan(1_000);
    await delivering;
    hanging.resolve();
    await eventually(() => expect(h.consumer.committedOffsets(0)).toEqual([2]));
    // The hung write finished after the release: it was not committed (only the re-read was).
    expect(sink.events.indexOf('release 0')).toBeLessThan(sink.events.indexOf('write a 1 2'));
    await settleFor();
    expect(h.consumer.committedOffsets(0)).toEqual([2]);
    await h.stop(1_000);
  });

  it('drops what a revoked partition buffered and commits none of it', async () => {
    const sink = new RecordingSink();
    const hanging = deferred();
    sink.onWrite = () => hanging.promise;
    const h = await startPipeline({ sinks: [sink] }, { shutdownTimeoutMs: 50 });
    h.consumer.assign([0]);
    h.consumer.append(0, records('a:1'));
    await h.consumer.deliver(0);
    await eventually(() => expect(h.pipeline['partitions'].pipes.get(0)?.pending).toBe(1));
    h.consumer.rebalance([]);
    await eventually(() => expect(sink.released).toEqual([0]));
    hanging.resolve();
    await settleFor();
    expect(h.consumer.commits).toEqual([]);
    expect(await metric(h.registry, 'spanledger_assigned_partitions')).toBe(0);
    await h.stop(1_000);
  });

  it('pauses fetching when the in-flight budget is spent and resumes once flushes made room', async () => {
    const sink = new RecordingSink();
    const writing = deferred();
    sink.onWrite = () => writing.promise;
    // Each record is about 128 + 100 bytes: ten of them are over the budget.
    const h = await startPipeline({ sinks: [sink] }, { maxInFlightBytes: 2_000 });
    h.consumer.assign([0]);
    h.consumer.append(0, records(...Array.from({ length: 12 }, (_, i) => `a:${String(i).padStart(98, '0')}`)));
    const delivering = h.consumer.deliver(0);
    await eventually(() => expect(h.consumer.pauses).toEqual(['all']));
    expect(await metric(h.registry, 'spanledger_fetch_paused')).toBe(1);
    expect(h.consumer.resumes).toEqual([]);
    writing.resolve();
    await eventually(() => expect(h.consumer.resumes).toEqual(['all']));
    await delivering;
    await eventually(() => expect(h.consumer.committedOffsets(0).at(-1)).toBe(12));
    expect(sink.stored('a')).toHaveLength(12);
    expect(await metric(h.registry, 'spanledger_fetch_paused')).toBe(0);
    expect(await metric(h.registry, 'spanledger_fetch_pauses_total')).toBe(1);
    await h.stop(1_000);
  });

  it('skips records Kafka delivers again after a rebalance', async () => {
    const sink = new RecordingSink();
    const h = await startPipeline({ sinks: [sink] }, { flushWhenCaughtUp: false });
    h.consumer.assign([0]);
    h.consumer.append(0, records('a:1', 'a:2'));
    await h.consumer.deliver(0);
    // Nothing committed yet: the member keeps the partition and fetches it again from 0.
    h.consumer.rebalance([0]);
    await h.consumer.deliver(0);
    expect(await metric(h.registry, 'spanledger_records_redelivered_skipped_total')).toBe(2);
    expect(await h.stop(1_000)).toBe(true);
    expect(sink.stored('a')).toEqual(['1', '2']);
  });

  it('with caughtUpFlushIntervalMs, cuts a caught-up partition at once, then at most once per interval (the limits in between)', async () => {
    const sink = new RecordingSink();
    const h = await startPipeline({ sinks: [sink] }, { flushWhenCaughtUp: false, caughtUpFlushIntervalMs: 400, limits: { maxRecords: 3, maxBytes: 64 << 20, maxAgeMs: 60_000 } });
    h.consumer.assign([0]);
    // A backlog: cut at the record limit, and its partial tail at once when caught up.
    h.consumer.append(0, records('a:1', 'a:2', 'a:3', 'a:4'));
    await h.consumer.deliver(0);
    await eventually(() => expect(h.consumer.committedOffsets(0).at(-1)).toBe(4));
    // Caught up again within the interval: the record waits (for the age limit, or the interval).
    h.consumer.append(0, records('a:5'));
    await h.consumer.deliver(0);
    await settleFor(100);
    expect(sink.stored('a')).toEqual(['1', '2', '3', '4']);
    // After the interval, the next time it catches up the partition is cut again.
    await sleep(400);
    h.consumer.append(0, records('a:6'));
    await h.consumer.deliver(0);
    await eventually(() => expect(h.consumer.committedOffsets(0).at(-1)).toBe(6));
    expect(sink.stored('a')).toEqual(['1', '2', '3', '4', '5', '6']);
    expect(await h.stop(1_000)).toBe(true);
  });

  it('graceful stop flushes what is buffered, commits it, leaves the group and closes the stages', async () => {
    const sink = new RecordingSink();
    const h = await startPipeline({ sinks: [sink] }, { flushWhenCaughtUp: false });
    h.consumer.assign([0]);
    h.consumer.append(0, records('a:1', 'b:1'));
    await h.consumer.deliver(0);
    await settleFor();
    expect(sink.writes).toEqual([]);
    expect(await h.stop(1_000)).toBe(true);
    expect(h.consumer.committedOffsets(0)).toEqual([2]);
    expect(h.consumer.connected).toBe(false);
    expect(sink.closed).toBe(true);
    expect(h.deadLetters.closed).toBe(true);
    expect(h.pipeline.ready()).toBe(false);
  });

  it('pauses a partition at a batch that cannot be decompressed, after taking the records before it', async () => {
    const sink = new RecordingSink();
    const h = await startPipeline({ sinks: [sink] });
    h.consumer.assign([0, 1]);
    h.consumer.append(0, records('a:1'));
    await h.consumer.deliver(0, { undecodable: 'zstd: corrupt frame' });
    expect(h.consumer.pauses).toEqual([[0]]);
    expect(h.pipeline.stuckPartitions()).toEqual([`partition ${TOPIC}/0 stuck: zstd: corrupt frame`]);
    await eventually(() => expect(h.consumer.committedOffsets(0)).toEqual([1]));
    expect(await metric(h.registry, 'spanledger_partition_stuck')).toBe(1);
    // The partition goes elsewhere: it is no longer reported, and fetched again if it comes back.
    h.consumer.rebalance([1]);
    expect(h.pipeline.stuckPartitions()).toEqual([]);
    expect(h.consumer.resumes).toEqual([[0]]);
    await h.stop(1_000);
  });

  it('reports a consumer crash without restart as fatal', async () => {
    const h = await startPipeline({ sinks: [new RecordingSink()] });
    h.consumer.crash(new Error('restart in progress'), true);
    expect(h.fatal).toEqual([]);
    h.consumer.crash(new Error('gone'), false);
    expect(h.fatal.map((e) => e.message)).toEqual(['gone']);
    expect(h.pipeline.healthy()).toBe(false);
    await h.stop(1_000);
  });

  it('takes either sinks or a processor with a tick interval', () => {
    const sink = new RecordingSink();
    const processor = { name: 'p' } as never;
    expect(() => validateStages({ sinks: [sink] })).not.toThrow();
    expect(() => validateStages({ processor, tickIntervalMs: 1_000 })).not.toThrow();
    expect(() => validateStages({ sinks: [sink], processor, tickIntervalMs: 1_000 } as never)).toThrow(/not both/);
    expect(() => validateStages({} as never)).toThrow(/not both or neither/);
    expect(() => validateStages({ processor, tickIntervalMs: 0 })).toThrow(/tickIntervalMs/);
    expect(() => validateStages({ processor } as never)).toThrow(/tickIntervalMs/);
    expect(() => validateStages({ sinks: [sink], tickIntervalMs: 5 } as never)).toThrow(/goes with a processor/);
  });
});
