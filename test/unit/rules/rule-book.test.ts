import pino from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { RuleBook, type RuleChange, type RuleRecordFeed } from '../../../src/rules/rule-book.js';

const TENANT = '6f9619ff-8b86-d011-b42d-00c04fc964ff';
const OTHER = '00000000-0000-4000-8000-000000000002';
const meta = { partition: 0, offset: '0', timestamp: 0 };
const value = (v: unknown) => Buffer.from(JSON.stringify(v));
const rule = (id: string, condition: string, version: number | string = 1, enabled = true) => value({ id, name: id, severity: 'HIGH', condition, enabled, version });

/** A feed that hands nothing over (the books here are never started). */
const noFeed: RuleRecordFeed = {
  topic: 'rules',
  open: () => ({ start: async () => {}, catchUp: async () => {}, close: async () => {} }),
};

/** A RuleBook fed records by hand: apply() is what the feed's table calls. */
function book(): { book: RuleBook; registry: Registry; logs: Array<Record<string, unknown>> } {
  const logs: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => logs.push(JSON.parse(line) as Record<string, unknown>) });
  const registry = new Registry();
  return { book: new RuleBook({ feed: noFeed, logger, registry }), registry, logs };
}

async function metric(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const m = await registry.getSingleMetric(name)!.get();
  return m.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value;
}

describe('RuleBook', () => {
  it('holds each tenant\'s rules, compiles the enabled ones once per change', async () => {
    const { book: b, registry } = book();
    expect(b.rulesFor(TENANT)).toBeUndefined();
    b.apply(`${TENANT}/b`, rule('b', 'payment.charge'), meta);
    b.apply(`${TENANT.toUpperCase()}/a`, rule('a', 'count(http.retry) > 3'), meta);
    b.apply(`${TENANT}/off`, rule('off', 'x', 1, false), meta);
    b.apply(`${OTHER}/a`, rule('a', 'y'), meta);
    expect(b.tenants()).toEqual([OTHER, TENANT].sort());
    expect(b.list(TENANT).map((r) => `${r.tenantId.slice(0, 4)} ${r.id}`)).toEqual(['6f96 a', '6f96 b', '6f96 off']);
    expect(b.list().length).toBe(4);

    const first = b.rulesFor(TENANT)!;
    expect(first.rules.map((r) => r.definition.id)).toEqual(['a', 'b']);
    expect(b.rulesFor(TENANT.toUpperCase())).toBe(first);
    // The same rule again changes nothing: the compiled set stays.
    b.apply(`${TENANT}/b`, rule('b', 'payment.charge'), meta);
    expect(b.rulesFor(TENANT)).toBe(first);
    // A new version is compiled on the next lookup, once.
    b.apply(`${TENANT}/b`, rule('b', 'payment.refund', 2), meta);
    const second = b.rulesFor(TENANT)!;
    expect(second).not.toBe(first);
    expect(second.rules.find((r) => r.definition.id === 'b')?.definition.condition).toBe('payment.refund');
    expect(b.rulesFor(TENANT)).toBe(second);
    expect(await metric(registry, 'spanledger_rules_cache_misses_total')).toBe(2);
    expect(await metric(registry, 'spanledger_rules_cache_hits_total')).toBe(3);
    expect(await metric(registry, 'spanledger_rules_loaded', { tenant: TENANT })).toBe(3);

    // Deletes; a tenant with only disabled rules has no rule set; a tenant with none is gone.
    b.apply(`${TENANT}/a`, null, meta);
    b.apply(`${TENANT}/b`, null, meta);
    b.apply(`${TENANT}/never-was`, null, meta);
    expect(b.rulesFor(TENANT)).toBeUndefined();
    expect(b.list(TENANT).map((r) => r.id)).toEqual(['off']);
    b.apply(`${TENANT}/off`, null, meta);
    expect(b.tenants()).toEqual([OTHER]);
    expect(await metric(registry, 'spanledger_rules_loaded', { tenant: TENANT })).toBeUndefined();
  });

  it('skips a bad record, counting it by reason; a bad update keeps the previous version', async () => {
    const { book: b, registry, logs } = book();
    b.apply(`${TENANT}/a`, rule('a', 'payment.charge'), meta);
    const before = b.rulesFor(TENANT)!;
    b.apply(`${TENANT}/a`, rule('a', 'payment.charge.where(', 2), { partition: 0, offset: '7', timestamp: 0 });
    b.apply(`${TENANT}/a`, Buffer.from('not json'), meta);
    b.apply(`${TENANT}/a`, rule('b', 'x'), meta);
    b.apply('', rule('a', 'x'), meta);
    b.apply(`${TENANT}/a`, value({ id: 'a', severity: 'HIGH', condition: 'x', colour: 'red' }), meta);
    expect(b.list(TENANT)).toEqual([{ tenantId: TENANT, id: 'a', name: 'a', severity: 'HIGH', condition: 'payment.charge', enabled: true, version: 1 }]);
    expect(b.rulesFor(TENANT)).toBe(before);
    for (const reason of ['condition', 'json', 'id_mismatch', 'key', 'schema']) expect(await metric(registry, 'spanledger_rules_bad_total', { reason })).toBe(1);
    const warning = logs.find((l) => l.reason === 'condition')!;
    expect(warning).toMatchObject({ level: 40, key: `${TENANT}/a`, offset: '7' });
    expect(warning.msg).toMatch(/^bad rule record skipped: rule a: 1:22: /);
  });

  it('tells listeners what changed, and a failing listener does not stop the book', () => {
    const { book: b } = book();
    const changes: RuleChange[] = [];
    b.onChange(() => {
      throw new Error('listener bug');
    });
    const off = b.onChange((c) => changes.push(c));
    b.apply(`${TENANT}/a`, rule('a', 'x'), meta);
    b.apply(`${TENANT}/a`, rule('a', 'x'), meta);
    b.apply(`${TENANT}/a`, rule('a', 'y', 2), meta);
    b.apply(`${TENANT}/a`, null, meta);
    off();
    b.apply(`${TENANT}/b`, rule('b', 'x'), meta);
    expect(changes.map((c) => [c.ruleId, c.previous?.version ?? null, c.rule?.version ?? null])).toEqual([
      ['a', null, 1],
      ['a', 1, 2],
      ['a', 2, null],
    ]);
    expect(b.list(TENANT).map((r) => r.id)).toEqual(['b']);
  });
});
