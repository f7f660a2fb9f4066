import { describe, expect, it } from 'vitest';
import { renderPutPlan, renderRuleTable, ruleJson, tenantArg } from '../../../src/cli/rules-topic.js';
import { ConfigError } from '../../../src/errors.js';

const TENANT = '6f9619ff-8b86-d011-b42d-00c04fc964ff';

describe('rules put|list|delete output', () => {
  it('takes a tenant UUID in any case, lower-cased; anything else is a ConfigError (exit 2)', () => {
    expect(tenantArg(TENANT.toUpperCase())).toBe(TENANT);
    expect(() => tenantArg('acme')).toThrow(ConfigError);
    expect(() => tenantArg('acme')).toThrow('--tenant must be a tenant UUID (got "acme")');
  });

  it('says what put did, rule by rule, then in one line', () => {
    const rule = { name: 'n', severity: 'LOW' as const, condition: 'x', enabled: true };
    const text = renderPutPlan({ put: [{ id: 'a', ...rule, version: 2 }], unchanged: [{ id: 'b', ...rule, version: 'sha256:0123456789abcdef' }], deleted: ['c'], conflicts: [] }, 'rules', TENANT);
    expect(text.split('\n')).toEqual([
      'put        a (version 2)',
      'unchanged  b (version sha256:0123456789abcdef)',
      'deleted    c',
      `tenant ${TENANT} in topic rules: put 1, unchanged 1, deleted 1`,
    ]);
  });

  it('lists a rule with the first line of its condition, or as one JSON object', () => {
    const rule = { tenantId: TENANT, id: 'a', name: 'A', severity: 'HIGH' as const, condition: 'when { x }\nalways { y }\n', enabled: false, version: 3 };
    const table = renderRuleTable([rule]);
    expect(table).toMatch(/│ 6f9619ff-8b86-d011-b42d-00c04fc964ff │ a +│ HIGH +│ no +│ 3 +│ when \{ x \} … │/);
    expect(JSON.parse(ruleJson(rule))).toEqual({ tenantId: TENANT, id: 'a', name: 'A', severity: 'HIGH', condition: 'when { x }\nalways { y }\n', enabled: false, version: 3 });
  });
});
