/**
 * The syntax tree of one trace rule, as the grammar (grammar.ts) builds it, and its canonical
 * text. The canonical text names a span check in evidence and messages, and two checks with the
 * same text are the same check: a tenant's rules share one counter per distinct text.
 */
export type ComparisonOp = '==' | '!=' | '>' | '>=' | '<' | '<=' | 'in' | 'matches';
export type CountOp = Exclude<ComparisonOp, 'in' | 'matches'>;

export type Scalar =
  | { type: 'number'; value: number }
  | { type: 'boolean'; value: boolean }
  /** `quoted` false: a bare identifier used as a string (`currency == USD`). */
  | { type: 'string'; value: string; quoted: boolean };
export type Literal = Scalar | { type: 'list'; items: Scalar[] };

/** One `.where(attribute op value)`. */
export interface WherePredicate {
  attribute: string;
  op: ComparisonOp;
  value: Literal;
}

/** A span name and the predicates one span must satisfy, all of them, to match. */
export interface SpanCheck {
  name: string;
  where: WherePredicate[];
}

export type Condition =
  | { type: 'exists'; check: SpanCheck }
  | { type: 'count'; check: SpanCheck; op: CountOp; right: { type: 'number'; value: number } | { type: 'count'; check: SpanCheck } }
  | { type: 'and'; left: Condition; right: Condition }
  | { type: 'or'; left: Condition; right: Condition }
  | { type: 'not'; operand: Condition };

export type RuleAst =
  | { type: 'condition'; condition: Condition }
  | { type: 'invariant'; when: Condition; always?: Condition; never?: Condition };

const IDENTIFIER = /^[a-zA-Z_][a-zA-Z0-9_]*(\.[a-zA-Z0-9_]+)*$/;
const KEYWORDS = new Set(['and', 'or', 'not', 'when', 'always', 'never', 'count', 'in', 'matches', 'true', 'false']);

/** A name as the grammar reads it back: bare when it is an identifier, else quoted. */
function nameText(name: string): string {
  return IDENTIFIER.test(name) && !KEYWORDS.has(name) ? name : quote(name);
}

/** Quotes escape only `"`: every other backslash stays as written (regexes read as written). */
function quote(text: string): string {
  return `"${text.replace(/"/g, '\\"')}"`;
}

function scalarText(value: Scalar): string {
  if (value.type === 'string') return value.quoted || !IDENTIFIER.test(value.value) || KEYWORDS.has(value.value) ? quote(value.value) : value.value;
  return String(value.value);
}

export function literalText(value: Literal): string {
  return value.type === 'list' ? `[${value.items.map(scalarText).join(', ')}]` : scalarText(value);
}

export function checkText(check: SpanCheck): string {
  return nameText(check.name) + check.where.map((w) => `.where(${nameText(w.attribute)} ${w.op} ${literalText(w.value)})`).join('');
}

/** Source text of a condition that parses back to the same tree (binary children in parentheses). */
export function conditionText(condition: Condition): string {
  switch (condition.type) {
    case 'exists':
      return checkText(condition.check);
    case 'count': {
      const right = condition.right.type === 'number' ? String(condition.right.value) : `count(${checkText(condition.right.check)})`;
      return `count(${checkText(condition.check)}) ${condition.op} ${right}`;
    }
    case 'not':
      return `not ${grouped(condition.operand)}`;
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
