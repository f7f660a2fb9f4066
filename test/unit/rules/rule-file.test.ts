import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { hitLines, testRules } from '../../../src/cli/rules.js';
import { RuleFileError } from '../../../src/errors.js';
import { loadRuleFile, parseRuleFile } from '../../../src/rules/rule-file.js';
import { RULE_LANGUAGE } from '../../../src/rules/example-rule-file.js';
import { parseRule } from '../../../src/rules/parser.js';

const EXAMPLES = path.resolve(import.meta.dirname, '../../../examples');

function problems(text: string): readonly string[] {
  try {
    parseRuleFile(text, 'rules.yaml');
  } catch (e) {
    if (e instanceof RuleFileError) return e.problems;
    throw e;
  }
  throw new Error('accepted');
}

describe('rule files', () => {
  it('reads BeTrace-shaped YAML, severity in any case, enabled defaulting to true', () => {
    const rules = parseRuleFile(
      `rules:
  - id: payment-fraud-check-required
    name: "Payment must include fraud check"
    description: "All payment charges over $1000 require fraud validation"
    severity: critical
    condition: |
      payment.charge_card.where(amount > 1000)
      and payment.fraud_check
  - id: quiet
    severity: Low
    enabled: false
    version: 3
    condition: x`,
      'rules.yaml',
    );
    expect(rules).toEqual([
      {
        id: 'payment-fraud-check-required',
        name: 'Payment must include fraud check',
        description: 'All payment charges over $1000 require fraud validation',
        severity: 'CRITICAL',
        condition: 'payment.charge_card.where(amount > 1000)\nand payment.fraud_check\n',
        enabled: true,
      },
      { id: 'quiet', name: 'quiet', severity: 'LOW', condition: 'x', enabled: false, version: 3 },
    ]);
  });

  it('reads JSON too', () => {
    expect(parseRuleFile('{"rules":[{"id":"a","severity":"HIGH","condition":"x"}]}', 'rules.json')).toEqual([{ id: 'a', name: 'a', severity: 'HIGH', condition: 'x', enabled: true }]);
  });

  it('refuses a file whole, listing every error', () => {
    expect(
      problems(`rules:
  - id: high-value-payment
    severity: critical
    condition: |
      when {
        payment.where(amount > 1000 { x }
  - id: ok
    severity: urgent
    condition: x y
  - id: ok
    severity: low
    condition: y
    serverity: high
  - severity: low
    condition: z`),
    ).toEqual([
      'rule high-value-payment: 2:31: expected ")", "and" or "or" but found "{"',
      'rules[1] (ok): severity: must be one of LOW, MEDIUM, HIGH, CRITICAL (any letter case)',
      'rule ok: 1:3: expected ".", "and", "or", comparison operator or end of input but found "y"',
      'rules[2] (ok): rule: Unrecognized key: "serverity"',
      'rules[3]: id: Invalid input: expected string, received undefined',
    ]);
    expect(problems('rules:\n  - id: a\n    severity: low\n    condition: x\n  - id: a\n    severity: low\n    condition: y')).toEqual(['rules[1] (a): id a is used by an earlier rule']);
    expect(problems('rule: []')[0]).toMatch(/rules: /);
    expect(problems('rules: [')[0]).toMatch(/^1:\d+: /);
  });
});

describe('rules test (offline)', () => {
  it('evaluates the example spans against the example rules', async () => {
    expect((await loadRuleFile(path.join(EXAMPLES, 'rules.yaml'))).length).toBe(6);
    const result = await testRules(path.join(EXAMPLES, 'rules.yaml'), path.join(EXAMPLES, 'trace.jsonl'));
    expect([result.spans, result.traces.length, result.rules]).toEqual([14, 5, 5]);
    const fired = hitLines(result.traces).map((l) => JSON.parse(l) as { tenantId: string; traceId: string; ruleId: string; severity: string; message: string });
    expect(fired.map((h) => `${h.tenantId.slice(-1)} ${h.traceId.slice(-1)} ${h.ruleId} ${h.severity}`).sort()).toEqual([
      '1 1 high-value-payment-controls CRITICAL',
      '1 3 too-many-retries MEDIUM',
      '2 4 admin-without-auth HIGH',
      '2 4 request-response-mismatch LOW',
      '2 5 checkout-server-errors HIGH',
    ]);
    expect(fired.find((h) => h.ruleId === 'high-value-payment-controls')?.message).toBe(
      'High-value payment controls: when payment.charge_card.where(amount > 1000); missing always: payment.fraud_check; present never: payment.bypass_validation',
    );
  });

  it('shows every form of the language on examples/language.yaml: each rule fires on the trace its comment names, none on the near misses', async () => {
    const result = await testRules(path.join(EXAMPLES, 'language.yaml'), path.join(EXAMPLES, 'language-trace.jsonl'));
    const fired = hitLines(result.traces).map((l) => JSON.parse(l) as { traceId: string; ruleId: string });
    expect(fired.map((h) => `${h.traceId.slice(-2)} ${h.ruleId}`).sort()).toEqual([
      'b1 admin-path-without-auth',
      'b1 item-server-errors',
      'b2 high-value-approval',
      'b2 unverified-large-payment',
      'b4 internal-endpoint',
      'b4 retry-storm',
      'b5 old-sdk',
      'b5 pii-unencrypted',
    ]);
    expect(result.traces.length).toBe(6);
  });

  it('prints in `rules test --help` only rules that parse', () => {
    // The left column of each line, where a line starts one (when / always / never blocks joined).
    const rules = RULE_LANGUAGE.split('\n')
      .filter((line) => !line.startsWith(' '))
      .map((line) => line.split(/ {3,}/)[0]!.trim())
      .join('\n')
      .replace(/\n(always|never) /g, ' $1 ')
      .split('\n');
    expect(rules.length).toBe(15);
    for (const rule of rules) expect(() => parseRule(rule), rule).not.toThrow();
  });
});
