import v8 from 'node:v8';
import { describe, expect, it } from 'vitest';
import { RuleSyntaxError } from '../../../src/errors.js';
import type { AttributeValue } from '../../../src/model/span.js';
import { compileRuleSet, type RuleDefinition, type RuleSpan } from '../../../src/rules/compile.js';
import { EVIDENCE_SPAN_IDS, TraceEvaluation } from '../../../src/rules/evaluate.js';
import { fired, rule, span } from '../../support/rule-spans.js';
import { RuleSetCache } from '../../../src/rules/cache.js';

describe('span checks and attribute lookup', () => {
  it('matches span names exactly', () => {
    expect(fired('payment.charge', [span('payment.charge')])).toBe(true);
    expect(fired('payment.charge', [span('payment.charge_card'), span('payment')])).toBe(false);
    expect(fired('"GET /items"', [span('GET /items')])).toBe(true);
  });

  it('reads span attributes first, then resource attributes', () => {
    expect(fired('s.where(service.name == checkout)', [span('s', {}, { 'service.name': 'checkout' })])).toBe(true);
    expect(fired('s.where(env == prod)', [span('s', { env: 'prod' }, { env: 'test' })])).toBe(true);
    expect(fired('s.where(env == test)', [span('s', { env: 'prod' }, { env: 'test' })])).toBe(false);
  });

  it('makes every comparison on a missing or null attribute false, != included', () => {
    for (const op of ['== 1', '!= 1', '> 1', '>= 1', '< 1', '<= 1', 'in [a]', 'matches ".*"']) {
      expect(fired(`s.where(x ${op})`, [span('s', { y: 1 })]), op).toBe(false);
      expect(fired(`s.where(x ${op})`, [span('s', { x: null })]), op).toBe(false);
    }
  });

  it('compares numbers with numbers and numeric strings, booleans with booleans and their text, strings with text', () => {
    expect(fired('s.where(amount > 1000)', [span('s', { amount: 1000.5 })])).toBe(true);
    expect(fired('s.where(amount > 1000)', [span('s', { amount: '2500' })])).toBe(true);
    expect(fired('s.where(amount > 1000)', [span('s', { amount: 1000 })])).toBe(false);
    expect(fired('s.where(amount >= 1000)', [span('s', { amount: 1000 })])).toBe(true);
    expect(fired('s.where(amount < 1000)', [span('s', { amount: 'lots' })])).toBe(false);
    expect(fired('s.where(amount <= 5)', [span('s', { amount: 5 })])).toBe(true);
    expect(fired('s.where(pii == true)', [span('s', { pii: true })])).toBe(true);
    expect(fired('s.where(pii == true)', [span('s', { pii: 'true' })])).toBe(true);
    expect(fired('s.where(pii == true)', [span('s', { pii: 1 })])).toBe(false);
    expect(fired('s.where(pii == false)', [span('s', { pii: 'false' })])).toBe(true);
    expect(fired('s.where(currency == USD)', [span('s', { currency: 'USD' })])).toBe(true);
    expect(fired('s.where(currency != USD)', [span('s', { currency: 'EUR' })])).toBe(true);
    expect(fired('s.where(currency != USD)', [span('s', { currency: 'USD' })])).toBe(false);
    expect(fired('s.where(code == "200")', [span('s', { code: 200 })])).toBe(true);
  });

  it('matches in linear time: a pattern that makes a backtracking engine run for ages returns', () => {
    // With JavaScript's RegExp, (a+)+$ against 50,000 "a"s and a "!" does not finish in any
    // useful time (exponential backtracking); RE2 answers at once. No timing is asserted: the
    // test would simply not return with a backtracking engine.
    const hostile = `${'a'.repeat(50_000)}!`;
    expect(fired('s.where(e matches "(a+)+$")', [span('s', { e: hostile })])).toBe(false);
    expect(fired('s.where(e matches "(a+)+!$")', [span('s', { e: hostile })])).toBe(true);
  });

  it('supports in, matches (unanchored, as Go regexp) and array attributes', () => {
    expect(fired('s.where(p in [stripe, square])', [span('s', { p: 'square' })])).toBe(true);
    expect(fired('s.where(p in [stripe, square])', [span('s', { p: 'adyen' })])).toBe(false);
    expect(fired('s.where(e matches "/api/v1/admin/.*")', [span('s', { e: 'GET /api/v1/admin/users' })])).toBe(true);
    expect(fired('s.where(e matches "^/api/v1/admin/")', [span('s', { e: 'GET /api/v1/admin/users' })])).toBe(false);
    expect(fired('s.where(tags == red)', [span('s', { tags: ['blue', 'red'] })])).toBe(true);
    expect(fired('s.where(tags != red)', [span('s', { tags: ['blue', 'red'] })])).toBe(false);
    expect(fired('s.where(tags != red)', [span('s', { tags: ['blue'] })])).toBe(true);
  });

  it('requires every chained where on the same span', () => {
    const check = 'p.where(amount > 1000).where(currency == USD)';
    expect(fired(check, [span('p', { amount: 5000, currency: 'USD' })])).toBe(true);
    expect(fired(check, [span('p', { amount: 5000, currency: 'EUR' }), span('p', { amount: 5, currency: 'USD' })])).toBe(false);
  });
});

