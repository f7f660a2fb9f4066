import { describe, expect, it } from 'vitest';
import { RuleSyntaxError } from '../../../src/errors.js';
import { ruleText } from '../../../src/rules/ast.js';
import { parseRule } from '../../../src/rules/parser.js';

const exists = (name: string, where: unknown[] = []) => ({ type: 'exists', check: { name, where } });

describe('parseRule: BeTrace forms', () => {
  it('reads a bare span name as "a span with that name exists"', () => {
    expect(parseRule('payment.charge')).toEqual({ type: 'condition', condition: exists('payment.charge') });
  });

  it('reads chained where clauses with numbers and bare identifiers as strings', () => {
    expect(parseRule('payment.charge.where(amount > 1000).where(currency == USD)')).toEqual({
      type: 'condition',
      condition: exists('payment.charge', [
        { attribute: 'amount', op: '>', value: { type: 'number', value: 1000 } },
        { attribute: 'currency', op: '==', value: { type: 'string', value: 'USD', quoted: false } },
      ]),
    });
  });

  it('reads every comparison operator and value kind', () => {
    const where = (text: string) => {
      const r = parseRule(`s.where(${text})`);
      return r.type === 'condition' && r.condition.type === 'exists' ? r.condition.check.where[0] : undefined;
    };
    expect(where('a == 1.5')).toEqual({ attribute: 'a', op: '==', value: { type: 'number', value: 1.5 } });
    expect(where('a != -2')).toEqual({ attribute: 'a', op: '!=', value: { type: 'number', value: -2 } });
    expect(where('a >= 0')?.op).toBe('>=');
    expect(where('a < 0')?.op).toBe('<');
    expect(where('a <= 0')?.op).toBe('<=');
    expect(where('data.contains_pii == true')).toEqual({ attribute: 'data.contains_pii', op: '==', value: { type: 'boolean', value: true } });
    expect(where('a == "two words"')?.value).toEqual({ type: 'string', value: 'two words', quoted: true });
    expect(where('processor in [stripe, square]')?.value).toEqual({
      type: 'list',
      items: [
        { type: 'string', value: 'stripe', quoted: false },
        { type: 'string', value: 'square', quoted: false },
      ],
    });
    expect(where('endpoint matches "/api/v1/admin/.*"')).toEqual({ attribute: 'endpoint', op: 'matches', value: { type: 'string', value: '/api/v1/admin/.*', quoted: true } });
    // Backslashes stay as written inside quotes (regexes), only \" is an escape.
    expect(where('a matches "^\\d+\\"x"')?.value).toEqual({ type: 'string', value: '^\\d+"x', quoted: true });
  });

  it('reads count comparisons against a number or another count', () => {
    expect(parseRule('count(http.retry) > 3')).toEqual({
      type: 'condition',
      condition: { type: 'count', check: { name: 'http.retry', where: [] }, op: '>', right: { type: 'number', value: 3 } },
    });
    expect(parseRule('count(http.request) != count(http.response)')).toEqual({
      type: 'condition',
      condition: { type: 'count', check: { name: 'http.request', where: [] }, op: '!=', right: { type: 'count', check: { name: 'http.response', where: [] } } },
    });
  });

  it('gives and precedence over or, not over and, and honours parentheses', () => {
    expect(ruleText(parseRule('a or b and c'))).toBe('a or (b and c)');
    expect(ruleText(parseRule('(a or b) and c'))).toBe('(a or b) and c');
    expect(ruleText(parseRule('not a and b'))).toBe('not a and b');
    expect(parseRule('not a and b')).toEqual({ type: 'condition', condition: { type: 'and', left: { type: 'not', operand: exists('a') }, right: exists('b') } });
    expect(ruleText(parseRule('not (bypass or skip)'))).toBe('not (bypass or skip)');
    expect(ruleText(parseRule('((a or b) and c) or d'))).toBe('((a or b) and c) or d');
    expect(ruleText(parseRule('a and b and c'))).toBe('(a and b) and c');
  });

  it('reads conditional invariants with always and never in either order, and only one of them', () => {
    const both = parseRule('when { p.where(amount > 1000) }\nalways { f }\nnever { b }');
    expect(both).toEqual({ type: 'invariant', when: exists('p', [{ attribute: 'amount', op: '>', value: { type: 'number', value: 1000 } }]), always: exists('f'), never: exists('b') });
    expect(parseRule('when { p.where(amount > 1000) } never { b } always { f }')).toEqual(both);
    expect(parseRule('when { p } always { f }')).toEqual({ type: 'invariant', when: exists('p'), always: exists('f') });
    expect(parseRule('when { p } never { b }')).toEqual({ type: 'invariant', when: exists('p'), never: exists('b') });
  });

  it('reads the multi-line BeTrace examples as written', () => {
    const rule = parseRule(`when {
  payment.charge_card
    .where(amount > 10000)
    .where(customer.verification_level == unverified)
}
always {
  payment.fraud_check and
  (fraud.score.where(score < 0.3) or manual.review)
}
never {
  payment.auto_approve or
  payment.skip_verification
}`);
    expect(ruleText(rule)).toBe(
      'when { payment.charge_card.where(amount > 10000).where(customer.verification_level == unverified) } always { payment.fraud_check and (fraud.score.where(score < 0.3) or manual.review) } never { payment.auto_approve or payment.skip_verification }',
    );
  });

  it('accepts quoted span and attribute names and // comments (extensions)', () => {
    expect(parseRule('"GET /items".where("http.status-code" >= 500) // server errors')).toEqual({
      type: 'condition',
      condition: exists('GET /items', [{ attribute: 'http.status-code', op: '>=', value: { type: 'number', value: 500 } }]),
    });
  });

  it('keeps keywords out of names but not names that start with one', () => {
    expect(ruleText(parseRule('android.app and order.notify and not notice'))).toBe('(android.app and order.notify) and not notice');
  });
});

