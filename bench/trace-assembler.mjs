#!/usr/bin/env node
// Trace assembly benchmark (no broker): spans per second through PartitionTraces (assembly by
// record time, evaluation, closure, hits), and with signalsOf on top, for 500 tenants of 10
// rules and 5,000 concurrent traces; beside the bare engine (TraceEvaluation) from the same run
// as the baseline, over the same spans grouped per trace beforehand and in arrival order. Also the heap one open trace
// costs and the checkpoint size. Needs `npm run build` first.
//
//   node --expose-gc bench/trace-assembler.mjs [--spans N] [--tenants N] [--concurrent N] [--trace-spans N]
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { NAMES, ruleText } from './rule-load.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { compileRuleSet, TraceEvaluation, PartitionTraces, OpenTraceBudget, signalsOf, encodeCheckpoint } = await import(path.join(ROOT, 'dist/rules/index.js'));

const args = Object.fromEntries(process.argv.slice(2).reduce((p, a, i, all) => (a.startsWith('--') ? [...p, [a.slice(2), all[i + 1]]] : p), []));
const SPANS = Number(args.spans ?? 500_000);
const TENANTS = Number(args.tenants ?? 500);
const CONCURRENT = Number(args.concurrent ?? 5_000);
const TRACE_SPANS = Number(args['trace-spans'] ?? 50);
const FLUSH = 2_000;
const IDLE_MS = 1_000;

const tenants = Array.from({ length: TENANTS }, (_, t) => `00000000-0000-4000-8000-${t.toString(16).padStart(12, '0')}`);
// 10 rules per tenant (bench/rule-load.mjs, as in bench/rules.mjs), compiled per tenant as a worker would.
let start = performance.now();
const ruleSets = new Map(tenants.map((t, n) => [t, compileRuleSet(Array.from({ length: 10 }, (_, i) => ({ id: `r${i}`, name: `rule ${i}`, severity: 'HIGH', condition: ruleText(i + n), enabled: true })))]));
const compileMs = performance.now() - start;

// The load: CONCURRENT traces at a time, each of TRACE_SPANS spans. Every round, each live trace
// gets one span, in a new random order; a finished trace is replaced by a new one. One record per
// span, record time +1 ms per 50 spans: a live trace gets a span at least every 2 x CONCURRENT
// spans (200 ms), a finished one goes idle (1 s) 50,000 spans later.
let seed = 42;
function random() { // mulberry32
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
}
const attributePool = Array.from({ length: 200 }, (_, i) => ({ amount: (i * 37) % 2000, currency: i % 3 ? 'USD' : 'JPY', region: i % 2 ? 'eu' : 'us', endpoint: i % 10 ? '/api/v1/items' : '/api/v1/admin/x', bypass: i % 97 === 0 }));
const resource = { attributes: { 'service.name': 'svc' } };
let traceCounter = 0;
const newTrace = () => ({ tenantId: tenants[Math.floor(random() * TENANTS)], traceId: (++traceCounter).toString(16).padStart(32, '0'), left: TRACE_SPANS });
// The first traces start part-way, so that traces end (and are replaced) spread over time.
const live = Array.from({ length: CONCURRENT }, () => ({ ...newTrace(), left: 1 + Math.floor(random() * TRACE_SPANS) }));
const items = new Array(SPANS);
const order = Array.from({ length: CONCURRENT }, (_, i) => i);
for (let i = 0; i < SPANS; i++) {
  if (i % CONCURRENT === 0) {
    for (let j = order.length - 1; j > 0; j--) {
      const k = Math.floor(random() * (j + 1));
      [order[j], order[k]] = [order[k], order[j]];
    }
  }
  const slot = order[i % CONCURRENT];
  const trace = live[slot];
  const span = {
    tenantId: trace.tenantId, traceId: trace.traceId, spanId: (i + 1).toString(16).padStart(16, '0'), parentSpanId: '', name: NAMES[Math.floor(random() * NAMES.length)], kind: 1,
    startTimeUnixNano: '1764000000000000000', endTimeUnixNano: '1764000000250000000', attributes: attributePool[i % attributePool.length], status: { code: 0 }, resource,
  };
  items[i] = { offset: BigInt(i), index: 0, tenantId: trace.tenantId, span, timestamp: 1_764_000_000_000 + Math.floor(i / 50) };
  if (--trace.left === 0) live[slot] = newTrace();
}

function runAssembler(withSignals, finish = true) {
  const budget = new OpenTraceBudget(1_000_000);
  const traces = new PartitionTraces({ topic: 'spans', partition: 0, idleMs: IDLE_MS, maxAgeMs: 60_000, budget, rulesFor: (t) => ruleSets.get(t), closedMemory: 10_000 });
  let hits = 0;
  let signals = 0;
  let maxOpen = 0;
  const begin = performance.now();
  for (let at = 0; at < items.length; at += FLUSH) {
    traces.apply(items.slice(at, at + FLUSH), 0);
    traces.tick(0);
    for (const closed of traces.takeClosed()) {
      hits += closed.hits.length;
      if (withSignals) signals += signalsOf(closed, traces).length;
    }
    if (traces.openCount > maxOpen) maxOpen = traces.openCount;
  }
  if (finish) traces.tick(1e12); // the end: close what is still open, so the hits compare with the engine's
  for (const closed of traces.takeClosed()) {
    hits += closed.hits.length;
    if (withSignals) signals += signalsOf(closed, traces).length;
  }
  const seconds = (performance.now() - begin) / 1000;
  return { rate: items.length / seconds, hits, signals, maxOpen, traces };
}

