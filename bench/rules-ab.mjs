#!/usr/bin/env node
// Two builds of the rule engine in one process, on the same spans and rules (bench/rule-load.mjs),
// alternating run by run: on a shared, noisy machine the ratio of their medians says more than
// two separate `bench:rules` runs. Build each first (`npm run build`, copy dist/ aside).
//
//   node bench/rules-ab.mjs --before <dist dir> --after <dist dir> [--spans N] [--runs N]
import path from 'node:path';
import { ruleText, rulesOf, spansOf } from './rule-load.mjs';

const args = Object.fromEntries(process.argv.slice(2).reduce((p, a, i, all) => (a.startsWith('--') ? [...p, [a.slice(2), all[i + 1]]] : p), []));
if (!args.before || !args.after) throw new Error('usage: node bench/rules-ab.mjs --before <dist> --after <dist> [--spans N] [--runs N]');
const A = await import(path.resolve(args.before, 'rules/index.js'));
const B = await import(path.resolve(args.after, 'rules/index.js'));
const SPANS = Number(args.spans ?? 300_000);
const RUNS = Number(args.runs ?? 9);
const TRACE_SPANS = 50;

const rules = rulesOf;
const spans = spansOf(SPANS);

function rate(engine, ruleSet) {
  const start = performance.now();
  for (let t = 0; t < spans.length; t += TRACE_SPANS) {
    const evaluation = new engine.TraceEvaluation(ruleSet);
    for (let i = t; i < Math.min(t + TRACE_SPANS, spans.length); i++) evaluation.add(spans[i]);
    evaluation.hits();
  }
  return spans.length / ((performance.now() - start) / 1000);
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (n) => Math.round(n).toLocaleString('en-US');

for (const n of [1, 10, 100]) {
  const [setA, setB] = [A.compileRuleSet(rules(n)), B.compileRuleSet(rules(n))];
  rate(A, setA); // warm-up
  rate(B, setB);
  const [a, b] = [[], []];
  // Alternate which build goes first, so neither always runs on the hotter half of a pair.
  for (let k = 0; k < RUNS; k++) {
    if (k % 2 === 0) a.push(rate(A, setA)), b.push(rate(B, setB));
    else b.push(rate(B, setB)), a.push(rate(A, setA));
  }
  console.log(`${String(n).padStart(3)} rules: before ${fmt(median(a))} spans/s, after ${fmt(median(b))} spans/s, after / before ${(median(b) / median(a)).toFixed(2)}`);
}
const texts = Array.from({ length: 1000 }, (_, i) => ruleText(i));
A.parseRule(texts[0]);
B.parseRule(texts[0]);
const [pa, pb] = [[], []];
for (let k = 0; k < 7; k++) {
  for (const [engine, out] of k % 2 ? [[B, pb], [A, pa]] : [[A, pa], [B, pb]]) {
    const start = performance.now();
    for (const text of texts) engine.parseRule(text);
    out.push(((performance.now() - start) * 1000) / texts.length);
  }
}
console.log(`parse: before ${median(pa).toFixed(1)} µs per rule, after ${median(pb).toFixed(1)} µs per rule, after / before ${(median(pb) / median(pa)).toFixed(2)}`);
