import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ruleText, type Condition, type Literal, type RuleAst, type SpanCheck, type WherePredicate } from '../../../src/rules/ast.js';
import { compileRuleSet, spanMatcher, type RuleSpan } from '../../../src/rules/compile.js';
import { TraceEvaluation } from '../../../src/rules/evaluate.js';
import { parseRule } from '../../../src/rules/parser.js';

// A small vocabulary, so that random rules and random traces meet often.
const NAMES = ['a', 'b', 'pay.charge', 'GET /items'];
const CURRENCIES = ['USD', 'EUR', 'two words'];

const spanArb = fc.record({
  name: fc.constantFrom(...NAMES),
  spanId: fc.stringMatching(/^[0-9a-f]{16}$/),
  attributes: fc.record({ amount: fc.oneof(fc.integer({ min: 0, max: 10 }), fc.integer({ min: 0, max: 10 }).map(String)), currency: fc.constantFrom(...CURRENCIES) }, { requiredKeys: [] }),
  resource: fc.record({ attributes: fc.record({ amount: fc.integer({ min: 0, max: 10 }), flag: fc.boolean() }, { requiredKeys: [] }) }),
}) as fc.Arbitrary<RuleSpan>;

const whereArb: fc.Arbitrary<WherePredicate> = fc.oneof(
  fc.record({ attribute: fc.constant('amount'), op: fc.constantFrom('==', '!=', '>', '>=', '<', '<=' as const), value: fc.integer({ min: 0, max: 10 }).map((value) => ({ type: 'number' as const, value })) }),
  fc.record({ attribute: fc.constant('currency'), op: fc.constantFrom('==', '!=' as const), value: fc.constantFrom(...CURRENCIES).map((value) => ({ type: 'string' as const, value, quoted: value.includes(' ') })) }),
  fc.record({ attribute: fc.constant('flag'), op: fc.constant('==' as const), value: fc.boolean().map((value) => ({ type: 'boolean' as const, value })) }),
  fc.record({ attribute: fc.constant('currency'), op: fc.constant('in' as const), value: fc.constant<Literal>({ type: 'list', items: [{ type: 'string', value: 'USD', quoted: false }, { type: 'string', value: 'EUR', quoted: false }] }) }),
  fc.record({ attribute: fc.constant('currency'), op: fc.constant('matches' as const), value: fc.constantFrom('^U', 'R$', ' ').map((value) => ({ type: 'string' as const, value, quoted: true })) }),
);
const checkArb: fc.Arbitrary<SpanCheck> = fc.record({ name: fc.constantFrom(...NAMES), where: fc.array(whereArb, { maxLength: 2 }) });

const { condition: conditionArb } = fc.letrec<{ condition: Condition }>((tie) => ({
  condition: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    checkArb.map((check) => ({ type: 'exists' as const, check })),
    fc.record({
      type: fc.constant('count' as const),
      check: checkArb,
      op: fc.constantFrom('==', '!=', '>', '>=', '<', '<=' as const),
      right: fc.oneof(fc.integer({ min: 0, max: 4 }).map((value) => ({ type: 'number' as const, value })), checkArb.map((check) => ({ type: 'count' as const, check }))),
    }),
    fc.record({ type: fc.constantFrom('and', 'or' as const), left: tie('condition'), right: tie('condition') }),
    fc.record({ type: fc.constant('not' as const), operand: tie('condition') }),
  ),
}));

const ruleArb: fc.Arbitrary<RuleAst> = fc.oneof(
  conditionArb.map((condition) => ({ type: 'condition' as const, condition })),
  fc
    .record({ when: conditionArb, always: fc.option(conditionArb, { nil: undefined }), never: fc.option(conditionArb, { nil: undefined }) })
    .filter((r) => r.always !== undefined || r.never !== undefined)
    .map((r) => {
      const rule: RuleAst = { type: 'invariant', when: r.when };
      if (r.always) rule.always = r.always;
      if (r.never) rule.never = r.never;
      return rule;
    }),
);

/** The oracle: the whole trace at once, straight from the syntax tree. */
function wholeTrace(condition: Condition, spans: RuleSpan[]): boolean {
  const count = (check: SpanCheck) => spans.filter(spanMatcher(check)).length;
  switch (condition.type) {
    case 'exists':
      return count(condition.check) > 0;
    case 'count': {
      const [l, r] = [count(condition.check), condition.right.type === 'number' ? condition.right.value : count(condition.right.check)];
      return { '==': l === r, '!=': l !== r, '>': l > r, '>=': l >= r, '<': l < r, '<=': l <= r }[condition.op];
    }
    case 'not':
      return !wholeTrace(condition.operand, spans);
    case 'and':
      return wholeTrace(condition.left, spans) && wholeTrace(condition.right, spans);
    case 'or':
      return wholeTrace(condition.left, spans) || wholeTrace(condition.right, spans);
  }
}

function firesOnWholeTrace(rule: RuleAst, spans: RuleSpan[]): boolean {
  if (rule.type === 'condition') return wholeTrace(rule.condition, spans);
  return wholeTrace(rule.when, spans) && ((rule.always !== undefined && !wholeTrace(rule.always, spans)) || (rule.never !== undefined && wholeTrace(rule.never, spans)));
}

describe('properties', () => {
  it('canonical text parses back to the same tree', () => {
    fc.assert(fc.property(ruleArb, (rule) => {
          expect(parseRule(ruleText(rule))).toEqual(rule);
        }), { numRuns: 300 });
  });

  it('the incremental verdict equals a whole-trace evaluation, whatever the span order and batching', () => {
    fc.assert(
      fc.property(fc.array(ruleArb, { minLength: 1, maxLength: 4 }), fc.array(spanArb, { maxLength: 30 }), fc.nat(), (rules, spans, seed) => {
        const definitions = rules.map((r, i) => ({ id: `r${i}`, name: `r${i}`, severity: 'LOW' as const, condition: ruleText(r), enabled: true }));
        const ruleSet = compileRuleSet(definitions);
        const inOrder = new TraceEvaluation(ruleSet);
        inOrder.addAll(spans);
        const shuffled = [...spans].sort((x, y) => ((x.spanId.charCodeAt(seed % 16) ^ seed) & 7) - ((y.spanId.charCodeAt(seed % 16) ^ seed) & 7)).reverse();
        const batched = new TraceEvaluation(ruleSet);
        for (let i = 0; i < shuffled.length; i += 1 + (seed % 5)) batched.addAll(shuffled.slice(i, i + 1 + (seed % 5)));

        const expected = rules.flatMap((r, i) => (firesOnWholeTrace(r, spans) ? [`r${i}`] : []));
        expect(inOrder.hits().map((h) => h.ruleId)).toEqual(expected);
        // Evidence included: the whole verdict does not depend on the order spans came in.
        expect(batched.hits()).toEqual(inOrder.hits());
      }),
      { numRuns: 300 },
    );
  });
});
