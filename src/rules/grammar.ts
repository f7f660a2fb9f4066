/**
 * The trace-rules DSL as a peggy grammar: BeTrace's grammar (betrace-hq/betrace,
 * backend/internal/dsl/parser.go; docs/technical/trace-rules-dsl.md and docs/DSL_SYNTAX_GUIDE.md)
 * plus what its docs use (simple conditions without `when`) and a few documented extensions
 * (README, "Beyond BeTrace"): quoted span names, `where` inside `count(…)`, negative numbers,
 * `\"` inside quotes, numbers in lists, unquoted dotted attributes in `.where`. Precedence: `not` >
 * `and` > `or`, inside `.where(…)` as outside; `not` applies to one term (`not not a` is refused,
 * as by BeTrace: write `not (not a)`). Actions only build the tree (ast.ts) and refuse
 * comparisons that cannot be evaluated (`amount in USD`, an invalid regex), so that the error
 * points at the comparison.
 *
 * Kept as a string and generated once at first use (parser.ts): no build step, no generated
 * file to keep in step with this one.
 */
export const RULE_GRAMMAR = String.raw`
{{
  function fold(head, tail, type) {
    return tail.reduce((left, right) => ({ type, left, right }), head);
  }
  function describe(value) {
    if (value.type === 'list') return 'a list';
    if (value.type === 'string') return value.quoted ? JSON.stringify(value.value) : value.value;
    return String(value.value);
  }
  // Why a comparison cannot be evaluated, or undefined. Ordering comparisons take any scalar:
  // against a string or boolean they compare text, as BeTrace does (compile.ts).
  function comparisonProblem(op, value, regexProblem) {
    if (op === 'in') return value.type === 'list' ? undefined : '"in" needs a list such as [a, b], not ' + describe(value);
    if (value.type === 'list') return '"' + op + '" cannot compare with a list (use "in")';
    if (op === 'matches') {
      if (value.type !== 'string' || !value.quoted) return '"matches" needs a quoted regular expression, not ' + describe(value);
      const problem = regexProblem(value.value);
      if (problem !== undefined) return 'invalid regular expression: ' + problem;
    }
    return undefined;
  }
  // payment.amount: the last segment is the attribute, the rest the span name; a single segment
  // is an attribute of any span.
  function splitPath(path) {
    const dot = path.lastIndexOf('.');
    return dot < 0 ? { span: null, attribute: path } : { span: path.slice(0, dot), attribute: path.slice(dot + 1) };
  }
}}

Rule
  = _ rule:(Invariant / SimpleCondition) _ { return rule; }

SimpleCondition
  = condition:Condition { return { type: 'condition', condition }; }

// BeTrace: always and never in either order, each optional. A rule that is only when { … }
// (BeTrace's parser accepts it, its tests use it) means the condition inside: it fires when that holds.
Invariant
  = WhenKw _ when:Block _ always:(AlwaysKw _ @Block) _ never:(NeverKw _ @Block)? { return never ? { type: 'invariant', when, always, never } : { type: 'invariant', when, always }; }
  / WhenKw _ when:Block _ never:(NeverKw _ @Block) _ always:(AlwaysKw _ @Block)? { return always ? { type: 'invariant', when, always, never } : { type: 'invariant', when, never }; }
  / WhenKw _ condition:Block { return { type: 'condition', condition }; }

Block
  = "{" _ @Condition _ "}"

Condition
  = head:And tail:(_ OrKw _ @And)* { return fold(head, tail, 'or'); }

And
  = head:Not tail:(_ AndKw _ @Not)* { return fold(head, tail, 'and'); }

Not
  = NotKw _ operand:Primary { return { type: 'not', operand }; }
  / Primary

Primary
  = "(" _ @Condition _ ")"
  / CountComparison
  / SpanTerm

CountComparison
  = left:Count _ op:CountOp _ right:(Count / Scalar) { return { type: 'count', check: left.check, op, right }; }

Count
  = CountKw _ "(" _ check:SpanCheck _ ")" { return { type: 'count', check }; }

// A span check, or a direct comparison: payment.amount > 1000 is payment.where(amount > 1000)
// (BeTrace's syntax guide). The name is read once, then what follows it decides.
SpanTerm
  = name:NameToken rest:(DirectComparison / WhereChain) {
      if (Array.isArray(rest)) return { type: 'exists', check: { name: name.text, where: rest } };
      const problem = comparisonProblem(rest.op, rest.value, options.regexProblem);
      if (problem !== undefined) error(problem);
      const path = rest.attribute !== null ? { span: name.text, attribute: rest.attribute } : name.quoted ? { span: null, attribute: name.text } : splitPath(name.text);
      return { type: 'exists', check: { name: path.span, where: [{ type: 'compare', attribute: path.attribute, op: rest.op, value: rest.value }] } };
    }

NameToken
  = text:Identifier { return { text, quoted: false }; }
  / text:QuotedString { return { text, quoted: true }; }

// After the name: an attribute when the name does not end with it ("GET /items".status,
// payment."card.type", "GET /items"."http.status_code": quotes keep a name with dots or spaces
// whole), then the comparison. Without one, the name's last segment is the attribute, the rest
// the span name; a single name is an attribute of any span ("http.status_code" >= 500).
DirectComparison
  = attribute:("." @($Segment / QuotedString))? _ op:ComparisonOp _ value:Value { return { attribute, op, value }; }

SpanCheck
  = name:Name where:WhereChain { return { name, where }; }

WhereChain
  = (_ "." WhereKw _ "(" _ @WhereCondition _ ")")*

// Inside .where(…): the span's attributes, combined with and / or / not and parentheses.
WhereCondition
  = head:WhereAnd tail:(_ OrKw _ @WhereAnd)* { return fold(head, tail, 'or'); }

WhereAnd
  = head:WhereNot tail:(_ AndKw _ @WhereNot)* { return fold(head, tail, 'and'); }

WhereNot
  = NotKw _ operand:WhereTerm { return { type: 'not', operand }; }
  / WhereTerm

WhereTerm
  = "(" _ @WhereCondition _ ")"
  / AttributeComparison
  / attribute:Name { return { type: 'truthy', attribute }; }

AttributeComparison
  = attribute:Name _ op:ComparisonOp _ value:Value {
      const problem = comparisonProblem(op, value, options.regexProblem);
      if (problem !== undefined) error(problem);
      return { type: 'compare', attribute, op, value };
    }

CountOp "comparison operator"
  = "==" / "!=" / ">=" / "<=" / ">" / "<"

ComparisonOp "comparison operator"
  = CountOp / InKw { return 'in'; } / MatchesKw { return 'matches'; } / ContainsKw { return 'contains'; }

Value
  = List / Scalar

List "list"
  = "[" _ head:Scalar tail:(_ "," _ @Scalar)* _ "]" { return { type: 'list', items: [head, ...tail] }; }

Scalar
  = Number
  / TrueKw { return { type: 'boolean', value: true }; }
  / FalseKw { return { type: 'boolean', value: false }; }
  / value:QuotedString { return { type: 'string', value, quoted: true }; }
  / value:Word { return { type: 'string', value, quoted: false }; }

Number "number"
  = text:$("-"? [0-9]+ ("." [0-9]+)?) !IdentChar { return { type: 'number', value: Number(text) }; }

Name
  = Identifier / QuotedString

// BeTrace's identifier, [a-zA-Z_][a-zA-Z0-9_]*, joined by dots; "where" is a keyword, never a
// segment, so .where( always starts a where clause (payment.where alone is an error).
Identifier "identifier"
  = !Keyword @$(Segment ("." Segment)*)

Segment
  = !("where" !WordChar) [a-zA-Z_] [a-zA-Z0-9_]*

// A bare value is one identifier segment, as in BeTrace (currency == USD): payment.amount >
// fraud_score.threshold is refused, not read as the text "fraud_score.threshold".
Word "identifier"
  = !Keyword @$Segment

// Inside quotes \" is a quote; any other backslash stays as written, so regexes read as written.
// A quoted string may span lines, as in BeTrace.
QuotedString "quoted string"
  = '"' chars:('\\"' { return '"'; } / $("\\" [^"]) / $[^"\\]+)* '"' { return chars.join(''); }

Keyword
  = ("and" / "or" / "not" / "when" / "always" / "never" / "count" / "where" / "in" / "matches" / "contains" / "true" / "false") !IdentChar

WordChar
  = [a-zA-Z0-9_]

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
ContainsKw = "contains" !IdentChar
TrueKw = "true" !IdentChar
FalseKw = "false" !IdentChar
WhereKw = "where" !WordChar

_ "whitespace"
  = ([ \t\r\n] / "//" [^\n]*)*
`;
