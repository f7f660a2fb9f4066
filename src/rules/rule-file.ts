import fs from 'node:fs/promises';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { RuleFileError, RuleSyntaxError } from '../errors.js';
import { SEVERITIES, type Severity } from '../model/signal.js';
import type { RuleDefinition } from './compile.js';
import { parseRule } from './parser.js';

/** Longest rule id: a rule id becomes a signal's ruleId (at most 256 characters). */
const MAX_RULE_ID = 256;

const ruleSchema = z.strictObject({
  id: z.string().min(1).max(MAX_RULE_ID),
  name: z.string().optional(),
  description: z.string().optional(),
  severity: z
    .string()
    .transform((s) => s.toUpperCase())
    .refine((s): s is Severity => (SEVERITIES as readonly string[]).includes(s), `must be one of ${SEVERITIES.join(', ')} (any letter case)`),
  condition: z.string().min(1),
  enabled: z.boolean().default(true),
  version: z.union([z.string(), z.number()]).optional(),
});

const fileSchema = z.strictObject({ rules: z.array(z.unknown()) });

/** What is wrong with one rule: a field (`schema`) or its condition (`condition`). */
export interface RuleProblem {
  kind: 'schema' | 'condition';
  /** `severity: must be one of …`, or `rule <id>: 2:31: expected …` (the id when the rule has one). */
  message: string;
}

export interface CheckedRule {
  /** The rule, when it has no problem. */
  rule: RuleDefinition | undefined;
  /** The rule's id when it has a string one, even if the rule has problems: it names the rule in messages. */
  id: string | undefined;
  problems: RuleProblem[];
}

/**
 * The one check of a single rule, whatever it comes from (an entry of a rule file, a record of the
 * rules topic): the fields against the schema and the condition through the parser. Every problem
 * is listed, the condition's even when a field is wrong. `name` defaults to the id, `enabled` to
 * true, severity is upper-cased.
 */
export function checkRule(raw: unknown): CheckedRule {
  const parsed = ruleSchema.safeParse(raw);
  const fields = (typeof raw === 'object' && raw !== null ? raw : {}) as { id?: unknown; condition?: unknown };
  const id = typeof fields.id === 'string' ? fields.id : undefined;
  const problems: RuleProblem[] = [];
  if (!parsed.success) for (const issue of parsed.error.issues) problems.push({ kind: 'schema', message: `${issue.path.join('.') || 'rule'}: ${issue.message}` });
  if (typeof fields.condition === 'string') {
    try {
      parseRule(fields.condition);
    } catch (e) {
      if (!(e instanceof RuleSyntaxError)) throw e;
      problems.push({ kind: 'condition', message: id === undefined ? e.message : e.inRule(id).message });
    }
  }
  if (!parsed.success || problems.length > 0) return { rule: undefined, id, problems };
  const r = parsed.data;
  const rule: RuleDefinition = { id: r.id, name: r.name ?? r.id, severity: r.severity as Severity, condition: r.condition, enabled: r.enabled };
  if (r.description !== undefined) rule.description = r.description;
  if (r.version !== undefined) rule.version = r.version;
  return { rule, id, problems };
}

/**
 * Reads a rule file in BeTrace's shape, YAML or JSON (JSON is YAML):
 *
 *   rules:
 *     - id: high-value-payment
 *       name: High-value payment without fraud check
 *       severity: critical            # LOW, MEDIUM, HIGH or CRITICAL, any case
 *       condition: payment.charge.where(amount > 1000) and not payment.fraud_check
 *       enabled: true                 # optional, default true
 *
 * Every rule's condition is parsed; a file with any error is refused whole (RuleFileError, with
 * every problem listed), so that a typo never silently disables a rule.
 */
export function parseRuleFile(text: string, file: string): RuleDefinition[] {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) {
    // The message ends with " at line L, column C:" and a code excerpt; keep the position and the reason.
    throw new RuleFileError(file, doc.errors.map((e) => `${e.linePos?.[0].line}:${e.linePos?.[0].col}: ${e.message.split(' at line ')[0]}`));
  }
  const top = fileSchema.safeParse(doc.toJS());
  if (!top.success) throw new RuleFileError(file, top.error.issues.map((i) => `${i.path.join('.') || 'file'}: ${i.message}`));

  const problems: string[] = [];
  const rules: RuleDefinition[] = [];
  const seen = new Set<string>();
  top.data.rules.forEach((raw, index) => {
    const checked = checkRule(raw);
    const label = `rules[${index}]${checked.id === undefined ? '' : ` (${checked.id})`}`;
    for (const problem of checked.problems) {
      // A condition error already names its rule when the rule has an id.
      problems.push(problem.kind === 'condition' && checked.id !== undefined ? problem.message : `${label}: ${problem.message}`);
    }
    // A rule whose fields are right has its id checked for repeats even when its condition is wrong.
    if (checked.id !== undefined && !checked.problems.some((p) => p.kind === 'schema')) {
      if (seen.has(checked.id)) problems.push(`${label}: id ${checked.id} is used by an earlier rule`);
      seen.add(checked.id);
    }
    if (checked.rule !== undefined) rules.push(checked.rule);
  });
  if (problems.length > 0) throw new RuleFileError(file, problems);
  return rules;
}

export async function loadRuleFile(file: string): Promise<RuleDefinition[]> {
  return parseRuleFile(await fs.readFile(file, 'utf8'), file);
}
