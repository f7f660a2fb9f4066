#!/usr/bin/env node
// Rule engine benchmark (no broker): spans per second through TraceEvaluation for 1, 10 and 100
// rules per tenant, beside a no-rule baseline (the same loop with an empty rule set); parse time
// per rule; trace state of a 100,000-span trace against 20 rules. Needs `npm run build` first.
//
//   node --expose-gc bench/rules.mjs [--spans N] [--trace-spans N]
import path from 'node:path';
import v8 from 'node:v8';
import { fileURLToPath } from 'node:url';
import { ruleText, rulesOf, spansOf } from './rule-load.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { compileRuleSet, parseRule, TraceEvaluation } = await import(path.join(ROOT, 'dist/rules/index.js'));

const args = Object.fromEntries(process.argv.slice(2).reduce((p, a, i, all) => (a.startsWith('--') ? [...p, [a.slice(2), all[i + 1]]] : p), []));
const SPANS = Number(args.spans ?? 300_000);
const TRACE_SPANS = Number(args['trace-spans'] ?? 50);
const TARGET = 100_000; // spans/s of a worker, with 10 rules

const rules = rulesOf;
const spans = spansOf(SPANS);

function run(ruleSet) {
  let signals = 0;
  const start = performance.now();
  for (let t = 0; t < spans.length; t += TRACE_SPANS) {
    const evaluation = new TraceEvaluation(ruleSet);
    for (let i = t; i < Math.min(t + TRACE_SPANS, spans.length); i++) evaluation.add(spans[i]);
    signals += evaluation.hits().length;
  }
  return { rate: spans.length / ((performance.now() - start) / 1000), signals };
}

const fmt = (n) => Math.round(n).toLocaleString('en-US');
console.log(`rule engine: ${fmt(SPANS)} spans in traces of ${TRACE_SPANS}, one thread`);
console.log('rules  spans/s        signals   vs baseline');
let baseline;
for (const n of [0, 1, 10, 100]) {
  const ruleSet = compileRuleSet(rules(n));
  run(ruleSet); // warm-up
  const best = [run(ruleSet), run(ruleSet), run(ruleSet)].sort((x, y) => y.rate - x.rate)[0];
  baseline ??= best.rate;
  const mark = n === 10 ? (best.rate >= TARGET ? `  (target ${fmt(TARGET)}/s: met)` : `  (target ${fmt(TARGET)}/s: NOT met)`) : '';
  console.log(`${String(n).padStart(5)}  ${fmt(best.rate).padStart(12)}  ${String(best.signals).padStart(8)}   ${(best.rate / baseline * 100).toFixed(0).padStart(4)}%${n === 0 ? ' (no rules)' : ''}${mark}`);
}

const texts = Array.from({ length: 1000 }, (_, i) => ruleText(i));
parseRule(texts[0]); // generates the parser once
let start = performance.now();
for (const text of texts) parseRule(text);
console.log(`parse: ${((performance.now() - start) * 1000 / texts.length).toFixed(1)} µs per rule (mean of ${texts.length}, ${fmt(texts.reduce((n, t) => n + t.length, 0) / texts.length)} chars)`);
start = performance.now();
compileRuleSet(rules(100));
console.log(`compile: ${(performance.now() - start).toFixed(1)} ms for a tenant of 100 rules (parse included)`);

// One 100,000-span trace against 20 rules: spans are made one at a time and dropped. The heap
// the evaluation retains is measured by dropping it: heap with it alive minus heap without it.
const gc = globalThis.gc ?? (() => {});
let evaluation = new TraceEvaluation(compileRuleSet(rules(20)));
for (let i = 0; i < 100_000; i++) evaluation.add({ ...spans[i % spans.length], spanId: (i + 1).toString(16).padStart(16, '0') });
const summary = `${evaluation.ruleSet.checks.length} checks, state ${fmt(v8.serialize(evaluation.state).length)} bytes serialized, ${evaluation.hits().length} rules fired`;
gc();
const alive = process.memoryUsage().heapUsed;
evaluation = undefined;
gc();
const retained = alive - process.memoryUsage().heapUsed;
console.log(`100,000-span trace, 20 rules: ${summary}; heap retained ${fmt(retained / 1024)} KiB including the compiled rule set${globalThis.gc ? '' : ' (run with --expose-gc for this figure)'}`);
