import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SpanDecoder, type DecodedSpan } from '../../../src/model/decode.js';
import { generateSpan, tenantIdFor } from '../../../src/model/generate.js';
import { WorkerMetrics } from '../../../src/observability/metrics.js';
import { Pipeline } from '../../../src/pipeline/pipeline.js';
import { SpanLogSink } from '../../../src/sinks/spanlog/spanlog-sink.js';
import { FakeConsumer, FakeDeadLetters } from '../../support/fake-consumer.js';
import { eventually, metric, settleFor } from '../pipeline/fixtures.js';
import { DAY_MS, flushOf, readSpanLog } from './spanlog-stage.js';

/**
 * Seen on a 3-broker cluster under load: a worker that took over partitions met the previous
 * owner's span-log partition locks for a moment (an ordinary hand-over), counted each wait as a
 * span log failure, its breaker opened, and the partitions fetched nothing for 30 s. Waiting for
 * a lock a peer holds is a local wait: the breaker must not count it.
 */
const TOPIC = 'spans';
const PARTITIONS = [0, 1, 2];
const RECORDS = 10;
/** Spans the previous owner wrote (and synced) before the hand-over: offsets 0..4 of each partition. */
const WRITTEN_BEFORE = 5;
const TENANTS = 2;
/** Opens after 3 calls in a window of which more than half failed; a probe only after 30 s. */
const BREAKERS = { failureRate: 0.5, windowMs: 2_000, minCalls: 3, halfOpenAfterMs: 30_000 };
/** How long the previous owner keeps its locks after the new owner got the partitions. */
const HELD_MS = 400;

describe('span log partition hand-over', () => {
  let dir: string;
  const closers: Array<() => Promise<void>> = [];

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spanlog-handover-'));
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const makeSink = () => {
    const sink = new SpanLogSink({ dir, lockStaleMs: 10_000 }, { logger: pino({ level: 'silent' }), registry: new Registry() });
    closers.push(() => sink.close());
    return sink;
  };

  it('a partition hand-over under a held span-log lock never opens the breaker: the writes wait, then every span lands once', async () => {
    // The previous owner wrote offsets 0..4 of each partition and still holds the locks.
    const previous = makeSink();
    await previous.start();
    for (const partition of PARTITIONS) {
      await previous.write(flushOf(0, WRITTEN_BEFORE - 1, TENANTS, 1, partition));
      await previous.sync(TOPIC, partition);
    }

    // The new owner: a span worker's pipeline with a real span log sink. Nothing was committed,
    // so it reads every partition from offset 0 again.
    const consumer = new FakeConsumer(TOPIC);
    const registry = new Registry();
    const sink = makeSink();
    const deadLetters = new FakeDeadLetters();
    const pipeline = new Pipeline<DecodedSpan>({
      sinks: [sink],
      consumer,
      deadLetters,
      topic: TOPIC,
      decoder: new SpanDecoder(1_000_000),
      limits: { maxRecords: 10_000, maxBytes: 64 << 20, maxAgeMs: 60_000 },
      flushWhenCaughtUp: true,
      maxInFlightBytes: 64 << 20,
      backpressure: { pauseFraction: 0.9, resumeFraction: 0.5 },
      breakers: BREAKERS,
      heartbeatIntervalMs: 50,
      retryMaxDelayMs: 20,
      shutdownTimeoutMs: 1_000,
      logger: pino({ level: 'silent' }),
      metrics: new WorkerMetrics(registry),
      onFatal: () => undefined,
    });
    // What the worker does (it owns the sink and the dead-letter producer): start them, then the pipeline.
    await deadLetters.start(1 << 20);
    await sink.start();
    await pipeline.start();
    closers.push(async () => {
      await pipeline.stop(2_000);
      await sink.close();
    });
    const spanlogBreaker = () => pipeline.breakerStates().find((b) => b.store === 'spanlog')!.state;
    const seen = new Set<string>();
    const watch = setInterval(() => seen.add(spanlogBreaker()), 2);
    closers.push(async () => clearInterval(watch));

    for (const partition of PARTITIONS) {
      consumer.append(
        partition,
        Array.from({ length: RECORDS }, (_, o) => ({ value: JSON.stringify(generateSpan(tenantIdFor(o % TENANTS), o, DAY_MS)) })),
      );
    }
    consumer.assign(PARTITIONS);
    const delivered = Promise.all(PARTITIONS.map((p) => consumer.deliver(p)));

    // The new owner's writes meet the held locks, again and again.
    await settleFor(HELD_MS);
    expect([...seen]).toEqual(['closed']);
    expect(await metric(registry, 'spanledger_sink_retries_total')).toBeGreaterThan(BREAKERS.minCalls * PARTITIONS.length);
    expect(consumer.commits).toEqual([]);

    // The previous owner lets go: the waiting writes go through.
    for (const partition of PARTITIONS) await previous.releasePartition(TOPIC, partition);
    await delivered;
    await eventually(() => expect(PARTITIONS.map((p) => consumer.committedOffset(p))).toEqual(PARTITIONS.map(() => RECORDS)), 5_000);

    expect([...seen]).toEqual(['closed']);
    expect(await metric(registry, 'spanledger_breaker_transitions_total')).toBe(0);
    // Every span once per partition: the previous owner's 0..4 are skipped, 5..9 written.
    const counts = await readSpanLog(dir);
    expect(counts.size).toBe(RECORDS);
    for (const [key, n] of counts) expect(n, key).toBe(PARTITIONS.length);
    expect(PARTITIONS.map((p) => fs.readdirSync(path.join(dir, tenantIdFor(0), '2026-11-24')).filter((f) => f.startsWith(`${TOPIC}+${p}+`)).sort())).toEqual(
      PARTITIONS.map((p) => [`${TOPIC}+${p}+0.jsonl`, `${TOPIC}+${p}+6.jsonl`]),
    );
  });
});
