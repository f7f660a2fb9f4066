#!/usr/bin/env node
// The archive's Parquet writer alone (no broker, no S3): cycles of decoded JSON spans of many
// tenants written by ParquetWriter into zstd Parquet files, CPU per span split into the main
// thread (the lines from the decoder's rows) and the rest (DuckDB's COPY on libuv's pool, V8's
// helpers), from /proc/self/task. Rounds alternate between builds when --dist names several.
//
// --cycles: cycles per round (one measurement), so that small cycles (a worker's default, ~14K
// spans) still give enough CPU ticks to measure.
//
//   npm run build && node bench/archive-writer.mjs [--spans 50000] [--tenants 20] [--cycles 1] [--rounds 5] [--dist DIR[,DIR…]]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, parseArgs } from './lib.mjs';

const args = parseArgs(process.argv.slice(2));
const N = Number(args.spans ?? 50_000);
const TENANTS = Number(args.tenants ?? 20);
const ROUNDS = Number(args.rounds ?? 5);
const CYCLES = Number(args.cycles ?? 1);
const dists = String(args.dist ?? path.join(ROOT, 'dist')).split(',').map((d) => path.resolve(d));

function threadSeconds() {
  const out = { main: 0, other: 0 };
  for (const tid of fs.readdirSync('/proc/self/task')) {
    try {
      const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out[tid === String(process.pid) ? 'main' : 'other'] += (Number(f[11]) + Number(f[12])) / 100;
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

const builds = [];
for (const dist of dists) {
  const { SpanDecoder } = await import(path.join(dist, 'model/decode.js'));
  const { generateSpan, tenantIdFor } = await import(path.join(dist, 'model/generate.js'));
  const { ParquetWriter } = await import(path.join(dist, 'sinks/archive/parquet-writer.js'));
  // The archive worker's own decoder where the build has one (its rows are what the writer takes);
  // an older build's writer took the span decoder's items.
  const rows = await import(path.join(dist, 'model/archive-row.js')).catch(() => undefined);
  const decoder = rows ? new rows.ArchiveSpanDecoder(1_000_000, { encoding: 'auto' }) : new SpanDecoder(1_000_000, { encoding: 'auto' });
  const tenants = new Map();
  for (let i = 0; i < N; i++) {
    const d = decoder.decode({ value: Buffer.from(JSON.stringify(generateSpan(tenantIdFor(i % TENANTS), i))), headers: {} });
    if (!d.ok) throw d.error;
    for (const [index, item] of d.items.entries()) {
      const list = tenants.get(item.tenantId) ?? [];
      list.push({ offset: BigInt(i), index, value: item.value });
      tenants.set(item.tenantId, list);
    }
  }
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'archive-writer-bench-'));
  const writer = new ParquetWriter(scratch, '1GB');
  await writer.start();
  builds.push({ dist, tenants, writer, scratch, main: [], other: [], bytes: 0 });
}

for (let round = 0; round < ROUNDS; round++) {
  for (const b of builds) {
    let main = 0;
    let other = 0;
    for (let c = 0; c < CYCLES; c++) {
      const t0 = threadSeconds();
      const files = await b.writer.write(0, b.tenants);
      const t1 = threadSeconds();
      main += t1.main - t0.main;
      other += t1.other - t0.other;
      b.bytes = files.files.reduce((n, f) => n + fs.statSync(f.file).size, 0);
      await b.writer.discard(files);
    }
    b.main.push((main * 1e6) / (N * CYCLES));
    b.other.push((other * 1e6) / (N * CYCLES));
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`archive writer: ${N} JSON spans of ${TENANTS} tenants per cycle, ${CYCLES} cycles per round, ${ROUNDS} rounds, CPU µs per span (median; all rounds)`);
for (const b of builds) {
  console.log(`${b.dist}: main ${median(b.main).toFixed(2)} [${b.main.map((x) => x.toFixed(1)).join(' ')}], other threads ${median(b.other).toFixed(2)} [${b.other.map((x) => x.toFixed(1)).join(' ')}], ${(b.bytes / N).toFixed(1)} bytes per span`);
  await b.writer.close();
  fs.rmSync(b.scratch, { recursive: true, force: true });
}
