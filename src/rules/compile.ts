import { RuleSyntaxError } from '../errors.js';
import type { AttributeValue, Span } from '../model/span.js';
import type { Severity } from '../model/signal.js';
import { checkText, conditionText, type Condition, type CountOp, type RuleAst, type Scalar, type SpanCheck, type WherePredicate } from './ast.js';
import { parseRule } from './parser.js';
import { compileRegex } from './regex.js';

/** What a rule engine needs of a span: its name, id and attributes. */
export type RuleSpan = Pick<Span, 'name' | 'spanId' | 'attributes' | 'resource'>;

/** One rule as a rule file declares it (BeTrace's shape) plus an optional version. */
export interface RuleDefinition {
  id: string;
  name: string;
  description?: string;
  severity: Severity;
  condition: string;
  enabled: boolean;
  /** When set, the rule cache recompiles the rule only when this changes (see cache.ts). */
  version?: string | number;
}

/** A distinct span check of a rule set: the trace state keeps one counter per check. */
export interface CompiledCheck {
  index: number;
  /** Canonical text, e.g. `payment.charge.where(amount > 1000)`: names the check in evidence. */
  text: string;
  spanName: string;
  matches: (span: RuleSpan) => boolean;
}

/** A condition whose span checks are replaced by their counter index; `text` names it in evidence. */
export type Formula = { text: string } & (
  | { type: 'exists'; check: number }
  | { type: 'count'; check: number; op: CountOp; right: { type: 'number'; value: number } | { type: 'count'; check: number } }
  | { type: 'and' | 'or'; left: Formula; right: Formula }
  | { type: 'not'; operand: Formula }
);

export interface CompiledRule {
  definition: RuleDefinition;
  ast: RuleAst;
  /** A simple condition is `{ when }` alone: it fires when `when` holds. */
  when: Formula;
  always?: Formula;
  never?: Formula;
  /** Indexes of every check the rule mentions, in order of first mention. */
  checks: number[];
}

export interface CompiledRuleSet {
  rules: CompiledRule[];
  checks: CompiledCheck[];
  /** The checks to try on a span of a given name: a span costs only the checks of its name. */
  checksBySpanName: ReadonlyMap<string, readonly CompiledCheck[]>;
}

/**
 * Compiles the enabled rules of one tenant together, so that a span check mentioned by several
 * rules is counted once. Throws the first rule's RuleSyntaxError prefixed with the rule id
 * (rule files are checked whole before they get here, see rule-file.ts).
 */
export function compileRuleSet(definitions: readonly RuleDefinition[]): CompiledRuleSet {
  const checks: CompiledCheck[] = [];
  const byText = new Map<string, CompiledCheck>();
  const checkIndex = (check: SpanCheck): number => {
    const text = checkText(check);
    let compiled = byText.get(text);
    if (!compiled) {
      compiled = { index: checks.length, text, spanName: check.name, matches: spanMatcher(check) };
      byText.set(text, compiled);
      checks.push(compiled);
    }
    return compiled.index;
  };

  const rules: CompiledRule[] = [];
  for (const definition of definitions) {
    if (!definition.enabled) continue;
    const ast = parseRuleOf(definition);
    const mentioned: number[] = [];
    const formula = (condition: Condition): Formula => {
      const f = toFormula(condition, checkIndex);
      for (const i of formulaChecks(f)) if (!mentioned.includes(i)) mentioned.push(i);
      return f;
    };
    const rule: CompiledRule =
      ast.type === 'condition' ? { definition, ast, when: formula(ast.condition), checks: mentioned } : { definition, ast, when: formula(ast.when), checks: mentioned };
    if (ast.type === 'invariant') {
      if (ast.always) rule.always = formula(ast.always);
      if (ast.never) rule.never = formula(ast.never);
    }
    rules.push(rule);
  }

  const checksBySpanName = new Map<string, CompiledCheck[]>();
  for (const check of checks) {
    const list = checksBySpanName.get(check.spanName) ?? [];
    list.push(check);
    checksBySpanName.set(check.spanName, list);
  }
  return { rules, checks, checksBySpanName };
}

function parseRuleOf(definition: RuleDefinition): RuleAst {
  try {
    return parseRule(definition.condition);
  } catch (e) {
    if (e instanceof RuleSyntaxError) throw e.inRule(definition.id);
    throw e;
  }
}

