#!/usr/bin/env node
// Span decoding alone (no broker): spans/s through SpanDecoder (JSON spans as `spanledger produce`
// writes them, every fifth with its tenant in the header), with and without the day, beside a
// baseline of plain JSON.parse of the same records, and the span log line each span becomes.
// Rounds alternate so that a busy machine weighs on every column alike; besides the wall-clock
// rate it prints the CPU time per span (process.cpuUsage), which a shared machine disturbs less.
//
//   npm run build && node bench/decode.mjs [--spans N] [--rounds R] [--dist DIR]
//
// --dist: another build's dist/ folder (e.g. a copy of main's) to compare decoders back to back.
import path from 'node:path';
import { ROOT, fmt, parseArgs } from './lib.mjs';

const args = parseArgs(process.argv.slice(2));
const N = Number(args.spans ?? 200_000);
const ROUNDS = Number(args.rounds ?? 5);
const dist = path.resolve(args.dist ?? path.join(ROOT, 'dist'));
const { SpanDecoder } = await import(path.join(dist, 'model/decode.js'));
const { generateSpan, tenantIdFor } = await import(path.join(dist, 'model/generate.js'));

const records = [];
for (let i = 0; i < N; i++) {
  const tenantId = tenantIdFor(i % 20);
  const span = generateSpan(tenantId, i);
  if (i % 5 === 4) {
    delete span.tenantId;
    records.push({ value: Buffer.from(JSON.stringify(span)), headers: { 'tenant-id': Buffer.from(tenantId) } });
  } else records.push({ value: Buffer.from(JSON.stringify(span)), headers: {} });
}

const withDay = new SpanDecoder(1_000_000, { encoding: 'auto' });
const withoutDay = new SpanDecoder(1_000_000, { encoding: 'auto', withDay: false });
let sink = 0;
const cases = {
  'JSON.parse (baseline)': (r) => {
    sink += JSON.parse(r.value.toString('utf8')).name.length;
  },
  'SpanDecoder, with day (span worker)': (r) => {
    const d = withDay.decode(r);
    if (!d.ok) throw d.error;
    sink += d.items.length;
  },
  'SpanDecoder, withDay: false (rule worker)': (r) => {
    const d = withoutDay.decode(r);
    if (!d.ok) throw d.error;
    sink += d.items.length;
  },
  'decode + span log line': (r) => {
    const d = withDay.decode(r);
    if (!d.ok) throw d.error;
    sink += JSON.stringify(d.items[0].value.span).length;
  },
};
const rates = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
const cpu = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, f] of Object.entries(cases)) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    for (const r of records) f(r);
    const c = process.cpuUsage(c0);
    rates[name].push(N / ((performance.now() - t0) / 1000));
    cpu[name].push((c.user + c.system) / N);
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const base = median(rates['JSON.parse (baseline)']);
console.log(`span decoding, ${fmt(N)} JSON spans, ${ROUNDS} rounds (median; first round is warm-up too), ${dist}`);
for (const [name, xs] of Object.entries(rates)) {
  const m = median(xs);
  console.log(`  ${name.padEnd(44)} ${fmt(m).padStart(11)} spans/s  ${(m / base).toFixed(2)}× baseline  ${median(cpu[name]).toFixed(2)} µs CPU/span`);
}
if (sink < 0) console.log(sink);
