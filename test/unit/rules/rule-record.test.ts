import { describe, expect, it } from 'vitest';
import { checkRule } from '../../../src/rules/rule-file.js';
import { contentVersion, encodeRuleValue, parseRuleKey, parseRuleRecord, planPut, ruleRecordKey, versioned } from '../../../src/rules/rule-record.js';
import type { RuleDefinition } from '../../../src/rules/compile.js';

const TENANT = '6f9619ff-8b86-d011-b42d-00c04fc964ff';
const rule = (id: string, extra: Partial<RuleDefinition> = {}): RuleDefinition => ({ id, name: id, severity: 'HIGH', condition: 'payment.charge', enabled: true, ...extra });
const value = (v: unknown) => Buffer.from(JSON.stringify(v));

describe('checkRule (shared by rule files and topic records)', () => {
  it('defaults name and enabled, upper-cases severity', () => {
    expect(checkRule({ id: 'a', severity: 'low', condition: 'x' })).toEqual({ rule: { id: 'a', name: 'a', severity: 'LOW', condition: 'x', enabled: true }, id: 'a', problems: [] });
  });

  it('lists field and condition problems at once, naming the rule', () => {
    expect(checkRule({ id: 'a', severity: 'urgent', condition: 'x y' }).problems).toEqual([
      { kind: 'schema', message: 'severity: must be one of LOW, MEDIUM, HIGH, CRITICAL (any letter case)' },
      { kind: 'condition', message: 'rule a: 1:3: expected ".", "and", "or", comparison operator or end of input but found "y"' },
    ]);
    expect(checkRule('nope').rule).toBeUndefined();
  });
});

describe('rule record keys', () => {
  it('is <tenant>/<rule id>, the tenant canonicalised, the id everything after the first slash', () => {
    expect(ruleRecordKey(TENANT, 'r')).toBe(`${TENANT}/r`);
    expect(parseRuleKey(`${TENANT.toUpperCase()}/a/b`)).toEqual({ tenantId: TENANT, ruleId: 'a/b' });
    for (const key of ['', 'nouuid/r', `${TENANT}`, `${TENANT}/`, `../${TENANT}/r`]) expect(parseRuleKey(key)).toBeUndefined();
  });
});

describe('parseRuleRecord', () => {
  it('reads a rule and a tombstone', () => {
    expect(parseRuleRecord(`${TENANT}/a`, value({ id: 'a', name: 'A', severity: 'critical', condition: 'x', enabled: false, version: 2 }))).toEqual({
      ok: true,
      tenantId: TENANT,
      ruleId: 'a',
      rule: { id: 'a', name: 'A', severity: 'CRITICAL', condition: 'x', enabled: false, version: 2 },
    });
    expect(parseRuleRecord(`${TENANT}/a`, null)).toEqual({ ok: true, tenantId: TENANT, ruleId: 'a', rule: undefined });
  });

  it.each([
    ['key', '', value({ id: 'a', severity: 'LOW', condition: 'x' })],
    ['key', 'tenant/a', null],
    ['id_mismatch', `${TENANT}/a`, value({ id: 'b', severity: 'LOW', condition: 'x' })],
    ['json', `${TENANT}/a`, Buffer.from('{"id": "a",')],
    ['json', `${TENANT}/a`, Buffer.from([0xff, 0xfe])],
    ['schema', `${TENANT}/a`, value({ id: 'a', severity: 'LOW', condition: 'x', extra: 1 })],
    ['schema', `${TENANT}/a`, value([1, 2])],
    ['schema', `${TENANT}/a`, value({ id: 'a', severity: 'NOPE', condition: 'x y' })],
    ['condition', `${TENANT}/a`, value({ id: 'a', severity: 'LOW', condition: 'x.where(a matches "(?=x)")' })],
    ['condition', `${TENANT}/a`, value({ id: 'a', severity: 'LOW', condition: 'count(x) >' })],
  ])('refuses a record with reason %s (key %j)', (reason, key, v) => {
    const record = parseRuleRecord(key, v);
    expect(record.ok).toBe(false);
    expect(record.ok === false && record.reason).toBe(reason);
    expect(record.ok === false && record.message.length).toBeGreaterThan(0);
  });
});

describe('versions and what rules put does', () => {
  it('gives a rule without a version a version naming its content', () => {
    expect(contentVersion(rule('a'))).toMatch(/^sha256:[0-9a-f]{16}$/);
    expect(contentVersion(rule('a'))).toBe(contentVersion(rule('a', { version: 9 })));
    expect(contentVersion(rule('a'))).not.toBe(contentVersion(rule('a', { condition: 'payment.refund' })));
    expect(contentVersion(rule('a'))).not.toBe(contentVersion(rule('a', { enabled: false })));
    expect(versioned(rule('a', { version: 3 })).version).toBe(3);
  });

  it('encodes equal rules as equal bytes, whatever the field order', () => {
    const a = rule('a', { version: 1, description: 'd' });
    const b: RuleDefinition = { version: 1, enabled: true, condition: 'payment.charge', severity: 'HIGH', description: 'd', name: 'a', id: 'a' };
    expect(encodeRuleValue(a).equals(encodeRuleValue(b))).toBe(true);
    expect(JSON.parse(encodeRuleValue(rule('a')).toString())).toEqual({ id: 'a', name: 'a', severity: 'HIGH', condition: 'payment.charge', enabled: true });
  });

  it('puts new and changed rules, skips unchanged ones, prunes only when asked', () => {
    const existing = [versioned(rule('same')), versioned(rule('changed')), versioned(rule('gone')), rule('versioned', { version: 1 })];
    const file = [rule('same'), rule('changed', { severity: 'LOW' }), rule('new'), rule('versioned', { version: 2, condition: 'y' })];
    const plan = planPut(file, existing, false);
    expect(plan.put.map((r) => r.id)).toEqual(['changed', 'new', 'versioned']);
    expect(plan.put.every((r) => r.version !== undefined)).toBe(true);
    expect(plan.unchanged.map((r) => r.id)).toEqual(['same']);
    expect(plan.deleted).toEqual([]);
    expect(plan.conflicts).toEqual([]);
    expect(planPut(file, existing, true).deleted).toEqual(['gone']);
    expect(planPut([], existing, true).deleted).toEqual(['changed', 'gone', 'same', 'versioned']);
  });

  it('refuses a rule whose content changed under the same file version', () => {
    const plan = planPut([rule('a', { version: 1, condition: 'y' })], [rule('a', { version: 1 })], false);
    expect(plan.conflicts).toEqual(['rule a: changed, but its version 1 is the one already in the topic: give it a new version']);
    expect(plan.put).toEqual([]);
    // Same version, same content: unchanged.
    expect(planPut([rule('a', { version: 1 })], [rule('a', { version: 1 })], false).unchanged).toHaveLength(1);
  });
});