describe('conditions and invariants', () => {
  it('fires a simple condition when it holds for the trace, with and / or / not', () => {
    const rule = 'payment.charge_card.where(amount > 1000) and not payment.fraud_check';
    expect(fired(rule, [span('payment.charge_card', { amount: 5000 })])).toBe(true);
    expect(fired(rule, [span('payment.charge_card', { amount: 5000 }), span('payment.fraud_check')])).toBe(false);
    expect(fired('a or b and c', [span('a')])).toBe(true);
    expect(fired('a or b and c', [span('b')])).toBe(false);
    expect(fired('(a or b) and c', [span('a')])).toBe(false);
  });

  it('counts spans', () => {
    const retries = (n: number) => Array.from({ length: n }, () => span('http.retry'));
    expect(fired('count(http.retry) > 3', retries(3))).toBe(false);
    expect(fired('count(http.retry) > 3', retries(4))).toBe(true);
    expect(fired('count(http.retry) == 0', [])).toBe(true);
    expect(fired('count(http.request) != count(http.response)', [span('http.request'), span('http.response')])).toBe(false);
    expect(fired('count(http.request) != count(http.response)', [span('http.request'), span('http.request'), span('http.response')])).toBe(true);
    expect(fired('count(s.where(x > 1)) >= 2', [span('s', { x: 2 }), span('s', { x: 0 }), span('s', { x: 3 })])).toBe(true);
  });

  it('fires an invariant when `when` holds and `always` fails or `never` holds, with the evidence', () => {
    const set = compileRuleSet([rule('pay', 'when { p.where(amount > 1000) } always { fraud and review } never { bypass or skip }', { severity: 'CRITICAL', name: 'Payment controls' })]);
    const run = (spans: RuleSpan[]) => {
      const e = new TraceEvaluation(set);
      e.addAll(spans);
      return e.hits();
    };
    expect(run([span('fraud'), span('bypass')])).toEqual([]); // when does not hold
    expect(run([span('p', { amount: 5000 }), span('fraud'), span('review')])).toEqual([]);
    const charge = span('p', { amount: 5000 });
    const skip = span('skip');
    const [hit, ...rest] = run([charge, span('fraud'), skip, span('p', { amount: 1 })]);
    expect(rest).toEqual([]);
    expect(hit).toEqual({
      ruleId: 'pay',
      ruleName: 'Payment controls',
      severity: 'CRITICAL',
      message: 'Payment controls: when p.where(amount > 1000); missing always: review; present never: skip',
      evidence: {
        matches: { 'p.where(amount > 1000)': 1, fraud: 1, review: 0, bypass: 0, skip: 1 },
        missingAlways: ['review'],
        presentNever: ['skip'],
        spanIds: [charge.spanId, skip.spanId].sort(),
        spanCount: 4,
      },
    });
  });

  it('keeps a bounded, order-independent list of the smallest triggering span ids', () => {
    const set = compileRuleSet([rule('r', 'count(s) > 0')]);
    const spans = Array.from({ length: 50 }, () => span('s'));
    const forward = new TraceEvaluation(set);
    forward.addAll(spans);
    const backward = new TraceEvaluation(set);
    backward.addAll([...spans].reverse());
    expect(forward.hits()).toEqual(backward.hits());
    expect(forward.hits()[0]!.evidence.spanIds).toEqual(spans.slice(0, EVIDENCE_SPAN_IDS).map((s) => s.spanId));
  });

  it('shares one counter between rules that mention the same check, and skips disabled rules', () => {
    const set = compileRuleSet([rule('a', 'x.where(n > 1) and y'), rule('b', 'count(x.where(n > 1)) > 2'), rule('c', 'z', { enabled: false })]);
    expect(set.checks.map((c) => c.text)).toEqual(['x.where(n > 1)', 'y']);
    expect(set.rules.map((r) => r.definition.id)).toEqual(['a', 'b']);
  });

  it('names the rule in a syntax error', () => {
    expect(() => compileRuleSet([rule('bad-rule', 'a and')])).toThrow(RuleSyntaxError);
    expect(() => compileRuleSet([rule('bad-rule', 'a and')])).toThrow(/^rule bad-rule: 1:6: expected /);
  });
});

