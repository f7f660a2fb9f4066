import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvariantError, LocalWaitError, RetriableError } from '../../../src/errors.js';
import { SpanDecoder, type DecodedSpan } from '../../../src/model/decode.js';
import { generateSpan, tenantIdFor } from '../../../src/model/generate.js';
import { storedSpan } from '../../../src/model/span-line.js';
import { spanDay } from '../../../src/model/span.js';
import { SpanLogSink } from '../../../src/sinks/spanlog/spanlog-sink.js';
import { summarizeSpanLog } from '../../../src/sinks/spanlog/summary.js';
import type { FlushItem, SinkFlush } from '../../../src/sinks/types.js';

const A = tenantIdFor(1);
const B = tenantIdFor(2);
const DAY_MS = Date.UTC(2026, 10, 24, 12);

/** One tenant's items as a flush of partition `partition` of `spans`. */
function flushFor(tenantId: string, items: ReadonlyArray<FlushItem<DecodedSpan>>, partition = 0): SinkFlush<DecodedSpan> {
  return { topic: 'spans', partition, tenants: new Map([[tenantId, items]]) };
}

/** Spans of offsets `from..to` of one tenant, one span per record, as a flush. */
function records(tenantId: string, from: number, to: number, partition = 0, nowMs = DAY_MS): SinkFlush<DecodedSpan> {
  const out: Array<FlushItem<DecodedSpan>> = [];
  for (let o = from; o <= to; o += 1) {
    const span = generateSpan(tenantId, o, nowMs);
    out.push({ value: { span: storedSpan(span, tenantId), day: spanDay(span)! }, offset: BigInt(o), index: 0 });
  }
  return flushFor(tenantId, out, partition);
}

function readLines(dir: string, tenantId: string, day: string): Array<{ spanId: string; _kafka: { offset: string; partition: number; index?: number } }> {
  const folder = path.join(dir, tenantId, day);
  return fs
    .readdirSync(folder)
    .sort()
    .flatMap((f) => fs.readFileSync(path.join(folder, f), 'utf8').split('\n').filter(Boolean))
    .map((l) => JSON.parse(l) as { spanId: string; _kafka: { offset: string; partition: number; index?: number } });
}

