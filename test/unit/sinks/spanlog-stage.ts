import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { RetriableError } from '../../../src/errors.js';
import type { DecodedSpan } from '../../../src/model/decode.js';
import { generateSpan, tenantIdFor } from '../../../src/model/generate.js';
import { storedSpan } from '../../../src/model/span-line.js';
import { spanDay } from '../../../src/model/span.js';
import { listSegments } from '../../../src/sinks/spanlog/layout.js';
import type { SpanLogSink } from '../../../src/sinks/spanlog/spanlog-sink.js';
import type { FlushItem, SinkFlush } from '../../../src/sinks/types.js';

/** Helpers shared by the span log fault tests: flushes, a runner-like stage, the on-disk check. */

export type Entry = FlushItem<DecodedSpan>;
/** A SinkFlush whose tenant lists a test can still fill. */
export type Flush = Omit<SinkFlush<DecodedSpan>, 'tenants'> & { readonly tenants: Map<string, Entry[]> };

export const DAY_MS = Date.UTC(2026, 10, 24, 12);

/**
 * Offsets `from..to` of partition 0, spread round robin over `tenants` tenants and `days` days:
 * the flush the runner would hand the sink (per tenant, in offset order).
 */
export function flushOf(from: number, to: number, tenants: number, days = 1, partition = 0): Flush {
  const flush: Flush = { topic: 'spans', partition, tenants: new Map() };
  for (let o = from; o <= to; o += 1) {
    const tenantId = tenantIdFor(o % tenants);
    const span = generateSpan(tenantId, o, DAY_MS + (Math.floor(o / tenants) % days) * 86_400_000);
    const entry: Entry = { value: { span: storedSpan(span, tenantId), day: spanDay(span)! }, offset: BigInt(o), index: 0 };
    const list = flush.tenants.get(tenantId);
    if (list) list.push(entry);
    else flush.tenants.set(tenantId, [entry]);
  }
  return flush;
}

/**
 * What Pipeline.runSink does with a flush, with the write's and the sync's retries counted apart:
 * the flush's write, retried while it fails with a RetriableError, then one sync; a
 * RetriableError from the sync repeats the whole stage. `whenSynced` runs each time sync
 * resolved (where the pipeline would commit). Returns how many times the stage ran.
 */
export async function runStage(sink: SpanLogSink, flush: Flush, whenSynced: () => void, maxAttempts = 100): Promise<number> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      for (let tries = 1; ; tries += 1) {
        try {
          await sink.write(flush);
          break;
        } catch (e) {
          if (!(e instanceof RetriableError) || tries >= maxAttempts) throw e;
        }
      }
      await sink.sync(flush.topic, flush.partition);
      whenSynced();
      return attempt;
    } catch (e) {
      if (!(e instanceof RetriableError) || attempt >= maxAttempts) throw e;
    }
  }
}

/** Every line of every segment under `dir`: no torn line, each parses; counts per tenant+offset. */
export async function readSpanLog(dir: string): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const segment of await listSegments(dir)) {
    const text = fs.readFileSync(segment.file, 'utf8');
    if (text.length > 0) expect(text.endsWith('\n'), `${path.relative(dir, segment.file)} ends with a complete line`).toBe(true);
    for (const line of text.split('\n').filter(Boolean)) {
      const parsed = JSON.parse(line) as { tenantId: string; _kafka: { offset: string } };
      expect(parsed.tenantId).toBe(segment.tenantId);
      const key = `${parsed.tenantId}:${parsed._kafka.offset}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  return counts;
}

/** Asserts the span log holds offsets `from..to` (as `flushOf` spread them) exactly once each. */
export async function expectExactlyOnce(dir: string, from: number, to: number, tenants: number): Promise<void> {
  const counts = await readSpanLog(dir);
  const expected = new Map<string, number>();
  for (let o = from; o <= to; o += 1) expected.set(`${tenantIdFor(o % tenants)}:${o}`, 1);
  const duplicated = [...counts].filter(([, n]) => n > 1).map(([k]) => k);
  const missing = [...expected.keys()].filter((k) => !counts.has(k));
  const extra = [...counts.keys()].filter((k) => !expected.has(k));
  expect({ duplicated, missing, extra }).toEqual({ duplicated: [], missing: [], extra: [] });
  expect(counts.size).toBe(to - from + 1);
}
