import v8 from 'node:v8';
import { describe, expect, it } from 'vitest';
import type { AttributeValue } from '../../../src/model/span.js';
import { compareText, compileRuleSet, type RuleDefinition, type RuleSpan } from '../../../src/rules/compile.js';
import { EVIDENCE_SPAN_IDS, TraceEvaluation } from '../../../src/rules/evaluate.js';
import { fired, rule, span } from '../../support/rule-spans.js';

// The forms of issue 22: contains, boolean where, bare boolean attributes, direct comparisons,
// when-only rules, ordering against text.

describe('contains', () => {
  it('is a case-sensitive substring of the attribute\'s text', () => {
    expect(fired('api.request.where(path contains admin)', [span('api.request', { path: '/api/v1/admin/users' })])).toBe(true);
    expect(fired('api.request.where(path contains admin)', [span('api.request', { path: '/api/v1/Admin/users' })])).toBe(false);
    expect(fired('error.span.where(message contains "connection refused")', [span('error.span', { message: 'dial: connection refused (3)' })])).toBe(true);
    expect(fired('s.where(code contains 50)', [span('s', { code: 503 })])).toBe(true);
    expect(fired('s.where(x contains a)', [span('s', {})])).toBe(false);
  });

  it('asks a list-valued attribute for a member, not a substring of one', () => {
    expect(fired('s.where(tags contains premium)', [span('s', { tags: ['basic', 'premium'] })])).toBe(true);
    expect(fired('s.where(tags contains prem)', [span('s', { tags: ['basic', 'premium'] })])).toBe(false);
    expect(fired('s.where(codes contains 200)', [span('s', { codes: [404, 200] })])).toBe(true);
  });
});

describe('boolean where', () => {
  it('combines comparisons of one span with and / or / not and parentheses', () => {
    const usd = 'payment.where(amount > 1000 and currency == USD)';
    expect(fired(usd, [span('payment', { amount: 5000, currency: 'USD' })])).toBe(true);
    // Two spans that each satisfy one half do not make one span satisfying both.
    expect(fired(usd, [span('payment', { amount: 5000, currency: 'EUR' }), span('payment', { amount: 1, currency: 'USD' })])).toBe(false);
    const either = 'user.where(role == premium or level != 3)';
    expect(fired(either, [span('user', { role: 'basic', level: 2 })])).toBe(true);
    expect(fired(either, [span('user', { role: 'basic', level: 3 })])).toBe(false);
    expect(fired('p.where(a or b and c)', [span('p', { a: true })])).toBe(true);
    expect(fired('p.where((a or b) and c)', [span('p', { a: true })])).toBe(false);
    expect(fired('api.request.where(not (status == 200))', [span('api.request', { status: 500 })])).toBe(true);
    expect(fired('api.request.where(not (status == 200))', [span('api.request', { status: 200 })])).toBe(false);
  });

  it('reads a bare attribute as true when it is true or "true"; missing is false, so not missing is true', () => {
    expect(fired('payment.where(verified)', [span('payment', { verified: true })])).toBe(true);
    expect(fired('payment.where(verified)', [span('payment', { verified: 'true' })])).toBe(true);
    for (const v of [false, 'false', 1, 'yes']) expect(fired('payment.where(verified)', [span('payment', { verified: v })]), String(v)).toBe(false);
    expect(fired('payment.where(verified)', [span('payment')])).toBe(false);
    expect(fired('payment.where(not verified)', [span('payment')])).toBe(true);
    expect(fired('payment.where(not verified)', [span('payment', { verified: false })])).toBe(true);
    expect(fired('payment.where(not verified)', [span('payment', { verified: true })])).toBe(false);
    expect(fired('payment.where(not (verified and approved))', [span('payment', { verified: true, approved: true })])).toBe(false);
    expect(fired('payment.where(not (verified and approved))', [span('payment', { verified: true })])).toBe(true);
    expect(fired('payment.where(not fraud_check.completed)', [span('payment', { 'fraud_check.completed': true })])).toBe(false);
  });

  it('keeps != false on a missing attribute, unlike not (… == …)', () => {
    expect(fired('s.where(x != 1)', [span('s')])).toBe(false);
    expect(fired('s.where(not (x == 1))', [span('s')])).toBe(true);
  });
});