describe('SpanLogSink', () => {
  let dir: string;
  const sinks: SpanLogSink[] = [];
  const make = () => {
    const sink = new SpanLogSink({ dir, lockStaleMs: 2000 }, { logger: pino({ level: 'silent' }), registry: new Registry() });
    sinks.push(sink);
    return sink;
  };

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spanlog-'));
  });
  afterEach(async () => {
    for (const s of sinks.splice(0)) await s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('writes JSONL per tenant and UTC day, with Kafka bookkeeping on each line', async () => {
    const sink = make();
    await sink.start();
    await sink.write(records(A, 0, 9));
    await sink.write(records(B, 10, 14));
    // A span of the next day goes to the next day's folder.
    await sink.write(records(A, 15, 15, 0, DAY_MS + 86_400_000));
    await sink.sync('spans', 0);
    expect(readLines(dir, A, '2026-11-24').map((l) => l._kafka.offset)).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    expect(readLines(dir, B, '2026-11-24')).toHaveLength(5);
    expect(readLines(dir, A, '2026-11-25')[0]!._kafka).toEqual({ topic: 'spans', partition: 0, offset: '15' });
    expect(fs.readdirSync(path.join(dir, A, '2026-11-24'))).toEqual(['spans+0+0.jsonl']);
    const summary = await summarizeSpanLog(dir);
    expect(summary.reduce((n, r) => n + r.spans, 0)).toBe(16);
  });

  it('skips what a previous session already wrote, and starts a new segment for the rest', async () => {
    const first = make();
    await first.write(records(A, 0, 9));
    await first.sync('spans', 0);
    await first.releasePartition('spans', 0);
    // A replay from offset 5 (the last commit) after a crash: 5..9 are on disk already.
    const second = make();
    await second.write(records(A, 5, 14));
    await second.sync('spans', 0);
    const lines = readLines(dir, A, '2026-11-24');
    expect(lines.map((l) => Number(l._kafka.offset))).toEqual([...Array(15).keys()]);
    expect(fs.readdirSync(path.join(dir, A, '2026-11-24')).sort()).toEqual(['spans+0+0.jsonl', 'spans+0+10.jsonl']);
  });

  it('truncates a torn last line and rewrites that record', async () => {
    const first = make();
    await first.write(records(A, 0, 4));
    await first.sync('spans', 0);
    await first.releasePartition('spans', 0);
    const file = path.join(dir, A, '2026-11-24', 'spans+0+0.jsonl');
    // Simulate a crash halfway through appending offset 5.
    const half = JSON.stringify({ ...records(A, 5, 5).tenants.get(A)![0]!.value.span, _kafka: { topic: 'spans', partition: 0, offset: '5' } }).slice(0, 40);
    fs.appendFileSync(file, half);
    const second = make();
    await second.write(records(A, 3, 7));
    await second.sync('spans', 0);
    const lines = readLines(dir, A, '2026-11-24');
    expect(lines.map((l) => Number(l._kafka.offset))).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('removes an empty segment left by a crash right after it was created', async () => {
    const folder = path.join(dir, A, '2026-11-24');
    fs.mkdirSync(folder, { recursive: true });
    fs.writeFileSync(path.join(folder, 'spans+0+3.jsonl'), '');
    const sink = make();
    await sink.write(records(A, 3, 4));
    await sink.sync('spans', 0);
    expect(readLines(dir, A, '2026-11-24').map((l) => l._kafka.offset)).toEqual(['3', '4']);
  });

  it('keeps partitions apart: the same tenant-day from two partitions has two segments', async () => {
    const sink = make();
    await sink.write(records(A, 0, 2, 0));
    await sink.write(records(A, 0, 2, 1));
    await sink.sync('spans', 0);
    await sink.sync('spans', 1);
    expect(fs.readdirSync(path.join(dir, A, '2026-11-24')).sort()).toEqual(['spans+0+0.jsonl', 'spans+1+0.jsonl']);
    expect(readLines(dir, A, '2026-11-24')).toHaveLength(6);
  });

  it('lets only one worker hold a partition; the next one gets it after release', async () => {
    const one = make();
    const two = make();
    await one.write(records(A, 0, 1));
    const blocked = await two.write(records(A, 0, 1)).catch((e: unknown) => e);
    expect(blocked).toBeInstanceOf(RetriableError);
    // A peer holding the lock is a wait, not the disk failing: the breaker does not count it.
    expect(blocked).toBeInstanceOf(LocalWaitError);
    expect((blocked as Error).message).toMatch(/locked by another worker/);
    await one.sync('spans', 0);
    await one.releasePartition('spans', 0);
    await two.write(records(A, 0, 3));
    await two.sync('spans', 0);
    expect(readLines(dir, A, '2026-11-24').map((l) => l._kafka.offset)).toEqual(['0', '1', '2', '3']);
  });

  it('writes one shape whatever the span looked like on the wire: same span, same line', async () => {
    const decoder = new SpanDecoder(1_000_000);
    const span = generateSpan(A, 1, DAY_MS);
    const { tenantId: _t, ...body } = span;
    // The same span: tenant from the header; pretty-printed with fields in another order and
    // enums as names.
    const fromHeader = decoder.decode({ value: Buffer.from(JSON.stringify(body)), headers: { 'tenant-id': A } });
    const canonical = { ...span, kind: 2, status: { code: 1 } };
    const { traceId, ...rest } = canonical;
    const loose = { ...rest, kind: 'SPAN_KIND_SERVER', status: { code: 'STATUS_CODE_OK' }, traceId };
    const a = decoder.decode({ value: Buffer.from(JSON.stringify(canonical)) });
    const b = decoder.decode({ value: Buffer.from(JSON.stringify(loose, null, 2)) });
    if (!fromHeader.ok || !a.ok || !b.ok) throw new Error('decoding failed');
    const sink = make();
    await sink.write(
      flushFor(A, [
        { value: fromHeader.items[0]!.value, offset: 0n, index: 0 },
        { value: a.items[0]!.value, offset: 1n, index: 0 },
        { value: b.items[0]!.value, offset: 1n, index: 1 },
      ]),
    );
    await sink.sync('spans', 0);
    const lines = fs.readFileSync(path.join(dir, A, '2026-11-24', 'spans+0+0.jsonl'), 'utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    expect(JSON.parse(lines[0]!)).toEqual({ ...span, kind: span.kind, _kafka: { topic: 'spans', partition: 0, offset: '0' } });
    const strip = (line: string) => line.replace(/,"_kafka":.*$/, '');
    expect(strip(lines[2]!)).toBe(strip(lines[1]!));
    expect(JSON.parse(lines[1]!)).toMatchObject({ tenantId: A, kind: 2, status: { code: 1 } });
    expect(JSON.parse(lines[2]!)._kafka).toEqual({ topic: 'spans', partition: 0, offset: '1', index: 1 });
  });

  it('resumes inside a record whose spans a crash tore apart (position = offset, then index)', async () => {
    const spans = [0, 1, 2, 3].map((i) => generateSpan(A, 10 + i, DAY_MS));
    const entries = spans.map((span, index) => ({ value: { span: storedSpan(span, A), day: spanDay(span)! }, offset: 7n, index }));
    const first = make();
    await first.write(flushFor(A, entries.slice(0, 2)));
    await first.sync('spans', 0);
    await first.releasePartition('spans', 0);
    // A new owner gets the whole record again: it writes only the spans not on disk yet.
    const second = make();
    await second.write(flushFor(A, entries));
    await second.sync('spans', 0);
    const folder = path.join(dir, A, '2026-11-24');
    expect(fs.readdirSync(folder).sort()).toEqual(['spans+0+7.jsonl', 'spans+0+7_2.jsonl']);
    const lines = readLines(dir, A, "2026-11-24");
    expect(lines.map((l) => [l._kafka.offset, l._kafka.index ?? 0])).toEqual([['7', 0], ['7', 1], ['7', 2], ['7', 3]]);
    expect(lines.map((l) => l.spanId)).toEqual(spans.map((s) => s.spanId));
  });

  it('refuses a tenant id that is not a canonical UUID', async () => {
    const sink = make();
    const refused = await sink.write(flushFor('../../etc', records(A, 0, 0).tenants.get(A)!)).catch((e: unknown) => e);
    // The decoders validate tenant ids: a sink given a bad one meets a bug, and says so (fatal).
    expect(refused).toBeInstanceOf(InvariantError);
    expect((refused as Error).message).toMatch(/refusing tenant id/);
    expect(fs.readdirSync(dir).filter((f) => f !== '.locks')).toEqual([]);
  });
});
