import { RuleSyntaxError } from '../errors.js';
import type { AttributeValue, Span } from '../model/span.js';
import type { Severity } from '../model/signal.js';
import { checkText, conditionText, type AttributeComparison, type Condition, type CountOp, type CountRight, type RuleAst, type Scalar, type SpanCheck, type WhereCondition } from './ast.js';
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
  /** null: the check applies to spans of any name (a direct comparison without a span name). */
  spanName: string | null;
  matches: (span: RuleSpan) => boolean;
}

/** A condition whose span checks are replaced by their counter index; `text` names it in evidence. */
export type Formula = { text: string } & (
  | { type: 'exists'; check: number }
  | { type: 'count'; check: number; op: CountOp; right: { type: 'number'; value: number } | { type: 'count'; check: number } | { type: 'test'; test: (count: number) => boolean } }
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
  /**
   * The checks to try on a span of a given name, the checks of any name included: a span costs
   * only the checks that can match it.
   */
  checksBySpanName: ReadonlyMap<string, readonly CompiledCheck[]>;
  /**
   * The checks without a span name (a direct comparison of a lone attribute), for the names
   * checksBySpanName does not list; usually empty.
   */
  anySpanChecks: readonly CompiledCheck[];
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
  const anySpanChecks = checks.filter((check) => check.spanName === null);
  for (const check of checks) {
    if (check.spanName === null) continue;
    const list = checksBySpanName.get(check.spanName) ?? [];
    list.push(check);
    checksBySpanName.set(check.spanName, list);
  }
  for (const list of checksBySpanName.values()) list.push(...anySpanChecks);
  return { rules, checks, checksBySpanName, anySpanChecks };
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
        right: countRight(condition.op, condition.right, checkIndex),
      };
    case 'not':
      return { type: 'not', operand: toFormula(condition.operand, checkIndex), text };
    case 'and':
    case 'or':
      return { type: condition.type, left: toFormula(condition.left, checkIndex), right: toFormula(condition.right, checkIndex), text };
  }
}