describe('bounded trace state', () => {
  it('holds a 100,000-span trace against 20 rules in well under 1 MB, the same as after 10 spans', () => {
    const rules = Array.from({ length: 20 }, (_, i) =>
      i % 2 === 0
        ? rule(`r${i}`, `when { op${i}.where(amount > ${i * 10}) } always { audit${i} } never { bypass${i % 3} }`)
        : rule(`r${i}`, `count(op${i}) > 1000 and not op${(i + 1) % 20}.where(region in [eu, us])`),
    );
    const evaluation = new TraceEvaluation(compileRuleSet(rules));
    const names = [...Array.from({ length: 20 }, (_, i) => `op${i}`), 'audit0', 'bypass1', 'unrelated'];
    const make = (i: number): RuleSpan => ({
      name: names[i % names.length]!,
      spanId: i.toString(16).padStart(16, '0'),
      attributes: { amount: i % 500, region: i % 2 ? 'eu' : 'ap' },
    });
    for (let i = 0; i < 10; i++) evaluation.add(make(i));
    const small = v8.serialize(evaluation.state).length;
    for (let i = 10; i < 100_000; i++) evaluation.add(make(i));
    const big = v8.serialize(evaluation.state).length;
    expect(evaluation.state.spanCount).toBe(100_000);
    expect(evaluation.hits().length).toBeGreaterThan(0);
    // Counters and evidence lists are filled, not grown: only span-id slots up to the cap are added.
    expect(big).toBeLessThan(64 * 1024);
    expect(big - small).toBeLessThanOrEqual(evaluation.ruleSet.checks.length * EVIDENCE_SPAN_IDS * 20);
    console.log(`trace state: ${evaluation.ruleSet.checks.length} checks, ${big} bytes serialized after 100,000 spans (${small} after 10)`);
  });
});

describe('RuleSetCache', () => {
  it('compiles once per tenant and again only when a rule changes', () => {
    const cache = new RuleSetCache();
    const rules = [rule('a', 'x'), rule('b', 'y')];
    const first = cache.get('t1', rules);
    expect(cache.get('t1', [rule('a', 'x'), rule('b', 'y')])).toBe(first);
    expect(cache.stats()).toEqual({ hits: 1, misses: 1, tenants: 1 });
    const changed = cache.get('t1', [rule('a', 'x'), rule('b', 'y and z')]);
    expect(changed).not.toBe(first);
    expect(changed.checks.map((c) => c.text)).toEqual(['x', 'y', 'z']);
    cache.get('t2', rules);
    expect(cache.stats()).toEqual({ hits: 1, misses: 3, tenants: 2 });
  });

  it('follows rule versions when rules have them', () => {
    const cache = new RuleSetCache();
    const first = cache.get('t', [rule('a', 'x', { version: 1 })]);
    expect(cache.get('t', [rule('a', 'x', { version: 1, name: 'renamed' })])).toBe(first);
    expect(cache.get('t', [rule('a', 'y', { version: 2 })])).not.toBe(first);
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 2 });
  });

  it('drops the least recently used tenant beyond its bound, and on invalidate', () => {
    const cache = new RuleSetCache(2);
    const rules = [rule('a', 'x')];
    cache.get('t1', rules);
    cache.get('t2', rules);
    cache.get('t1', rules);
    cache.get('t3', rules); // evicts t2
    expect(cache.stats().tenants).toBe(2);
    cache.get('t1', rules);
    cache.get('t2', rules);
    expect(cache.stats()).toEqual({ hits: 2, misses: 4, tenants: 2 });
    cache.invalidate('t2');
    cache.get('t2', rules);
    expect(cache.stats().misses).toBe(5);
  });
});
