import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { HealthServer } from '../../../src/observability/health-server.js';
import { CounterRates, WorkerStatus, type StatusSource } from '../../../src/observability/worker-status.js';
import type { BreakerStatus as StoreBreakerStatus } from '../../../src/pipeline/breakers.js';
import { RecordingSink, deferred, eventually, records, startPipeline, type Harness } from '../pipeline/fixtures.js';

const started: Array<{ stop(): unknown }> = [];

afterEach(async () => {
  for (const s of started.splice(0)) await s.stop();
});

function statusOf(h: Harness, extra: Partial<StatusSource> = {}, clock: () => number = Date.now): WorkerStatus {
  const status = new WorkerStatus(
    { role: 'spans', group: 'g', topic: 'events', workerId: 'w-1', address: () => 'host-a:9464', snapshot: () => h.pipeline.snapshot(), ...extra },
    clock,
  );
  status.start();
  started.push(status);
  return status;
}

async function pipeline(...args: Parameters<typeof startPipeline>): Promise<Harness> {
  const h = await startPipeline(...args);
  started.push({ stop: () => h.pipeline.stop(1_000) });
  return h;
}

describe('worker status (the JSON of /status)', () => {
  it('shows each assigned partition with its committed offset, end offset, lag and commit age once drained', async () => {
    const h = await pipeline({ sinks: [new RecordingSink()] });
    const status = statusOf(h);
    h.consumer.append(0, records('a:1', 'b:1', 'a:2'));
    h.consumer.assign([0, 1]);
    await h.consumer.deliver(0);
    await eventually(() => expect(h.consumer.committedOffset(0)).toBe(3));
    const s = status.status();
    expect(s).toMatchObject({ role: 'spans', group: 'g', topic: 'events', workerId: 'w-1', address: 'host-a:9464', ready: true, healthy: true, problems: [], openTraces: null, breakers: [] });
    expect(s.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(s.partitions.map(({ lastCommitAgeSeconds, ...p }) => p)).toEqual([
      { partition: 0, committedOffset: '3', endOffset: '3', lag: '0', paused: null, stuckReason: null, bufferedRecords: 0, bufferedBytes: 0 },
      { partition: 1, committedOffset: null, endOffset: null, lag: null, paused: null, stuckReason: null, bufferedRecords: 0, bufferedBytes: 0 },
    ]);
    expect(s.partitions[0]!.lastCommitAgeSeconds).toBeGreaterThanOrEqual(0);
    expect(s.partitions[0]!.lastCommitAgeSeconds).toBeLessThan(5);
    expect(s.partitions[1]!.lastCommitAgeSeconds).toBeNull();
    expect(s.totals).toEqual({ consumed: 3, written: 3, deadLettered: 0 });
    expect(s.inFlight).toEqual({ records: 0, bytes: 0, budgetBytes: 64 << 20, maxBytesSeen: expect.any(Number) });
    expect(s.process.rssBytes).toBeGreaterThan(0);
  });

  it('counts records waiting for their flush as buffered, and dead letters in the totals', async () => {
    const sink = new RecordingSink();
    const h = await pipeline({ sinks: [sink] }, { flushWhenCaughtUp: false });
    const status = statusOf(h);
    h.consumer.append(0, records('a:1', 'bad', 'a:2'));
    h.consumer.assign([0]);
    await h.consumer.deliver(0);
    await eventually(() => expect(status.status().partitions[0]!.bufferedRecords).toBe(3));
    const buffered = status.status();
    expect(buffered.partitions[0]!.bufferedBytes).toBeGreaterThan(0);
    expect(buffered.partitions[0]!.bufferedBytes).toBe(buffered.inFlight.bytes);
    expect(buffered.partitions[0]!.lag).toBeNull();
    await h.pipeline.stop(1_000);
    const drained = status.status();
    expect(drained.totals).toEqual({ consumed: 3, written: 2, deadLettered: 1 });
    expect(drained.ready).toBe(false);
  });

  it('says why a partition is paused (stuck at an undecodable batch) and shows the breakers with ISO times', async () => {
    const h = await pipeline({ sinks: [new RecordingSink()] });
    const breakers: StoreBreakerStatus[] = [{ store: 'duckdb', state: 'open', since: new Date(1_000), nextProbeAt: new Date(2_000), lastFailure: 'lock held' }];
    const status = statusOf(h, { breakers: () => breakers });
    h.consumer.append(0, records('a:1'));
    h.consumer.assign([0, 1]);
    await h.consumer.deliver(0, { undecodable: 'zstd: corrupt frame' });
    await eventually(() => expect(status.status().partitions[0]!.paused).toBe('stuck'));
    const s = status.status();
    expect(s.partitions[0]!.stuckReason).toBe('zstd: corrupt frame');
    // Only a partition whose flush waits for an open breaker is held by it (the pipeline's breaker tests).
    expect(s.partitions[1]!.paused).toBeNull();
    expect(s.problems).toEqual(['partition events/0 stuck: zstd: corrupt frame']);
    expect(s.breakers).toEqual([{ store: 'duckdb', state: 'open', since: '1970-01-01T00:00:01.000Z', nextProbeAt: '1970-01-01T00:00:02.000Z', lastFailure: 'lock held' }]);
  });

  it('reports a partition paused by backpressure while the in-flight budget is exceeded', async () => {
    const sink = new RecordingSink();
    const held = deferred();
    sink.onWrite = () => held.promise;
    const h = await pipeline({ sinks: [sink] }, { maxInFlightBytes: 64 });
    const status = statusOf(h);
    h.consumer.append(0, records(...Array.from({ length: 20 }, (_, i) => `a:${i}`)));
    h.consumer.assign([0]);
    void h.consumer.deliver(0);
    await eventually(() => expect(status.status().partitions[0]!.paused).toBe('backpressure'));
    expect(status.status().inFlight.budgetBytes).toBe(64);
    held.resolve();
    await eventually(() => expect(status.status().partitions[0]!.paused).toBeNull());
  });

  it('takes open traces from the hook a rule worker gives, and reports before the pipeline exists', () => {
    const status = new WorkerStatus({ role: 'rules', group: 'g', topic: 't', workerId: 'w', address: () => undefined, snapshot: () => undefined, openTraces: () => 42 });
    const s = status.status();
    expect(s).toMatchObject({ role: 'rules', openTraces: 42, ready: false, healthy: true, partitions: [], address: null, breakers: [] });
  });
});

describe('rates over the last minute', () => {
  it('are the growth between the oldest sample kept and now, per second', () => {
    const rates = new CounterRates();
    const totals = (n: number) => ({ consumed: n, written: n / 2, deadLettered: 0 });
    expect(rates.rates(0, totals(0))).toEqual({ windowSeconds: 0, consumedPerSecond: 0, writtenPerSecond: 0, deadLetteredPerSecond: 0 });
    for (let second = 0; second <= 90; second += 1) rates.sample(second * 1000, totals(second * 100));
    // The ring keeps 61 samples: seconds 30 … 90; at 90.5 s the window is 60.5 s long.
    expect(rates.rates(90_500, totals(9_050))).toEqual({ windowSeconds: 60.5, consumedPerSecond: 100, writtenPerSecond: 50, deadLetteredPerSecond: 0 });
  });

  it('come from the status source sampled once a second', () => {
    let now = 0;
    let consumed = 0;
    const snapshot = () => ({ ready: true, healthy: true, problems: [], partitions: [], inFlight: { records: 0, bytes: 0, budgetBytes: 1, maxBytesSeen: 0 }, totals: { consumed, written: consumed, deadLettered: 0 } });
    const status = new WorkerStatus({ role: 'signals', group: 'g', topic: 't', workerId: 'w', address: () => 'h:1', snapshot }, () => now);
    status.start();
    started.push(status);
    for (let i = 0; i < 10; i += 1) {
      now += 1000;
      consumed += 250;
      status.sample();
    }
    expect(status.status().rates).toEqual({ windowSeconds: 10, consumedPerSecond: 250, writtenPerSecond: 250, deadLetteredPerSecond: 0 });
  });
});

describe('GET /status', () => {
  it('serves the status JSON beside /metrics', async () => {
    const server = new HealthServer(0, new Registry(), { healthy: () => true, ready: () => true, status: () => ({ role: 'spans', partitions: [] }) });
    const port = await server.start();
    started.push({ stop: () => server.close() });
    const res = await fetch(`http://127.0.0.1:${port}/status`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(await res.json()).toEqual({ role: 'spans', partitions: [] });
  });
});
