/**
 * The syntax tree of one trace rule, as the grammar (grammar.ts) builds it, and its canonical
 * text. The canonical text names a span check in evidence and messages, and two checks with the
 * same text are the same check: a tenant's rules share one counter per distinct text.
 */
export type CountOp = '==' | '!=' | '>' | '>=' | '<' | '<=';
export type ComparisonOp = CountOp | 'in' | 'matches' | 'contains';

export type Scalar =
  | { type: 'number'; value: number }
  | { type: 'boolean'; value: boolean }
  /** `quoted` false: a bare identifier used as a string (`currency == USD`). */
  | { type: 'string'; value: string; quoted: boolean };
export type Literal = Scalar | { type: 'list'; items: Scalar[] };

/** `attribute op value`, inside `.where(…)` or as a direct comparison (`payment.amount > 1000`). */
export interface AttributeComparison {
  type: 'compare';
  attribute: string;
  op: ComparisonOp;
  value: Literal;
}

/** What one `.where(…)` asks of a span: comparisons and bare boolean attributes under and / or / not. */
export type WhereCondition =
  | AttributeComparison
  /** A bare attribute (`.where(verified)`): true when it is true (missing: false). */
  | { type: 'truthy'; attribute: string }
  | { type: 'and' | 'or'; left: WhereCondition; right: WhereCondition }
  | { type: 'not'; operand: WhereCondition };

/**
 * A span name and the where conditions one span must satisfy, all of them, to match. `name`
 * null: any span (a direct comparison without a span name, `endpoint matches "^/admin"`).
 */
export interface SpanCheck {
  name: string | null;
  where: WhereCondition[];
}

export type CountRight = Scalar | { type: 'count'; check: SpanCheck };

export type Condition =
  | { type: 'exists'; check: SpanCheck }
  | { type: 'count'; check: SpanCheck; op: CountOp; right: CountRight }
  | { type: 'and'; left: Condition; right: Condition }
  | { type: 'or'; left: Condition; right: Condition }
  | { type: 'not'; operand: Condition };

export type RuleAst =
  | { type: 'condition'; condition: Condition }
  | { type: 'invariant'; when: Condition; always?: Condition; never?: Condition };

const SEGMENT = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
export const KEYWORDS = new Set(['and', 'or', 'not', 'when', 'always', 'never', 'count', 'where', 'in', 'matches', 'contains', 'true', 'false']);

/** Whether the grammar reads `text` unquoted as this one identifier (dots allowed). */
function isIdentifier(text: string): boolean {
  return !KEYWORDS.has(text) && text.split('.').every((segment) => SEGMENT.test(segment) && segment !== 'where');
}

/** A name as the grammar reads it back: bare when it is an identifier, else quoted. */
function nameText(name: string): string {
  return isIdentifier(name) ? name : quote(name);
}

/** Quotes escape only `"`: every other backslash stays as written (regexes read as written). */
function quote(text: string): string {
  return `"${text.replace(/"/g, '\\"')}"`;
}

function scalarText(value: Scalar): string {
  if (value.type === 'string') return value.quoted || !isIdentifier(value.value) || value.value.includes('.') ? quote(value.value) : value.value;
  return String(value.value);
}

export function literalText(value: Literal): string {
  return value.type === 'list' ? `[${value.items.map(scalarText).join(', ')}]` : scalarText(value);
}

function comparisonText(attribute: string, c: AttributeComparison): string {
  return `${attribute} ${c.op} ${literalText(c.value)}`;
}

export function whereText(condition: WhereCondition): string {
  switch (condition.type) {
    case 'compare':
      return comparisonText(nameText(condition.attribute), condition);
    case 'truthy':
      return nameText(condition.attribute);
    case 'not':
      // not (status == 200) reads better than not status == 200; both parse to this tree.
      return `not ${condition.operand.type === 'truthy' ? whereText(condition.operand) : `(${whereText(condition.operand)})`}`;
    case 'and':
    case 'or':
      return `${groupedWhere(condition.left)} ${condition.type} ${groupedWhere(condition.right)}`;
  }
}

function groupedWhere(condition: WhereCondition): string {
  return condition.type === 'and' || condition.type === 'or' ? `(${whereText(condition)})` : whereText(condition);
}

/**
 * `payment.charge.where(amount > 1000)`; a check of any span is written as the direct comparison
 * it comes from, its attribute quoted when it has a dot (`"http.status_code" >= 500`).
 */
export function checkText(check: SpanCheck): string {
  if (check.name === null) {
    const [only] = check.where;
    if (check.where.length !== 1 || only?.type !== 'compare') throw new Error('a check of any span is one comparison');
    return comparisonText(only.attribute.includes('.') ? quote(only.attribute) : nameText(only.attribute), only);
  }
  return nameText(check.name) + check.where.map((w) => `.where(${whereText(w)})`).join('');
}

/** Source text of a condition that parses back to the same tree (binary children in parentheses). */
export function conditionText(condition: Condition): string {
  switch (condition.type) {
    case 'exists':
      return checkText(condition.check);
    case 'count': {
      const right = condition.right.type === 'count' ? `count(${checkText(condition.right.check)})` : scalarText(condition.right);
      return `count(${checkText(condition.check)}) ${condition.op} ${right}`;
    }
    case 'not':
      return `not ${condition.operand.type === 'not' ? `(${conditionText(condition.operand)})` : grouped(condition.operand)}`;
    case 'and':
    case 'or':
      return `${grouped(condition.left)} ${condition.type} ${grouped(condition.right)}`;
  }
}

function grouped(condition: Condition): string {
  return condition.type === 'and' || condition.type === 'or' ? `(${conditionText(condition)})` : conditionText(condition);
}

export function ruleText(rule: RuleAst): string {
  if (rule.type === 'condition') return conditionText(rule.condition);
  let text = `when { ${conditionText(rule.when)} }`;
  if (rule.always) text += ` always { ${conditionText(rule.always)} }`;
  if (rule.never) text += ` never { ${conditionText(rule.never)} }`;
  return text;
}