function countRight(op: CountOp, right: CountRight, checkIndex: (check: SpanCheck) => number): Extract<Formula, { type: 'count' }>['right'] {
  if (right.type === 'count') return { type: 'count', check: checkIndex(right.check) };
  if (right.type === 'number') return right;
  // count(x) <= N, count(x) == "3": compared as an attribute holding the count would be (BeTrace).
  const test = scalarTest({ type: 'compare', attribute: '', op, value: right });
  return { type: 'test', test: op === '!=' ? (n) => !test(n) : test };
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
      const left = counts[formula.check] ?? 0;
      const { right } = formula;
      if (right.type === 'test') return right.test(left);
      return compareNumbers(left, formula.op, right.type === 'number' ? right.value : (counts[right.check] ?? 0));
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

/** A span matches a check when its name is the check's (if it names one) and every where holds. */
export function spanMatcher(check: SpanCheck): (span: RuleSpan) => boolean {
  const predicates = check.where.map(whereMatcher);
  const name = check.name;
  if (predicates.length === 0) return name === null ? () => true : (span) => span.name === name;
  const where = predicates.length === 1 ? predicates[0]! : (span: RuleSpan) => predicates.every((p) => p(span));
  return name === null ? where : (span) => span.name === name && where(span);
}

function whereMatcher(condition: WhereCondition): (span: RuleSpan) => boolean {
  switch (condition.type) {
    case 'compare':
      return attributePredicate(condition);
    case 'truthy': {
      const { attribute } = condition;
      return (span) => isTrue(attributeOf(span, attribute));
    }
    case 'not': {
      const operand = whereMatcher(condition.operand);
      return (span) => !operand(span);
    }
    case 'and': {
      const [left, right] = [whereMatcher(condition.left), whereMatcher(condition.right)];
      return (span) => left(span) && right(span);
    }
    case 'or': {
      const [left, right] = [whereMatcher(condition.left), whereMatcher(condition.right)];
      return (span) => left(span) || right(span);
    }
  }
}

/**
 * Attribute lookup: the span's attributes first, then its resource's (so `service.name` works);
 * a missing (or null) attribute makes the comparison false, `!=` included.
 */
function attributeOf(span: RuleSpan, name: string): AttributeValue | undefined {
  return span.attributes?.[name] ?? span.resource?.attributes[name] ?? undefined;
}

/**
 * A bare boolean attribute holds when the attribute is true, or the text "true" (BeTrace keeps
 * attributes as text); an array when one element does. Missing, anything else: false.
 */
function isTrue(value: AttributeValue | undefined): boolean {
  if (Array.isArray(value)) return value.some((v) => v === true || v === 'true');
  return value === true || value === 'true';
}

function attributePredicate(comparison: AttributeComparison): (span: RuleSpan) => boolean {
  const test = scalarTest(comparison);
  // `contains` on an array attribute asks for a member, not a substring of one.
  const elementTest = comparison.op === 'contains' ? equalTo(comparison.value as Scalar) : test;
  const negate = comparison.op === '!=';
  const { attribute } = comparison;
  return (span) => {
    const value = attributeOf(span, attribute);
    if (value === undefined || value === null) return false;
    // An array attribute satisfies a comparison when one of its elements does; `!=` when none is equal.
    const found = Array.isArray(value) ? value.some((v) => v !== null && elementTest(v)) : test(value);
    return negate ? !found : found;
  };
}

type ScalarValue = string | number | boolean;

/** The test one attribute value must pass; for `!=` the equality test, negated by the caller. */
function scalarTest(comparison: AttributeComparison): (value: ScalarValue) => boolean {
  const { op, value } = comparison;
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
    case 'contains': {
      const text = String((value as Scalar).value);
      return (v) => String(v).includes(text);
    }
    default:
      return orderedTest(op, value as Scalar);
  }
}

/**
 * `> >= < <=`. Against a number: numbers and numeric strings, anything else false. Against a
 * string or boolean (BeTrace's rule): numerically when both sides are numbers, else the texts in
 * code point order (Go's string order), so `version >= "2.0"` and `tier > bronze` compare text.
 */
function orderedTest(op: CountOp, literal: Scalar): (value: ScalarValue) => boolean {
  if (literal.type === 'number') {
    const right = literal.value;
    return (v) => {
      const left = numberOf(v);
      return left !== undefined && compareNumbers(left, op, right);
    };
  }
  const text = String(literal.value);
  const number = literal.type === 'string' ? numberOf(text) : undefined;
  return (v) => {
    if (number !== undefined) {
      const left = numberOf(v);
      if (left !== undefined) return compareNumbers(left, op, number);
    }
    return compareNumbers(compareText(String(v), text), op, 0);
  };
}

/** -1, 0 or 1 as `a` sorts before, with or after `b` by code point (not UTF-16 unit). */
export function compareText(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (0xD800–0xDFFF) stand for code points above 0xFFFF: move them after 0xE000–0xFFFF.
    const fx = x >= 0xd800 ? (x >= 0xe000 ? x - 0x800 : x + 0x2000) : x;
    const fy = y >= 0xd800 ? (y >= 0xe000 ? y - 0x800 : y + 0x2000) : y;
    return fx < fy ? -1 : 1;
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

/**
 * Equality by the literal's type: a number equals a number or a numeric string (OTLP carries
 * 64-bit integers as strings), a boolean a boolean or its text ("true", as BeTrace compares
 * text), a string the attribute's text.
 */
function equalTo(literal: Scalar): (value: ScalarValue) => boolean {
  switch (literal.type) {
    case 'number':
      return (v) => numberOf(v) === literal.value;
    case 'boolean': {
      const text = String(literal.value);
      return (v) => v === literal.value || v === text;
    }
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
