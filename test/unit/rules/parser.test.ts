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
        { type: 'compare', attribute: 'amount', op: '>', value: { type: 'number', value: 1000 } },
        { type: 'compare', attribute: 'currency', op: '==', value: { type: 'string', value: 'USD', quoted: false } },
      ]),
    });
  });

  it('reads every comparison operator and value kind', () => {
    const where = (text: string) => {
      const r = parseRule(`s.where(${text})`);
      const w = r.type === 'condition' && r.condition.type === 'exists' ? r.condition.check.where[0] : undefined;
      return w?.type === 'compare' ? w : undefined;
    };
    expect(where('a == 1.5')).toEqual({ type: 'compare', attribute: 'a', op: '==', value: { type: 'number', value: 1.5 } });
    expect(where('a != -2')).toEqual({ type: 'compare', attribute: 'a', op: '!=', value: { type: 'number', value: -2 } });
    expect(where('a >= 0')?.op).toBe('>=');
    expect(where('a < 0')?.op).toBe('<');
    expect(where('a <= 0')?.op).toBe('<=');
    expect(where('data.contains_pii == true')).toEqual({ type: 'compare', attribute: 'data.contains_pii', op: '==', value: { type: 'boolean', value: true } });
    expect(where('a == "two words"')?.value).toEqual({ type: 'string', value: 'two words', quoted: true });
    expect(where('processor in [stripe, square]')?.value).toEqual({
      type: 'list',
      items: [
        { type: 'string', value: 'stripe', quoted: false },
        { type: 'string', value: 'square', quoted: false },
      ],
    });
    expect(where('endpoint matches "/api/v1/admin/.*"')).toEqual({ type: 'compare', attribute: 'endpoint', op: 'matches', value: { type: 'string', value: '/api/v1/admin/.*', quoted: true } });
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
    expect(both).toEqual({ type: 'invariant', when: exists('p', [{ type: 'compare', attribute: 'amount', op: '>', value: { type: 'number', value: 1000 } }]), always: exists('f'), never: exists('b') });
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
      condition: exists('GET /items', [{ type: 'compare', attribute: 'http.status-code', op: '>=', value: { type: 'number', value: 500 } }]),
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
    expect(e.message).toBe('2:31: expected ")", "and" or "or" but found "{"');
    expect([e.line, e.column, e.expected]).toEqual([2, 31, ['")"', '"and"', '"or"']]);
    expect(e.inRule('high-value-payment').message).toBe('rule high-value-payment: 2:31: expected ")", "and" or "or" but found "{"');
  });

  it('refuses blocks without braces and anything after when { … } but always / never', () => {
    expect(error('when { payment } x').message).toBe('1:18: expected "always", "never" or end of input but found "x"');
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

  it('refuses comparisons that cannot be evaluated, pointing at the comparison', () => {
    expect(error('a.where(amount > [1, 2])').message).toBe('1:9: ">" cannot compare with a list (use "in")');
    expect(error('a.where(p contains [x])').message).toBe('1:9: "contains" cannot compare with a list (use "in")');
    expect(error('a.p in stripe').message).toBe('1:1: "in" needs a list such as [a, b], not stripe');
    expect(error('a.where(p in stripe)').message).toBe('1:9: "in" needs a list such as [a, b], not stripe');
    expect(error('a.where(p == [x, y])').message).toBe('1:9: "==" cannot compare with a list (use "in")');
    expect(error('a.where(p matches abc)').message).toBe('1:9: "matches" needs a quoted regular expression, not abc');
    expect(error('a.where(p matches "(")').message).toMatch(/^1:9: invalid regular expression: /);
    expect(error('count(a) in [1]').message).toMatch(/^1:10: expected /);
  });
});

