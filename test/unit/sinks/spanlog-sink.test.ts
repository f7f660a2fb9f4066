import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RetriableError } from '../../../src/errors.js';
import { SpanDecoder, type DecodedSpan } from '../../../src/model/decode.js';
import { generateSpan, tenantIdFor } from '../../../src/model/generate.js';
import { spanDay } from '../../../src/model/span.js';
import { SpanLogSink } from '../../../src/sinks/spanlog/spanlog-sink.js';
import { summarizeSpanLog } from '../../../src/sinks/spanlog/summary.js';

const A = tenantIdFor(1);
const B = tenantIdFor(2);
const DAY_MS = Date.UTC(2026, 10, 24, 12);

function records(tenantId: string, from: number, to: number, partition = 0, nowMs = DAY_MS) {
  const out: Array<{ value: DecodedSpan; source: { topic: string; partition: number; offset: string } }> = [];
  for (let o = from; o <= to; o += 1) {
    const span = generateSpan(tenantId, o, nowMs);
    out.push({ value: { span, day: spanDay(span)!, tenantFromHeader: false }, source: { topic: 'spans', partition, offset: String(o) } });
  }
  return out;
}

function readLines(dir: string, tenantId: string, day: string): Array<{ _kafka: { offset: string; partition: number } }> {
  const folder = path.join(dir, tenantId, day);
  return fs
    .readdirSync(folder)
    .sort()
    .flatMap((f) => fs.readFileSync(path.join(folder, f), 'utf8').split('\n').filter(Boolean))
    .map((l) => JSON.parse(l) as { _kafka: { offset: string; partition: number } });
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
    await sink.write(A, records(A, 0, 9));
    await sink.write(B, records(B, 10, 14));
    // A span of the next day goes to the next day's folder.
    await sink.write(A, records(A, 15, 15, 0, DAY_MS + 86_400_000));
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
    await first.write(A, records(A, 0, 9));
    await first.sync('spans', 0);
    await first.releasePartition('spans', 0);
    // A replay from offset 5 (the last commit) after a crash: 5..9 are on disk already.
    const second = make();
    await second.write(A, records(A, 5, 14));
    await second.sync('spans', 0);
    const lines = readLines(dir, A, '2026-11-24');
    expect(lines.map((l) => Number(l._kafka.offset))).toEqual([...Array(15).keys()]);
    expect(fs.readdirSync(path.join(dir, A, '2026-11-24')).sort()).toEqual(['spans+0+0.jsonl', 'spans+0+10.jsonl']);
  });

  it('truncates a torn last line and rewrites that record', async () => {
    const first = make();
    await first.write(A, records(A, 0, 4));
    await first.sync('spans', 0);
    await first.releasePartition('spans', 0);
    const file = path.join(dir, A, '2026-11-24', 'spans+0+0.jsonl');
    // Simulate a crash halfway through appending offset 5.
    const half = JSON.stringify({ ...records(A, 5, 5)[0]!.value.span, _kafka: { topic: 'spans', partition: 0, offset: '5' } }).slice(0, 40);
    fs.appendFileSync(file, half);
    const second = make();
    await second.write(A, records(A, 3, 7));
    await second.sync('spans', 0);
    const lines = readLines(dir, A, '2026-11-24');
    expect(lines.map((l) => Number(l._kafka.offset))).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('removes an empty segment left by a crash right after it was created', async () => {
    const folder = path.join(dir, A, '2026-11-24');
    fs.mkdirSync(folder, { recursive: true });
    fs.writeFileSync(path.join(folder, 'spans+0+3.jsonl'), '');
    const sink = make();
    await sink.write(A, records(A, 3, 4));
    await sink.sync('spans', 0);
    expect(readLines(dir, A, '2026-11-24').map((l) => l._kafka.offset)).toEqual(['3', '4']);
  });

  it('keeps partitions apart: the same tenant-day from two partitions has two segments', async () => {
    const sink = make();
    await sink.write(A, records(A, 0, 2, 0));
    await sink.write(A, records(A, 0, 2, 1));
    await sink.sync('spans', 0);
    await sink.sync('spans', 1);
    expect(fs.readdirSync(path.join(dir, A, '2026-11-24')).sort()).toEqual(['spans+0+0.jsonl', 'spans+1+0.jsonl']);
    expect(readLines(dir, A, '2026-11-24')).toHaveLength(6);
  });

  it('lets only one worker hold a partition; the next one gets it after release', async () => {
    const one = make();
    const two = make();
    await one.write(A, records(A, 0, 1));
    const blocked = await two.write(A, records(A, 0, 1)).catch((e: unknown) => e);
    expect(blocked).toBeInstanceOf(RetriableError);
    expect((blocked as Error).message).toMatch(/locked by another worker/);
    await one.sync('spans', 0);
    await one.releasePartition('spans', 0);
    await two.write(A, records(A, 0, 3));
    await two.sync('spans', 0);
    expect(readLines(dir, A, '2026-11-24').map((l) => l._kafka.offset)).toEqual(['0', '1', '2', '3']);
  });

  it('keeps the producer\'s bytes and adds the tenant from the header and the bookkeeping', async () => {
    const decoder = new SpanDecoder(1_000_000);
    const { tenantId: _t, ...body } = generateSpan(A, 1, DAY_MS);
    const raw = Buffer.from(JSON.stringify(body));
    const fromHeader = decoder.decode({ value: raw, headers: { 'tenant-id': A } });
    const pretty = decoder.decode({ value: Buffer.from(JSON.stringify({ ...generateSpan(A, 2, DAY_MS) }, null, 2)) });
    if (!fromHeader.ok || !pretty.ok) throw new Error('decoding failed');
    expect(fromHeader.value.raw).toBeDefined();
    expect(pretty.value.raw).toBeUndefined();
    const sink = make();
    await sink.write(A, [
      { value: fromHeader.value, source: { topic: 'spans', partition: 0, offset: '0' } },
      { value: pretty.value, source: { topic: 'spans', partition: 0, offset: '1' } },
    ]);
    await sink.sync('spans', 0);
    const text = fs.readFileSync(path.join(dir, A, '2026-11-24', 'spans+0+0.jsonl'), 'utf8');
    const lines = text.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]!.startsWith(raw.toString().slice(0, -1))).toBe(true);
    expect(JSON.parse(lines[0]!)).toEqual({ ...body, tenantId: A, _kafka: { topic: 'spans', partition: 0, offset: '0' } });
    expect(JSON.parse(lines[1]!)._kafka.offset).toBe('1');
  });

  it('refuses a tenant id that is not a canonical UUID', async () => {
    const sink = make();
    await expect(sink.write('../../etc', records(A, 0, 0))).rejects.toThrow(/refusing tenant id/);
    expect(fs.readdirSync(dir).filter((f) => f !== '.locks')).toEqual([]);
  });
});
