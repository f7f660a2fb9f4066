import { compileRuleSet, type CompiledRuleSet, type RuleDefinition } from './compile.js';

export interface RuleCacheStats {
  hits: number;
  misses: number;
  tenants: number;
}

/**
 * Compiled rule sets per tenant: rules are parsed and compiled once, then reused for every trace
 * until one of the tenant's rules changes. A rule with a `version` counts as changed when its
 * version does; one without, when any of its fields does. The least recently used tenant is
 * dropped beyond `maxTenants`.
 */
export class RuleSetCache {
  private readonly entries = new Map<string, { key: string; ruleSet: CompiledRuleSet }>();
  private hits = 0;
  private misses = 0;

  constructor(private readonly maxTenants = 10_000) {}

  get(tenantId: string, rules: readonly RuleDefinition[]): CompiledRuleSet {
    const key = rulesKey(rules);
    const entry = this.entries.get(tenantId);
    this.entries.delete(tenantId);
    if (entry !== undefined && entry.key === key) {
      this.hits++;
      this.entries.set(tenantId, entry);
      return entry.ruleSet;
    }
    this.misses++;
    const ruleSet = compileRuleSet(rules);
    this.entries.set(tenantId, { key, ruleSet });
    if (this.entries.size > this.maxTenants) this.entries.delete(this.entries.keys().next().value!);
    return ruleSet;
  }

  invalidate(tenantId: string): void {
    this.entries.delete(tenantId);
  }

  stats(): RuleCacheStats {
    return { hits: this.hits, misses: this.misses, tenants: this.entries.size };
  }
}

function rulesKey(rules: readonly RuleDefinition[]): string {
  return JSON.stringify(
    rules.map((r) => (r.version === undefined ? [r.id, r.name, r.severity, r.enabled, r.condition] : [r.id, r.version])),
  );
}