function toFormula(condition: Condition, checkIndex: (check: SpanCheck) => number): Formula {
  const text = conditionText(condition);
  switch (condition.type) {
    case 'exists':
      return { type: 'exists', check: checkIndex(condition.check), text };
    case 'count':
      return {
        text,
        type: 'count',
        check: checkIndex(condition.check),
        op: condition.op,
        right: condition.right.type === 'number' ? condition.right : { type: 'count', check: checkIndex(condition.right.check) },
      };
    case 'not':
      return { type: 'not', operand: toFormula(condition.operand, checkIndex), text };
    case 'and':
    case 'or':
      return { type: condition.type, left: toFormula(condition.left, checkIndex), right: toFormula(condition.right, checkIndex), text };
  }
}

function formulaChecks(formula: Formula): number[] {
  switch (formula.type) {
    case 'exists':
      return [formula.check];
    case 'count':
      return formula.right.type === 'count' ? [formula.check, formula.right.check] : [formula.check];
    case 'not':
      return formulaChecks(formula.operand);
    default:
      return [...formulaChecks(formula.left), ...formulaChecks(formula.right)];
  }
}

/** Whether `formula` holds given how many spans of the trace matched each check. */
export function holds(formula: Formula, counts: ArrayLike<number>): boolean {
  switch (formula.type) {
    case 'exists':
      return (counts[formula.check] ?? 0) > 0;
    case 'count': {
      const right = formula.right.type === 'number' ? formula.right.value : (counts[formula.right.check] ?? 0);
      return compareNumbers(counts[formula.check] ?? 0, formula.op, right);
    }
    case 'not':
      return !holds(formula.operand, counts);
    case 'and':
      return holds(formula.left, counts) && holds(formula.right, counts);
    case 'or':
      return holds(formula.left, counts) || holds(formula.right, counts);
  }
}

function compareNumbers(left: number, op: CountOp, right: number): boolean {
  switch (op) {
    case '==':
      return left === right;
    case '!=':
      return left !== right;
    case '>':
      return left > right;
    case '>=':
      return left >= right;
    case '<':
      return left < right;
    case '<=':
      return left <= right;
  }
}

/** A span matches a check when its name is the check's and every predicate holds. */
export function spanMatcher(check: SpanCheck): (span: RuleSpan) => boolean {
  const predicates = check.where.map(attributePredicate);
  return (span) => span.name === check.name && predicates.every((p) => p(span));
}

/**
 * Attribute lookup: the span's attributes first, then its resource's (so `service.name` works);
 * a missing (or null) attribute makes the comparison false, `!=` included.
 */
function attributeOf(span: RuleSpan, name: string): AttributeValue | undefined {
  return span.attributes?.[name] ?? span.resource?.attributes[name] ?? undefined;
}

function attributePredicate(where: WherePredicate): (span: RuleSpan) => boolean {
  const test = scalarTest(where);
  const negate = where.op === '!=';
  return (span) => {
    const value = attributeOf(span, where.attribute);
    if (value === undefined || value === null) return false;
    // An array attribute satisfies a comparison when one of its elements does; `!=` when none is equal.
    const found = Array.isArray(value) ? value.some((v) => v !== null && test(v)) : test(value);
    return negate ? !found : found;
  };
}

type ScalarValue = string | number | boolean;

/** The test one attribute value must pass; for `!=` the equality test, negated by the caller. */
function scalarTest(where: WherePredicate): (value: ScalarValue) => boolean {
  const { op, value } = where;
  switch (op) {
    case '==':
    case '!=':
      return equalTo(value as Scalar);
    case 'in': {
      const tests = (value as Extract<typeof value, { type: 'list' }>).items.map(equalTo);
      return (v) => tests.some((t) => t(v));
    }
    case 'matches': {
      const regex = compileRegex((value as Scalar).value as string);
      return (v) => regex.test(String(v));
    }
    default: {
      const right = (value as Scalar).value as number;
      return (v) => {
        const left = numberOf(v);
        return left !== undefined && compareNumbers(left, op, right);
      };
    }
  }
}

/**
 * Equality by the literal's type: a number equals a number or a numeric string (OTLP carries
 * 64-bit integers as strings), a boolean only a boolean, a string the attribute's text.
 */
function equalTo(literal: Scalar): (value: ScalarValue) => boolean {
  switch (literal.type) {
    case 'number':
      return (v) => numberOf(v) === literal.value;
    case 'boolean':
      return (v) => v === literal.value;
    case 'string':
      return (v) => String(v) === literal.value;
  }
}

function numberOf(value: ScalarValue): number | undefined {
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && value.trim() !== '') {
    const n = Number(value);
    return Number.isFinite(n) ? n : undefined;
  }
  return undefined;
}
