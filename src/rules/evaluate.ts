import type { Severity } from '../model/signal.js';
import { holds, type CompiledRule, type CompiledRuleSet, type Formula, type RuleSpan } from './compile.js';

/** Span ids kept per check, and per rule hit, as evidence. */
export const EVIDENCE_SPAN_IDS = 8;

/**
 * What one trace has shown so far, for one tenant's rule set: a counter per distinct span check
 * and the smallest few span ids that matched it. Its size depends on the rules, never on how
 * many spans the trace has. Keeping the smallest ids (not the first seen) makes the evidence,
 * like the verdict, independent of the order spans arrive in.
 */
export interface TraceState {
  counts: Float64Array;
  spanIds: string[][];
  spanCount: number;
}

export interface RuleHit {
  ruleId: string;
  ruleName: string;
  severity: Severity;
  message: string;
  evidence: {
    /** Spans of the trace matching each check the rule mentions. */
    matches: Record<string, number>;
    /** Parts (`and` operands) of `always` that did not hold. */
    missingAlways: string[];
    /** Parts (`or` operands) of `never` that held. */
    presentNever: string[];
    /** Smallest ids of spans that matched the checks that made the rule fire. */
    spanIds: string[];
    spanCount: number;
  };
}

/**
 * Evaluates one trace against a compiled rule set, one span (or batch) at a time, in any order.
 * `hits()` at trace end equals evaluating the rules over the whole trace at once.
 */
export class TraceEvaluation {
  readonly state: TraceState;

  constructor(readonly ruleSet: CompiledRuleSet) {
    this.state = { counts: new Float64Array(ruleSet.checks.length), spanIds: ruleSet.checks.map(() => []), spanCount: 0 };
  }

  add(span: RuleSpan): void {
    this.state.spanCount++;
    // A name's list holds the checks without a span name too; other names get only those.
    let checks = this.ruleSet.checksBySpanName.get(span.name);
    if (checks === undefined) {
      checks = this.ruleSet.anySpanChecks;
      if (checks.length === 0) return;
    }
    for (const check of checks) {
      if (!check.matches(span)) continue;
      this.state.counts[check.index]!++;
      keepSmallest(this.state.spanIds[check.index]!, span.spanId);
    }
  }

  addAll(spans: Iterable<RuleSpan>): void {
    for (const span of spans) this.add(span);
  }

  /** The rules that fire on the trace as seen so far, in rule order. */
  hits(): RuleHit[] {
    const out: RuleHit[] = [];
    for (const rule of this.ruleSet.rules) {
      const hit = this.hitOf(rule);
      if (hit) out.push(hit);
    }
    return out;
  }

  private hitOf(rule: CompiledRule): RuleHit | undefined {
    const { counts } = this.state;
    if (!holds(rule.when, counts)) return undefined;
    const missingAlways = rule.always ? operands(rule.always, 'and').filter((f) => !holds(f, counts)) : [];
    const presentNever = rule.never ? operands(rule.never, 'or').filter((f) => holds(f, counts)) : [];
    const isInvariant = rule.always !== undefined || rule.never !== undefined;
    if (isInvariant && missingAlways.length === 0 && presentNever.length === 0) return undefined;

    const matches: Record<string, number> = {};
    for (const i of rule.checks) matches[this.ruleSet.checks[i]!.text] = counts[i]!;
    // The spans to look at: those of the context (when, or the condition) and of what was forbidden.
    const evidenceChecks = new Set([...presentChecks(rule.when, counts), ...presentNever.flatMap((f) => presentChecks(f, counts))]);
    const spanIds: string[] = [];
    for (const i of evidenceChecks) for (const id of this.state.spanIds[i]!) keepSmallest(spanIds, id);

    const { definition } = rule;
    return {
      ruleId: definition.id,
      ruleName: definition.name,
      severity: definition.severity,
      message: messageOf(definition.name, rule.when.text, isInvariant, missingAlways, presentNever),
      evidence: { matches, missingAlways: missingAlways.map((f) => f.text), presentNever: presentNever.map((f) => f.text), spanIds, spanCount: this.state.spanCount },
    };
  }
}

function messageOf(name: string, when: string, isInvariant: boolean, missingAlways: Formula[], presentNever: Formula[]): string {
  if (!isInvariant) return `${name}: ${when}`;
  const parts = [`${name}: when ${when}`];
  if (missingAlways.length > 0) parts.push(`missing always: ${missingAlways.map((f) => f.text).join(', ')}`);
  if (presentNever.length > 0) parts.push(`present never: ${presentNever.map((f) => f.text).join(', ')}`);
  return parts.join('; ');
}

/** `a and b and c` → [a, b, c]: the parts a reader recognizes in the rule. */
function operands(formula: Formula, type: 'and' | 'or'): Formula[] {
  return formula.type === type ? [...operands(formula.left, type), ...operands(formula.right, type)] : [formula];
}

/** Checks that matched at least one span, among those a formula mentions outside a `not`. */
function presentChecks(formula: Formula, counts: Float64Array): number[] {
  switch (formula.type) {
    case 'exists':
    case 'count': {
      const checks = formula.type === 'count' && formula.right.type === 'count' ? [formula.check, formula.right.check] : [formula.check];
      return checks.filter((i) => counts[i]! > 0);
    }
    case 'not':
      return [];
    default:
      return [...presentChecks(formula.left, counts), ...presentChecks(formula.right, counts)];
  }
}

/** Keeps `ids` sorted and at most EVIDENCE_SPAN_IDS long, holding the smallest ids seen. */
function keepSmallest(ids: string[], id: string): void {
  if (ids.length === EVIDENCE_SPAN_IDS && id >= ids[ids.length - 1]!) return;
  let i = ids.length;
  while (i > 0 && ids[i - 1]! > id) i--;
  if (ids[i - 1] === id) return;
  ids.splice(i, 0, id);
  if (ids.length > EVIDENCE_SPAN_IDS) ids.pop();
}