describe('parseRule: the rest of BeTrace\'s language (issue 22)', () => {
  const compare = (attribute: string, op: string, value: unknown) => ({ type: 'compare', attribute, op, value });
  const num = (value: number) => ({ type: 'number', value });
  const word = (value: string) => ({ type: 'string', value, quoted: false });
  const canonical = (text: string) => ruleText(parseRule(text));

  it('reads contains, with a quoted string or an identifier', () => {
    expect(parseRule('api.request.where(path contains admin)')).toEqual({ type: 'condition', condition: exists('api.request', [compare('path', 'contains', word('admin'))]) });
    expect(canonical('error.span.where(message contains "connection refused")')).toBe('error.span.where(message contains "connection refused")');
  });

  it('reads and / or / not / parentheses inside where, not > and > or', () => {
    const where = (text: string) => {
      const r = parseRule(`p.where(${text})`);
      return r.type === 'condition' && r.condition.type === 'exists' ? r.condition.check.where : undefined;
    };
    expect(where('amount > 1000 and currency == USD')).toEqual([{ type: 'and', left: compare('amount', '>', num(1000)), right: compare('currency', '==', word('USD')) }]);
    expect(where('not verified')).toEqual([{ type: 'not', operand: { type: 'truthy', attribute: 'verified' } }]);
    expect(where('verified')).toEqual([{ type: 'truthy', attribute: 'verified' }]);
    expect(canonical('p.where(a or b and c)')).toBe('p.where(a or (b and c))');
    expect(canonical('p.where((a or b) and not c)')).toBe('p.where((a or b) and not c)');
    expect(canonical('p.where(not (verified and approved))')).toBe('p.where(not (verified and approved))');
    expect(canonical('p.where(not status == 200)')).toBe('p.where(not (status == 200))');
    expect(canonical('p.where(role == premium or level != 3)')).toBe('p.where(role == premium or level != 3)');
    // A dotted bare name inside where is a (dotted) attribute of the span.
    expect(where('not fraud_check.completed')).toEqual([{ type: 'not', operand: { type: 'truthy', attribute: 'fraud_check.completed' } }]);
  });

  it('reads a direct comparison as the span name before the last dot and the attribute after it', () => {
    expect(parseRule('payment.amount > 1000')).toEqual(parseRule('payment.where(amount > 1000)'));
    expect(parseRule('http.response.status >= 500')).toEqual(parseRule('http.response.where(status >= 500)'));
    expect(canonical('when { payment.amount > 1000 and fraud_check } always { approval }')).toBe('when { payment.where(amount > 1000) and fraud_check } always { approval }');
    expect(canonical('not api.request.endpoint matches "/admin/.*"')).toBe('not api.request.where(endpoint matches "/admin/.*")');
    expect(canonical('payment.description contains "suspicious"')).toBe('payment.where(description contains "suspicious")');
  });

  it('writes a quoted span name or a dotted attribute with quotes, and reads a lone attribute as "any span"', () => {
    expect(parseRule('"GET /items".status >= 500')).toEqual(parseRule('"GET /items".where(status >= 500)'));
    expect(parseRule('payment."card.type" == corporate')).toEqual(parseRule('payment.where(card.type == corporate)'));
    expect(parseRule('"GET /items"."http.status_code" >= 500')).toEqual(parseRule('"GET /items".where(http.status_code >= 500)'));
    expect(parseRule('processor in [stripe, square]')).toEqual({ type: 'condition', condition: { type: 'exists', check: { name: null, where: [compare('processor', 'in', { type: 'list', items: [word('stripe'), word('square')] })] } } });
    expect(canonical('"http.status_code" >= 500')).toBe('"http.status_code" >= 500');
    expect(canonical('endpoint matches "/admin/.*" and not auth')).toBe('endpoint matches "/admin/.*" and not auth');
  });

  it('reads a rule that is only when { … } as the condition inside', () => {
    expect(parseRule('when { count(http_retry) > 3 }')).toEqual(parseRule('count(http_retry) > 3'));
    expect(parseRule('when {\n  circuit_breaker_opened\n}')).toEqual({ type: 'condition', condition: exists('circuit_breaker_opened') });
  });

  it('accepts ordering comparisons against strings, identifiers and booleans, and counts against them', () => {
    expect(canonical('queue.depth.where(depth > max_capacity)')).toBe('queue.depth.where(depth > max_capacity)');
    expect(canonical('p.where(version >= "2.0") and p.flag < true')).toBe('p.where(version >= "2.0") and p.where(flag < true)');
    expect(parseRule('count(operation.failed) <= N')).toEqual({ type: 'condition', condition: { type: 'count', check: { name: 'operation.failed', where: [] }, op: '<=', right: word('N') } });
  });

  it('accepts a newline inside a quoted string', () => {
    expect(parseRule('p.where(name == "line1\nline2")')).toEqual({ type: 'condition', condition: exists('p', [compare('name', '==', { type: 'string', value: 'line1\nline2', quoted: true })]) });
  });

  it('keeps where a keyword, digits out of the start of a name segment, and not to one term', () => {
    const refused = (text: string) => expect(() => parseRule(text), text).toThrow(RuleSyntaxError);
    refused('when { payment.where } always { fraud_check }');
    refused('where');
    refused('payment.where.x');
    refused('when { payment.123invalid } always { fraud_check }');
    refused('when { not not payment } always { fraud_check }');
    refused('p.where(not not verified)');
    expect(canonical('not (not payment)')).toBe('not (not payment)');
    expect(canonical('"x.where"')).toBe('"x.where"');
    expect(canonical('wherever.where_clause')).toBe('wherever.where_clause');
  });
});
