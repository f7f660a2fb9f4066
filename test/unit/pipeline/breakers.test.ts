import { createRequire } from 'node:module';
import type { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { LocalWaitError, RecordRejectedError, RetriableError } from '../../../src/errors.js';
import { FetchPauses } from '../../../src/pipeline/fetch-pauses.js';
import { WorkerMetrics } from '../../../src/observability/metrics.js';
import type { GroupConsumer } from '../../../src/pipeline/consumer-port.js';
import { RecordingProcessor, RecordingSink, deferred, eventually, records, settleFor, startPipeline } from './fixtures.js';
import { Registry as PromRegistry } from 'prom-client';

/** Opens after 3 calls in a 2 s window of which more than half failed; probes after 300 ms. */
const BREAKERS = { failureRate: 0.5, windowMs: 2_000, minCalls: 3, halfOpenAfterMs: 300 };

/** A metric's value for the label set containing `labels`. */
async function valueOf(registry: Registry, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  const sample = m?.values.find((v) => Object.entries(labels).every(([k, value]) => v.labels[k] === value));
  return sample === undefined ? undefined : Number(sample.value);
}

/** A sink that fails with a RetriableError while `down`, counting the calls that reached it. */
function flakySink(name: string): { sink: RecordingSink; calls: () => number; setDown: (down: boolean) => void } {
  const sink = new RecordingSink(name);
  let down = true;
  let calls = 0;
  sink.onWrite = () => {
    calls += 1;
    if (down) throw new RetriableError(`${name} unreachable`);
  };
  return { sink, calls: () => calls, setDown: (d) => (down = d) };
}

describe('circuit breakers per store', () => {
  it('open on retriable failures: the partitions stop fetching, the flush waits for the probe, nothing is dead-lettered or committed; the probe closes it and everything is stored once', async () => {
    const tb = flakySink('tigerbeetle');
    const h = await startPipeline({ sinks: [tb.sink] }, { breakers: BREAKERS });
    h.consumer.append(0, records('a:1', 'a:2'));
    h.consumer.append(1, records('b:1'));
    h.consumer.assign([0, 1]);
    await h.consumer.deliver(0);
    await h.consumer.deliver(1);

    await eventually(() => expect(h.pipeline.breakerStates().find((b) => b.store === 'tigerbeetle')?.state).toBe('open'));
    await eventually(() => expect([h.consumer.isPaused(0), h.consumer.isPaused(1)]).toEqual([true, true]));
    const callsWhenOpened = tb.calls();
    await settleFor(150);
    // Waiting for the probe, not retrying against a store known to be down.
    expect(tb.calls()).toBe(callsWhenOpened);
    expect(h.pipeline.breakerStates().map((b) => b.store)).toEqual(['tigerbeetle', 'dead_letter']);
    const open = h.pipeline.breakerStates()[0]!;
    expect(open.nextProbeAt!.getTime() - open.since.getTime()).toBe(BREAKERS.halfOpenAfterMs);
    expect(h.pipeline.degraded()).toEqual([expect.stringMatching(/^breaker open: tigerbeetle since \d{4}-\d\d-\d\dT[\d:.]+Z, next probe in [01] s$/)]);
    expect(await valueOf(h.registry, 'spanledger_breaker_state', { store: 'tigerbeetle' })).toBe(2);
    expect(await valueOf(h.registry, 'spanledger_breaker_state', { store: 'dead_letter' })).toBe(0);
    expect(await valueOf(h.registry, 'spanledger_partitions_paused', { reason: 'breaker' })).toBe(2);
    expect(h.consumer.commits).toEqual([]);
    expect(h.deadLetters.sent).toEqual([]);

    tb.setDown(false);
    await eventually(() => expect([h.consumer.committedOffset(0), h.consumer.committedOffset(1)]).toEqual([2, 1]), 3_000);
    expect(tb.sink.stored('a')).toEqual(['1', '2']);
    expect(tb.sink.stored('b')).toEqual(['1']);
    expect(h.pipeline.breakerStates()[0]!.state).toBe('closed');
    expect(h.pipeline.degraded()).toEqual([]);
    expect([h.consumer.isPaused(0), h.consumer.isPaused(1)]).toEqual([false, false]);
    expect(await valueOf(h.registry, 'spanledger_partitions_paused', { reason: 'breaker' })).toBe(0);
    for (const to of ['open', 'half_open', 'closed']) expect(await valueOf(h.registry, 'spanledger_breaker_transitions_total', { store: 'tigerbeetle', to })).toBe(1);
    expect(await valueOf(h.registry, 'spanledger_breaker_state_seconds_total', { store: 'tigerbeetle', state: 'open' })).toBeGreaterThanOrEqual(0.25);
    expect(h.deadLetters.sent).toEqual([]);
    await h.stop(1_000);
  });

  it('a failed probe opens the breaker again for another half-open delay', async () => {
    const duck = flakySink('duckdb');
    const h = await startPipeline({ sinks: [duck.sink] }, { breakers: BREAKERS });
    h.consumer.append(0, records('a:1'));
    h.consumer.assign([0]);
    await h.consumer.deliver(0);
    await eventually(() => expect(h.pipeline.breakerStates()[0]!.state).toBe('open'));
    await eventually(async () => expect(await valueOf(h.registry, 'spanledger_breaker_transitions_total', { store: 'duckdb', to: 'open' })).toBe(2), 2_000);
    expect(await valueOf(h.registry, 'spanledger_breaker_transitions_total', { store: 'duckdb', to: 'half_open' })).toBe(1);
    expect(h.consumer.isPaused(0)).toBe(true);
    duck.setDown(false);
    await eventually(() => expect(h.consumer.committedOffset(0)).toBe(1), 3_000);
    expect(duck.sink.stored('a')).toEqual(['1']);
    expect(h.consumer.isPaused(0)).toBe(false);
    await h.stop(1_000);
  });

  it('records a store refuses for good are dead-lettered and do not count as store failures', async () => {
    const sink = new RecordingSink('duckdb');
    sink.onWrite = (_tenant, values) => ({ rejected: new Map(values.map((_, i) => [i, new RecordRejectedError('DuckDbRowRejected', 'no')] as const)) });
    const h = await startPipeline({ sinks: [sink] }, { breakers: BREAKERS });
    const partitions = [0, 1, 2, 3, 4];
    for (const p of partitions) h.consumer.append(p, records(`t${p}:1`));
    h.consumer.assign(partitions);
    for (const p of partitions) await h.consumer.deliver(p);
    await eventually(() => expect(partitions.map((p) => h.consumer.committedOffset(p))).toEqual([1, 1, 1, 1, 1]));
    expect(h.deadLetters.sent).toHaveLength(5);
    expect(h.pipeline.breakerStates().every((b) => b.state === 'closed')).toBe(true);
    expect(await valueOf(h.registry, 'spanledger_breaker_transitions_total', { store: 'duckdb', to: 'open' })).toBe(0);
    await h.stop(1_000);
  });

  it('waits inside the worker (LocalWaitError: its own pool or queue) are retried but never open the breaker', async () => {
    const sink = new RecordingSink('duckdb');
    let waits = 0;
    sink.onWrite = () => {
      if (waits < 6) {
        waits += 1;
        throw new LocalWaitError('no DuckDB connection within 60000 ms (all 4 busy)');
      }
    };
    const h = await startPipeline({ sinks: [sink] }, { breakers: BREAKERS, retryMaxDelayMs: 20 });
    const partitions = [0, 1, 2];
    for (const p of partitions) h.consumer.append(p, records(`t${p}:1`));
    h.consumer.assign(partitions);
    for (const p of partitions) await h.consumer.deliver(p);
    await eventually(() => expect(partitions.map((p) => h.consumer.committedOffset(p))).toEqual([1, 1, 1]));
    expect(waits).toBe(6); // every call failed at first: a store failing like this would have opened it
    expect(h.deadLetters.sent).toHaveLength(0);
    expect(await valueOf(h.registry, 'spanledger_breaker_transitions_total', { store: 'duckdb', to: 'open' })).toBe(0);
    await h.stop(1_000);
  });

  it('the dead-letter producer has its own breaker: letters wait for its probe, nothing is committed past them', async () => {
    const sink = new RecordingSink('spanlog');
    const h = await startPipeline({ sinks: [sink] }, { breakers: BREAKERS });
    let down = true;
    h.deadLetters.onSend = () => {
      if (down) throw new RetriableError('dead-letter topic did not acknowledge');
    };
    h.consumer.append(0, records('a:1', 'bad', 'a:2'));
    h.consumer.assign([0]);
    await h.consumer.deliver(0);
    await eventually(() => expect(h.pipeline.breakerStates().find((b) => b.store === 'dead_letter')?.state).toBe('open'));
    expect(h.pipeline.breakerStates().find((b) => b.store === 'spanlog')?.state).toBe('closed');
    await eventually(() => expect(h.consumer.isPaused(0)).toBe(true));
    expect(h.consumer.commits).toEqual([]);
    down = false;
    await eventually(() => expect(h.consumer.committedOffset(0)).toBe(3), 3_000);
    expect(h.deadLetters.sent.map((l) => l.source.offset)).toEqual([1n]);
    expect(h.consumer.isPaused(0)).toBe(false);
    await h.stop(1_000);
  });

  it("guards a processor's sync that has something to send with the breaker of its syncStore", async () => {
    const processor = new RecordingProcessor();
    let pending = true;
    let down = true;
    let guardedSyncs = 0;
    Object.assign(processor, { syncStore: { name: 'signals_producer', hasPending: () => pending } });
    processor.onSync = () => {
      if (!pending) return;
      guardedSyncs += 1;
      if (down) throw new RetriableError('signals topic did not acknowledge');
    };
    const h = await startPipeline({ processor, tickIntervalMs: 60_000 }, { breakers: BREAKERS });
    expect(h.pipeline.breakerStates().map((b) => b.store)).toEqual(['dead_letter', 'signals_producer']);
    h.consumer.append(0, records('a:1'));
    h.consumer.assign([0]);
    await h.consumer.deliver(0);
    await eventually(() => expect(h.pipeline.breakerStates()[1]!.state).toBe('open'));
    expect(guardedSyncs).toBe(3);
    await eventually(() => expect(h.consumer.isPaused(0)).toBe(true));
    down = false;
    await eventually(() => expect(h.pipeline.breakerStates()[1]!.state).toBe('closed'), 3_000);
    expect(guardedSyncs).toBe(4);
    expect(h.consumer.isPaused(0)).toBe(false);
    pending = false;
    await h.stop(1_000);
  });

  it('a flush waiting for an open breaker gives up when its partition is revoked, and the partition fetches again if it comes back', async () => {
    const tb = flakySink('tigerbeetle');
    const h = await startPipeline({ sinks: [tb.sink] }, { breakers: { ...BREAKERS, halfOpenAfterMs: 60_000 } });
    h.consumer.append(0, records('a:1'));
    h.consumer.assign([0]);
    await h.consumer.deliver(0);
    await eventually(() => expect(h.consumer.isPaused(0)).toBe(true));
    h.consumer.rebalance([]);
    await eventually(() => expect(tb.sink.released).toEqual([0]), 3_000);
    expect(h.consumer.isPaused(0)).toBe(false);
    expect(h.consumer.commits).toEqual([]);
    await h.stop(1_000);
  });
});

describe('backpressure marks', () => {
  it('pauses fetching above the pause mark and resumes only at or below the lower resume mark', async () => {
    const sink = new RecordingSink();
    const first = deferred();
    const second = deferred();
    sink.onWrite = (tenant) => (tenant === 'a' ? first.promise : second.promise);
    const h = await startPipeline({ sinks: [sink] }, { maxInFlightBytes: 10_000, backpressure: { pauseFraction: 0.5, resumeFraction: 0.2 } });
    expect(await valueOf(h.registry, 'spanledger_backpressure_pause_bytes', {})).toBe(5_000);
    expect(await valueOf(h.registry, 'spanledger_backpressure_resume_bytes', {})).toBe(2_000);
    // Partition 0: ~2,900 bytes (under the pause mark); partition 1's first record takes the worker past it.
    h.consumer.append(0, records(...Array.from({ length: 3 }, () => `a:${'x'.repeat(850)}`)));
    h.consumer.append(1, records(`b:${'y'.repeat(3_000)}`, 'b:2'));
    h.consumer.assign([0, 1]);
    await h.consumer.deliver(0);
    expect(h.consumer.pauses).toEqual([]);
    const delivering = h.consumer.deliver(1);
    await eventually(() => expect(h.consumer.pauses).toEqual(['all']));
    expect(await valueOf(h.registry, 'spanledger_in_flight_ratio', {})).toBeGreaterThan(0.5);
    expect(await valueOf(h.registry, 'spanledger_partitions_paused', { reason: 'backpressure' })).toBe(2);
    // Partition 0's flush is done: ~3,100 bytes are left, under the pause mark but above the resume mark.
    first.resolve();
    await eventually(() => expect(sink.stored('a')).toHaveLength(3));
    await settleFor();
    expect(h.consumer.resumes).toEqual([]);
    second.resolve();
    await eventually(() => expect(h.consumer.resumes).toEqual(['all']));
    await delivering;
    await eventually(() => expect(h.consumer.committedOffset(1)).toBe(2));
    expect(await valueOf(h.registry, 'spanledger_in_flight_ratio', {})).toBe(0);
    await h.stop(1_000);
  });

  it('bytes the consumer holds fetched ahead count against the budget: fetching pauses sooner, and the pause drops them', async () => {
    const sink = new RecordingSink();
    const written = deferred();
    sink.onWrite = () => written.promise;
    const h = await startPipeline({ sinks: [sink] }, { maxInFlightBytes: 10_000, backpressure: { pauseFraction: 0.5, resumeFraction: 0.2 } });
    // ~2,900 bytes in custody stay under the pause mark (5,000) alone (see the test above); with
    // 3,000 bytes held ahead by the consumer they do not.
    h.consumer.held = 3_000;
    h.consumer.append(0, records(...Array.from({ length: 3 }, () => `a:${'x'.repeat(850)}`)));
    h.consumer.assign([0]);
    const delivering = h.consumer.deliver(0);
    await eventually(() => expect(h.consumer.pauses).toEqual(['all']));
    expect(h.consumer.held).toBe(0);
    expect(await valueOf(h.registry, 'spanledger_bytes_in_flight_max', {})).toBeGreaterThan(5_000);
    // Without what was held, custody (above the resume mark) still keeps fetching paused until the flush.
    await settleFor();
    expect(h.consumer.resumes).toEqual([]);
    written.resolve();
    await eventually(() => expect(h.consumer.resumes).toEqual(['all']));
    await delivering;
    await eventually(() => expect(h.consumer.committedOffset(0)).toBe(3));
    expect(await valueOf(h.registry, 'spanledger_bytes_in_flight', {})).toBe(0);
    await h.stop(1_000);
  });

  it('a partition held by a breaker stays paused when backpressure resumes the topic (kafkajs pause semantics)', () => {
    // kafkajs' own subscription state: a topic-wide resume lifts partition pauses, a partition pause lifts a topic-wide one.
    const require = createRequire(import.meta.url);
    const SubscriptionState = require('kafkajs/src/consumer/subscriptionState.js') as new () => {
      assign(tp: Array<{ topic: string; partitions: number[] }>): void;
      pause(tp: Array<{ topic: string; partitions?: number[] }>): void;
      resume(tp: Array<{ topic: string; partitions?: number[] }>): void;
      isPaused(topic: string, partition: number): boolean;
    };
    const state = new SubscriptionState();
    state.assign([{ topic: 't', partitions: [0, 1, 2] }]);
    const consumer = {
      pause: (topic: string, partitions?: readonly number[]) => state.pause([{ topic, ...(partitions ? { partitions: [...partitions] } : {}) }]),
      resume: (topic: string, partitions?: readonly number[]) => state.resume([{ topic, ...(partitions ? { partitions: [...partitions] } : {}) }]),
    } as unknown as GroupConsumer;
    const pauses = new FetchPauses(consumer, 't', new WorkerMetrics(new PromRegistry()));
    const paused = () => [0, 1, 2].map((p) => state.isPaused('t', p));
    pauses.hold(1, 'breaker:tigerbeetle');
    expect(paused()).toEqual([false, true, false]);
    pauses.pauseAll();
    pauses.hold(2, 'stuck');
    expect(paused()).toEqual([true, true, true]);
    pauses.release(1, 'breaker:tigerbeetle');
    expect(paused()).toEqual([true, true, true]);
    pauses.resumeAll();
    expect(paused()).toEqual([false, false, true]);
    pauses.hold(0, 'breaker:duckdb');
    pauses.hold(0, 'breaker:tigerbeetle');
    pauses.releaseEverywhere('breaker:duckdb');
    expect(paused()).toEqual([true, false, true]);
    pauses.forget(0);
    pauses.forget(2);
    expect(paused()).toEqual([false, false, false]);
  });
});