describe('parseRule: errors carry line, column and what was expected', () => {
  const error = (text: string): RuleSyntaxError => {
    try {
      parseRule(text);
    } catch (e) {
      if (e instanceof RuleSyntaxError) return e;
      throw e;
    }
    throw new Error(`parsed: ${text}`);
  };

  it('names the position and the expected token', () => {
    const e = error('when {\n  payment.where(amount > 1000 { x }');
    expect(e.message).toBe('2:31: expected ")" but found "{"');
    expect([e.line, e.column, e.expected]).toEqual([2, 31, ['")"']]);
    expect(e.inRule('high-value-payment').message).toBe('rule high-value-payment: 2:31: expected ")" but found "{"');
  });

  it('refuses an invariant without always or never, and blocks without braces', () => {
    expect(error('when { payment }').message).toBe('1:17: expected "always" or "never" but found end of input');
    expect(error('when payment always { x }').message).toBe('1:6: expected "{" but found "p"');
    expect(error('when { p } always x').message).toBe('1:19: expected "{" but found "x"');
  });

  it('refuses an incomplete condition and an empty one', () => {
    expect(error('a and').message).toBe('1:6: expected "(", "count", "not", identifier or quoted string but found end of input');
    expect(error('').message).toMatch(/^1:1: expected .* but found end of input$/);
    expect(error('a b').message).toMatch(/^1:3: expected .*"and".* but found "b"$/);
  });

  it('refuses a pattern RE2 cannot run (lookaround, backreferences), pointing at the predicate', () => {
    expect(error('a.where(p matches "(?<=x)y")').message).toMatch(/^1:9: invalid regular expression: /);
    expect(error('a.where(p matches "(a)\\1")').message).toMatch(/^1:9: invalid regular expression: /);
  });

  it('refuses comparisons that can never hold, pointing at the predicate', () => {
    expect(error('a.where(amount > USD)').message).toBe('1:9: ">" compares numbers, not USD');
    expect(error('a.where(p in stripe)').message).toBe('1:9: "in" needs a list such as [a, b], not stripe');
    expect(error('a.where(p == [x, y])').message).toBe('1:9: "==" cannot compare with a list (use "in")');
    expect(error('a.where(p matches abc)').message).toBe('1:9: "matches" needs a quoted regular expression, not abc');
    expect(error('a.where(p matches "(")').message).toMatch(/^1:9: invalid regular expression: /);
    expect(error('count(a) in [1]').message).toMatch(/^1:10: expected /);
  });
});