// Baseline: the same spans grouped per trace beforehand (outside the timing), then the engine.
const byTrace = new Map();
for (const item of items) {
  const key = `${item.tenantId}/${item.span.traceId}`;
  let group = byTrace.get(key);
  if (group === undefined) byTrace.set(key, (group = { ruleSet: ruleSets.get(item.tenantId), spans: [] }));
  group.spans.push(item.span);
}
function runEngine() {
  let hits = 0;
  const begin = performance.now();
  for (const { ruleSet, spans } of byTrace.values()) {
    const evaluation = new TraceEvaluation(ruleSet);
    for (const span of spans) evaluation.add(span);
    hits += evaluation.hits().length;
  }
  return { rate: items.length / ((performance.now() - begin) / 1000), hits };
}

// The engine again, but fed in arrival order: one evaluation per trace, found per span by tenant
// and trace id. What it costs beyond the pre-grouped run is the interleaving itself (a random
// trace's state per span: cache misses), which any assembler pays.
function runEngineInterleaved() {
  let hits = 0;
  const begin = performance.now();
  const open = new Map();
  for (const item of items) {
    let traces = open.get(item.tenantId);
    if (traces === undefined) open.set(item.tenantId, (traces = new Map()));
    let evaluation = traces.get(item.span.traceId);
    if (evaluation === undefined) traces.set(item.span.traceId, (evaluation = new TraceEvaluation(ruleSets.get(item.tenantId))));
    evaluation.add(item.span);
  }
  for (const traces of open.values()) for (const evaluation of traces.values()) hits += evaluation.hits().length;
  return { rate: items.length / ((performance.now() - begin) / 1000), hits };
}

const best = (run) => {
  run(); // warm-up
  return [run(), run(), run()].sort((x, y) => y.rate - x.rate)[0];
};
const fmt = (n) => Math.round(n).toLocaleString('en-US');
const engine = best(runEngine);
const interleaved = best(runEngineInterleaved);
const assembled = best(() => runAssembler(false));
const withSignals = best(() => runAssembler(true));
console.log(`trace assembly: ${fmt(SPANS)} spans, ${TENANTS} tenants x 10 rules (compiled in ${fmt(compileMs)} ms), ${fmt(CONCURRENT)} concurrent traces of ${TRACE_SPANS} spans, flushes of ${fmt(FLUSH)}, one thread`);
console.log('                                              spans/s   vs engine   rule hits');
console.log(`bare engine (TraceEvaluation, pre-grouped)  ${fmt(engine.rate).padStart(10)}        100%  ${String(engine.hits).padStart(10)}`);
console.log(`bare engine, spans in arrival order         ${fmt(interleaved.rate).padStart(10)}  ${(interleaved.rate / engine.rate * 100).toFixed(0).padStart(9)}%  ${String(interleaved.hits).padStart(10)}   (no closing: every trace in memory)`);
console.log(`PartitionTraces (assemble, close, evaluate) ${fmt(assembled.rate).padStart(10)}  ${(assembled.rate / engine.rate * 100).toFixed(0).padStart(9)}%  ${String(assembled.hits).padStart(10)}   (at most ${fmt(assembled.maxOpen)} open at a flush end)`);
const { counters } = assembled.traces;
console.log(`  closed: ${Object.entries(counters.closed).map(([r, n]) => `${r} ${fmt(n)}`).join(', ')}; late spans ${fmt(counters.lateSpans)}; largest trace ${fmt(counters.largestClosed)} spans`);
console.log(`PartitionTraces + signalsOf                 ${fmt(withSignals.rate).padStart(10)}  ${(withSignals.rate / engine.rate * 100).toFixed(0).padStart(9)}%  ${String(withSignals.signals).padStart(10)}   signals`);

// Heap per open trace: CONCURRENT traces open, measured by dropping them.
const gc = globalThis.gc;
if (gc) {
  const traces = new PartitionTraces({ topic: 'spans', partition: 0, idleMs: IDLE_MS, maxAgeMs: 60_000, budget: new OpenTraceBudget(1_000_000), rulesFor: (t) => ruleSets.get(t), closedMemory: 10_000 });
  gc();
  const before = process.memoryUsage().heapUsed;
  traces.apply(items.slice(0, CONCURRENT * 4), 0);
  gc();
  const open = traces.openCount;
  const used = process.memoryUsage().heapUsed - before;
  console.log(`heap: ${fmt(used / open)} bytes per open trace (${fmt(open)} open, ${fmt(used / 1024)} KiB in all)`);
} else console.log('heap: run with --expose-gc for the bytes per open trace');

// Checkpoint size with the closed-trace memory full.
const { traces } = runAssembler(false, false);
const checkpoint = encodeCheckpoint(traces.checkpoint(BigInt(items.length)));
console.log(`checkpoint: ${fmt(checkpoint.length)} bytes for ${fmt(traces.openCount)} open and ${fmt(traces.rememberedCount)} remembered traces`);