describe('direct attribute comparisons', () => {
  it('mean the where form: the last segment is the attribute', () => {
    expect(fired('payment.amount > 1000', [span('payment', { amount: 5000 })])).toBe(true);
    expect(fired('payment.amount > 1000', [span('payment.amount', { amount: 5000 })])).toBe(false);
    expect(fired('http.response.status >= 500', [span('http.response', { status: 503 })])).toBe(true);
    expect(fired('api.request.endpoint matches "/admin/.*"', [span('api.request', { endpoint: '/api/admin/x' })])).toBe(true);
    expect(fired('"GET /items"."http.status_code" >= 500', [span('GET /items', { 'http.status_code': 502 })])).toBe(true);
  });

  it('combine with span checks in when, always and never', () => {
    const controls = 'when { payment.amount > 1000 and fraud_check } always { approval }';
    expect(fired(controls, [span('payment', { amount: 5000 }), span('fraud_check')])).toBe(true);
    expect(fired(controls, [span('payment', { amount: 5000 }), span('fraud_check'), span('approval')])).toBe(false);
    expect(fired(controls, [span('payment', { amount: 5 }), span('fraud_check')])).toBe(false);
    expect(fired('when { payment } never { payment.status == declined }', [span('payment', { status: 'declined' })])).toBe(true);
    // Two direct comparisons are two checks: each may be met by a different span.
    expect(fired('payment.amount > 1000 and payment.currency == USD', [span('payment', { amount: 5000 }), span('payment', { currency: 'USD' })])).toBe(true);
  });

  it('without a span name, apply to spans of any name', () => {
    expect(fired('processor in [stripe, square]', [span('charge', { processor: 'square' })])).toBe(true);
    expect(fired('processor in [stripe, square]', [span('charge', { processor: 'adyen' })])).toBe(false);
    expect(fired('"http.status_code" >= 500 and not alert', [span('a', { 'http.status_code': 200 }), span('b', { 'http.status_code': 500 })])).toBe(true);
    // An any-span check and a named one that share the span are both counted.
    expect(fired('amount > 10 and p.where(amount > 10)', [span('p', { amount: 11 })])).toBe(true);
  });
});

describe('when-only rules', () => {
  it('fire when the condition holds', () => {
    const retries = (n: number) => Array.from({ length: n }, () => span('http_retry'));
    expect(fired('when { count(http_retry) > 3 }', retries(4))).toBe(true);
    expect(fired('when { count(http_retry) > 3 }', retries(3))).toBe(false);
    expect(fired('when { circuit_breaker_opened }', [span('circuit_breaker_opened')])).toBe(true);
    const evaluation = new TraceEvaluation(compileRuleSet([rule('cb', 'when { circuit_breaker_opened }')]));
    evaluation.add(span('circuit_breaker_opened'));
    expect(evaluation.hits()[0]!.message).toBe('cb: circuit_breaker_opened');
  });
});

describe('ordering against text', () => {
  it('compares numbers when both sides are numbers, else the texts in code point order', () => {
    expect(fired('s.where(tier > bronze)', [span('s', { tier: 'silver' })])).toBe(true);
    expect(fired('s.where(tier > silver)', [span('s', { tier: 'bronze' })])).toBe(false);
    expect(fired('s.where(version >= "10")', [span('s', { version: 9 })])).toBe(false);
    expect(fired('s.where(version >= "10")', [span('s', { version: '11' })])).toBe(true);
    expect(fired('s.where(version < "2.0.1")', [span('s', { version: '10.0.0' })])).toBe(true); // text: "1" < "2"
    expect(fired('s.where(depth > max_capacity)', [span('s', { depth: 10000, max_capacity: 5000 })])).toBe(false); // "10000" < "max_capacity"
    expect(fired('s.where(flag >= true)', [span('s', { flag: 'true' })])).toBe(true);
    expect(fired('s.where(x > a)', [span('s')])).toBe(false);
    // Against a number, a value that is not a number makes the comparison false (not text).
    expect(fired('s.where(amount < 1000)', [span('s', { amount: 'lots' })])).toBe(false);
  });

  it('orders astral characters after the rest of the BMP, as UTF-8 byte order does', () => {
    expect(compareText('\u{1F600}', '\uFFFD')).toBe(1);
    expect(compareText('a', 'ab')).toBe(-1);
    expect(compareText('b', 'ab')).toBe(1);
    expect(compareText('x', 'x')).toBe(0);
  });

  it('compares a count with a non-number as BeTrace does: numerically for a numeric string, else as text', () => {
    const three = [span('op'), span('op'), span('op')];
    expect(fired('count(op) == "3"', three)).toBe(true);
    expect(fired('count(op) > "2"', three)).toBe(true);
    expect(fired('count(op) != "3"', three)).toBe(false);
    expect(fired('count(op) <= N', three)).toBe(true); // "3" < "N"
  });
});

describe('bounded state with the new forms', () => {
  it('keeps one counter per check, any-span checks included, whatever the span count', () => {
    const rules = [
      rule('a', 'when { payment.amount > 1000 and not payment.where(verified or currency contains US) } always { review }'),
      rule('b', 'endpoint contains admin and not auth'),
      rule('c', 'when { count(retry) >= limit }'),
    ];
    const evaluation = new TraceEvaluation(compileRuleSet(rules));
    const make = (i: number) => ({ name: ['payment', 'retry', 'other'][i % 3]!, spanId: i.toString(16).padStart(16, '0'), attributes: { amount: i % 3000, currency: i % 2 ? 'USD' : 'EUR', endpoint: i % 5 ? '/x' : '/admin' } });
    for (let i = 0; i < 10; i++) evaluation.add(make(i));
    const small = v8.serialize(evaluation.state).length;
    for (let i = 10; i < 50_000; i++) evaluation.add(make(i));
    const big = v8.serialize(evaluation.state).length;
    expect(evaluation.hits().map((h) => h.ruleId)).toEqual(['b']);
    expect(big - small).toBeLessThanOrEqual(evaluation.ruleSet.checks.length * EVIDENCE_SPAN_IDS * 20);
  });
});
