/**
 * The trace-rules DSL as a peggy grammar: BeTrace's grammar (betrace-hq/betrace,
 * docs/technical/trace-rules-dsl.md) plus what its examples use (`not (…)`, newlines before
 * `.where`) and a few documented extensions: quoted span and attribute names, `where` and `count`
 * over the same span checks, negative numbers, quoted strings anywhere a value goes, `//`
 * comments. Precedence: `not` > `and` > `or`. Actions only build the tree (ast.ts) and refuse
 * comparisons that can never hold (`amount > USD`), so that the error points at the predicate.
 *
 * Kept as a string and generated once at first use (parser.ts): no build step, no generated
 * file to keep in step with this one.
 */
export const RULE_GRAMMAR = String.raw`
{{
  function fold(head, tail, type) {
    return tail.reduce((left, right) => ({ type, left, right }), head);
  }
  const ORDERING = new Set(['>', '>=', '<', '<=']);
  function describe(value) {
    if (value.type === 'list') return 'a list';
    if (value.type === 'string') return value.quoted ? JSON.stringify(value.value) : value.value;
    return String(value.value);
  }
}}

Rule
  = _ rule:(Invariant / SimpleCondition) _ { return rule; }

SimpleCondition
  = condition:Condition { return { type: 'condition', condition }; }

// BeTrace: at least one of always/never, in either order.
Invariant
  = WhenKw _ when:Block _ always:(AlwaysKw _ @Block) _ never:(NeverKw _ @Block)? { return never ? { type: 'invariant', when, always, never } : { type: 'invariant', when, always }; }
  / WhenKw _ when:Block _ never:(NeverKw _ @Block) _ always:(AlwaysKw _ @Block)? { return always ? { type: 'invariant', when, always, never } : { type: 'invariant', when, never }; }

Block
  = "{" _ @Condition _ "}"

Condition
  = head:And tail:(_ OrKw _ @And)* { return fold(head, tail, 'or'); }

And
  = head:Not tail:(_ AndKw _ @Not)* { return fold(head, tail, 'and'); }

Not
  = NotKw _ operand:Not { return { type: 'not', operand }; }
  / Primary

Primary
  = "(" _ @Condition _ ")"
  / CountComparison
  / check:SpanCheck { return { type: 'exists', check }; }

CountComparison
  = left:Count _ op:CountOp _ right:(Count / Number) { return { type: 'count', check: left.check, op, right }; }

Count
  = CountKw _ "(" _ check:SpanCheck _ ")" { return { type: 'count', check }; }

SpanCheck
  = name:Name where:(_ "." WhereKw _ "(" _ @WherePredicate _ ")")* { return { name, where }; }

WherePredicate
  = attribute:Name _ op:ComparisonOp _ value:Value {
      if (ORDERING.has(op) && value.type !== 'number') error('"' + op + '" compares numbers, not ' + describe(value));
      if (op === 'in' && value.type !== 'list') error('"in" needs a list such as [a, b], not ' + describe(value));
      if (op !== 'in' && value.type === 'list') error('"' + op + '" cannot compare with a list (use "in")');
      if (op === 'matches') {
        if (value.type !== 'string' || !value.quoted) error('"matches" needs a quoted regular expression, not ' + describe(value));
        const problem = options.regexProblem(value.value);
        if (problem !== undefined) error('invalid regular expression: ' + problem);
      }
      return { attribute, op, value };
    }

CountOp
  = "==" / "!=" / ">=" / "<=" / ">" / "<"

ComparisonOp
  = CountOp / InKw { return 'in'; } / MatchesKw { return 'matches'; }

Value
  = List / Scalar

List "list"
  = "[" _ head:Scalar tail:(_ "," _ @Scalar)* _ "]" { return { type: 'list', items: [head, ...tail] }; }

Scalar
  = Number
  / TrueKw { return { type: 'boolean', value: true }; }
  / FalseKw { return { type: 'boolean', value: false }; }
  / value:QuotedString { return { type: 'string', value, quoted: true }; }
  / value:Identifier { return { type: 'string', value, quoted: false }; }

Number "number"
  = text:$("-"? [0-9]+ ("." [0-9]+)?) !IdentChar { return { type: 'number', value: Number(text) }; }

Name
  = Identifier / QuotedString

// BeTrace's identifier is [a-zA-Z_][a-zA-Z0-9_.]*; a dot followed by where( starts a where clause.
Identifier "identifier"
  = !Keyword @$([a-zA-Z_] [a-zA-Z0-9_]* ("." !("where" _ "(") [a-zA-Z0-9_]+)*)

// Inside quotes \" is a quote; any other backslash stays as written, so regexes read as written.
QuotedString "quoted string"
  = '"' chars:('\\"' { return '"'; } / $("\\" [^"]) / [^"\\\n])* '"' { return chars.join(''); }

Keyword
  = ("and" / "or" / "not" / "when" / "always" / "never" / "count" / "in" / "matches" / "true" / "false") !IdentChar

IdentChar
  = [a-zA-Z0-9_.]

AndKw = "and" !IdentChar
OrKw = "or" !IdentChar
NotKw = "not" !IdentChar
WhenKw = "when" !IdentChar
AlwaysKw = "always" !IdentChar
NeverKw = "never" !IdentChar
CountKw = "count" !IdentChar
InKw = "in" !IdentChar
MatchesKw = "matches" !IdentChar
TrueKw = "true" !IdentChar
FalseKw = "false" !IdentChar
WhereKw = "where"

_ "whitespace"
  = ([ \t\r\n] / "//" [^\n]*)*
`;
