import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ruleText, type AttributeComparison, type Condition, type CountRight, type Literal, type RuleAst, type Scalar, type SpanCheck, type WhereCondition } from '../../../src/rules/ast.js';
import { compileRuleSet, spanMatcher, type RuleSpan } from '../../../src/rules/compile.js';
import { TraceEvaluation } from '../../../src/rules/evaluate.js';
import { parseRule } from '../../../src/rules/parser.js';

// A small vocabulary, so that random rules and random traces meet often.
const NAMES = ['a', 'b', 'pay.charge', 'GET /items'];
const CURRENCIES = ['USD', 'EUR', 'two words'];
const TIERS = ['bronze', 'gold', 'silver', '10', '9'];

const spanArb = fc.record({
  name: fc.constantFrom(...NAMES),
  spanId: fc.stringMatching(/^[0-9a-f]{16}$/),
  attributes: fc.record(
    {
      amount: fc.oneof(fc.integer({ min: 0, max: 10 }), fc.integer({ min: 0, max: 10 }).map(String)),
      currency: fc.constantFrom(...CURRENCIES),
      tier: fc.constantFrom(...TIERS),
      verified: fc.constantFrom(true, false, 'true', 'false', 1),
      tags: fc.subarray(['red', 'blue', 'USD']),
    },
    { requiredKeys: [] },
  ),
  resource: fc.record({ attributes: fc.record({ amount: fc.integer({ min: 0, max: 10 }), flag: fc.boolean() }, { requiredKeys: [] }) }),
}) as fc.Arbitrary<RuleSpan>;

const ORDERING = ['>', '>=', '<', '<='] as const;
const word = (value: string): Scalar => ({ type: 'string', value, quoted: !/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(value) });
const compareArb: fc.Arbitrary<AttributeComparison> = fc.oneof(
  fc.record({ type: fc.constant('compare' as const), attribute: fc.constant('amount'), op: fc.constantFrom('==', '!=', ...ORDERING), value: fc.integer({ min: 0, max: 10 }).map((value) => ({ type: 'number' as const, value })) }),
  fc.record({ type: fc.constant('compare' as const), attribute: fc.constant('currency'), op: fc.constantFrom('==', '!=', 'contains' as const), value: fc.constantFrom(...CURRENCIES, 'US', 'o w').map(word) }),
  fc.record({ type: fc.constant('compare' as const), attribute: fc.constant('flag'), op: fc.constant('==' as const), value: fc.boolean().map((value) => ({ type: 'boolean' as const, value })) }),
  fc.record({ type: fc.constant('compare' as const), attribute: fc.constant('currency'), op: fc.constant('in' as const), value: fc.constant<Literal>({ type: 'list', items: [word('USD'), word('EUR')] }) }),
  fc.record({ type: fc.constant('compare' as const), attribute: fc.constant('currency'), op: fc.constant('matches' as const), value: fc.constantFrom('^U', 'R$', ' ').map((value) => ({ type: 'string' as const, value, quoted: true })) }),
  // Ordering against text (BeTrace): identifiers, numeric strings, booleans.
  fc.record({ type: fc.constant('compare' as const), attribute: fc.constantFrom('tier', 'amount', 'verified'), op: fc.constantFrom(...ORDERING), value: fc.oneof(fc.constantFrom(...TIERS).map((v) => ({ type: 'string' as const, value: v, quoted: true })), fc.constantFrom('gold', 'max').map(word), fc.boolean().map((value) => ({ type: 'boolean' as const, value }))) }),
  fc.record({ type: fc.constant('compare' as const), attribute: fc.constant('tags'), op: fc.constant('contains' as const), value: fc.constantFrom('red', 'USD', 're').map(word) }),
);

const { where: whereArb } = fc.letrec<{ where: WhereCondition }>((tie) => ({
  where: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    compareArb,
    fc.constantFrom('verified', 'flag', 'missing.flag').map((attribute) => ({ type: 'truthy' as const, attribute })),
    fc.record({ type: fc.constantFrom('and', 'or' as const), left: tie('where'), right: tie('where') }),
    fc.record({ type: fc.constant('not' as const), operand: tie('where') }),
  ),
}));
const checkArb: fc.Arbitrary<SpanCheck> = fc.record({ name: fc.constantFrom(...NAMES), where: fc.array(whereArb, { maxLength: 2 }) });
// A direct comparison without a span name: one comparison, any span.
const anySpanCheckArb: fc.Arbitrary<SpanCheck> = compareArb.map((comparison) => ({ name: null, where: [comparison] }));
const countRightArb: fc.Arbitrary<CountRight> = fc.oneof(
  fc.integer({ min: 0, max: 4 }).map((value) => ({ type: 'number' as const, value })),
  checkArb.map((check) => ({ type: 'count' as const, check })),
  fc.constantFrom('2', 'N', 'two words').map(word),
  fc.boolean().map((value) => ({ type: 'boolean' as const, value })),
);

const { condition: conditionArb } = fc.letrec<{ condition: Condition }>((tie) => ({
  condition: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.oneof(checkArb, anySpanCheckArb).map((check) => ({ type: 'exists' as const, check })),
    fc.record({ type: fc.constant('count' as const), check: checkArb, op: fc.constantFrom('==', '!=', '>', '>=', '<', '<=' as const), right: countRightArb }),
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

/** Whether one span satisfies a where tree: the boolean structure by recursion, each leaf alone. */
function spanSatisfies(where: WhereCondition, span: RuleSpan): boolean {
  switch (where.type) {
    case 'compare':
    case 'truthy':
      return spanMatcher({ name: null, where: [where] })(span);
    case 'not':
      return !spanSatisfies(where.operand, span);
    case 'and':
      return spanSatisfies(where.left, span) && spanSatisfies(where.right, span);
    case 'or':
      return spanSatisfies(where.left, span) || spanSatisfies(where.right, span);
  }
}

/** The oracle: the whole trace at once, straight from the syntax tree. */
function wholeTrace(condition: Condition, spans: RuleSpan[]): boolean {
  const count = (check: SpanCheck) => spans.filter((span) => (check.name === null || span.name === check.name) && check.where.every((w) => spanSatisfies(w, span))).length;
  switch (condition.type) {
    case 'exists':
      return count(condition.check) > 0;
    case 'count': {
      const l = count(condition.check);
      const { right } = condition;
      if (right.type === 'string' || right.type === 'boolean') {
        // A count against text compares as an attribute holding the count would.
        return spanMatcher({ name: null, where: [{ type: 'compare', attribute: 'n', op: condition.op, value: right }] })({ name: '', spanId: '', attributes: { n: l } });
      }
      const r = right.type === 'number' ? right.value : count(right.check);
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

  it('when { X } alone parses as X, and a direct comparison as its where form', () => {
    fc.assert(
      fc.property(conditionArb, (condition) => {
        expect(parseRule(`when { ${ruleText({ type: 'condition', condition })} }`)).toEqual({ type: 'condition', condition });
      }),
      { numRuns: 100 },
    );
    fc.assert(
      fc.property(fc.constantFrom('pay.charge', 'a', 'x.y.z'), compareArb, (name, comparison) => {
        const where = ruleText({ type: 'condition', condition: { type: 'exists', check: { name, where: [comparison] } } });
        const direct = ruleText({ type: 'condition', condition: { type: 'exists', check: { name: null, where: [comparison] } } });
        expect(parseRule(`${name}.${direct}`)).toEqual(parseRule(where));
      }),
      { numRuns: 100 },
    );
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
