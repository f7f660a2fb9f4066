/** Helpers for rule-engine unit tests: spans with fresh ids, rule definitions, and "did it fire". */
import type { AttributeValue } from '../../src/model/span.js';
import { compileRuleSet, type RuleDefinition, type RuleSpan } from '../../src/rules/compile.js';
import { TraceEvaluation } from '../../src/rules/evaluate.js';

let nextId = 1;
export function span(name: string, attributes: Record<string, AttributeValue> = {}, resource: Record<string, AttributeValue> = {}): RuleSpan {
  return { name, spanId: (nextId++).toString(16).padStart(16, '0'), attributes, resource: { attributes: resource } };
}
export function rule(id: string, condition: string, extra: Partial<RuleDefinition> = {}): RuleDefinition {
  return { id, name: id, severity: 'HIGH', condition, enabled: true, ...extra };
}
/** Whether the one rule `condition` fires on a trace of `spans`. */
export function fired(condition: string, spans: RuleSpan[]): boolean {
  const evaluation = new TraceEvaluation(compileRuleSet([rule('r', condition)]));
  evaluation.addAll(spans);
  return evaluation.hits().length === 1;
}
