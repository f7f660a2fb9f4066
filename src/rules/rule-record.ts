import { createHash } from 'node:crypto';
import { canonicalTenantId } from '../model/tenant.js';
import { compileRuleSet, type RuleDefinition } from './compile.js';
import { checkRule } from './rule-file.js';

/**
 * The records of the rules topic (RULES_TOPIC, compacted): one per rule, keyed
 * `<tenantId>/<ruleId>` (the tenant a UUID, written lower-case), the value the rule as JSON
 * `{id, name, description?, severity, condition, enabled, version}`; a tombstone (null value)
 * deletes the rule. Values are checked by the same per-rule check as rule files (checkRule).
 */

/** Why a record of the rules topic was skipped: the label of `spanledger_rules_bad_total`. */
export const BAD_RULE_REASONS = ['key', 'id_mismatch', 'json', 'schema', 'condition'] as const;
export type BadRuleReason = (typeof BAD_RULE_REASONS)[number];

export type RuleRecord =
  /** `rule` undefined: a tombstone, the rule is deleted. */
  | { ok: true; tenantId: string; ruleId: string; rule: RuleDefinition | undefined }
  | { ok: false; reason: BadRuleReason; message: string };

export function ruleRecordKey(tenantId: string, ruleId: string): string {
  return `${tenantId}/${ruleId}`;
}

/** `<tenant UUID, any case>/<rule id>`: the tenant canonicalised, the rule id everything after the first slash. */
export function parseRuleKey(key: string): { tenantId: string; ruleId: string } | undefined {
  const slash = key.indexOf('/');
  if (slash < 0) return undefined;
  const tenantId = canonicalTenantId(key.slice(0, slash));
  const ruleId = key.slice(slash + 1);
  return tenantId === undefined || ruleId === '' ? undefined : { tenantId, ruleId };
}

/**
 * Reads one record of the rules topic. A record that is not a valid rule (bad key, the value's id
 * not the key's, not JSON, a field wrong, a condition that does not parse or compile) comes back
 * as `{ ok: false, reason, message }`; nothing throws.
 */
export function parseRuleRecord(key: string, value: Buffer | null): RuleRecord {
  const parsedKey = parseRuleKey(key);
  if (parsedKey === undefined) return bad('key', `key ${JSON.stringify(key.slice(0, 300))} is not <tenant UUID>/<rule id>`);
  const { tenantId, ruleId } = parsedKey;
  if (value === null) return { ok: true, tenantId, ruleId, rule: undefined };
  let json: unknown;
  try {
    json = JSON.parse(value.toString('utf8'));
  } catch (e) {
    return bad('json', `value is not JSON: ${(e as Error).message}`);
  }
  const checked = checkRule(json);
  if (checked.rule === undefined) {
    const first = checked.problems.find((p) => p.kind === 'schema') ?? checked.problems[0];
    return bad(first?.kind ?? 'schema', checked.problems.map((p) => p.message).join('; '));
  }
  if (checked.rule.id !== ruleId) return bad('id_mismatch', `value id ${JSON.stringify(checked.rule.id)} is not the key's rule id ${JSON.stringify(ruleId)}`);
  try {
    // Parsing found nothing wrong; compiling the rule alone makes sure it cannot break its tenant's rule set.
    compileRuleSet([{ ...checked.rule, enabled: true }]);
  } catch (e) {
    return bad('condition', (e as Error).message);
  }
  return { ok: true, tenantId, ruleId, rule: checked.rule };
}

function bad(reason: BadRuleReason, message: string): RuleRecord {
  return { ok: false, reason, message };
}

/** A rule as the value of its record: JSON with its fields in a fixed order (so equal rules are equal bytes). */
export function encodeRuleValue(rule: RuleDefinition): Buffer {
  const { id, name, description, severity, condition, enabled, version } = rule;
  return Buffer.from(JSON.stringify({ id, name, description, severity, condition, enabled, version }), 'utf8');
}

/** A version naming a rule's content: the same content, the same version. */
export function contentVersion(rule: RuleDefinition): string {
  const { id, name, description, severity, condition, enabled } = rule;
  const digest = createHash('sha256').update(JSON.stringify([id, name, description ?? null, severity, condition, enabled])).digest('hex');
  return `sha256:${digest.slice(0, 16)}`;
}

/** The rule as `rules put` writes it: the file's version if it has one, else its content version. */
export function versioned(rule: RuleDefinition): RuleDefinition & { version: string | number } {
  return { ...rule, version: rule.version ?? contentVersion(rule) };
}

export interface PutPlan {
  /** Rules to write: new, or different from the topic's. */
  put: RuleDefinition[];
  /** Rules the topic already holds exactly so (same fields, same version): not written again. */
  unchanged: RuleDefinition[];
  /** Ids of the tenant's rules to tombstone (with prune: in the topic, not in the file). */
  deleted: string[];
  /** Rules whose content changed while their version (given in the file) did not: refused. */
  conflicts: string[];
}

/**
 * What `rules put` does with a file's rules given the tenant's rules in the topic: a rule is
 * written unless the topic holds it unchanged; with `prune` the tenant's rules missing from the
 * file are deleted. A rule whose file gives the version the topic already has, with other
 * content, is a conflict: a version names one content (caches key compiled rules by it).
 */
export function planPut(fileRules: readonly RuleDefinition[], existing: readonly RuleDefinition[], prune: boolean): PutPlan {
  const before = new Map(existing.map((r) => [r.id, r]));
  const plan: PutPlan = { put: [], unchanged: [], deleted: [], conflicts: [] };
  for (const rule of fileRules) {
    const next = versioned(rule);
    const previous = before.get(rule.id);
    if (previous !== undefined && encodeRuleValue(previous).equals(encodeRuleValue(next))) {
      plan.unchanged.push(next);
    } else if (previous !== undefined && rule.version !== undefined && previous.version === rule.version) {
      plan.conflicts.push(`rule ${rule.id}: changed, but its version ${JSON.stringify(rule.version)} is the one already in the topic: give it a new version`);
    } else {
      plan.put.push(next);
    }
  }
  if (prune) {
    const kept = new Set(fileRules.map((r) => r.id));
    plan.deleted = existing.map((r) => r.id).filter((id) => !kept.has(id)).sort();
  }
  return plan;
}
