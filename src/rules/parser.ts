import peggy from 'peggy';
import { compileRegex } from './regex.js';
import { RuleSyntaxError } from '../errors.js';
import type { RuleAst } from './ast.js';
import { RULE_GRAMMAR } from './grammar.js';

let generated: peggy.Parser | undefined;

/** Why a `matches` pattern is not one the engine runs (RE2 syntax), for the grammar's error. */
function regexProblem(pattern: string): string | undefined {
  try {
    compileRegex(pattern);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

/** The peggy parser, generated from the grammar on first use (a few ms, once per process). */
function ruleParser(): peggy.Parser {
  generated ??= peggy.generate(RULE_GRAMMAR);
  return generated;
}

/**
 * Parses one rule condition (a simple condition or a when/always/never invariant). Throws
 * RuleSyntaxError with the line, column and what was expected: `2:31: expected ")" but found "{"`.
 */
export function parseRule(text: string): RuleAst {
  const parser = ruleParser();
  try {
    return parser.parse(text, { regexProblem }) as RuleAst;
  } catch (e) {
    if (!(e instanceof parser.SyntaxError)) throw e;
    const { line, column } = e.location.start;
    if (e.expected === null) return raise(e.message, line, column, []);
    const expected = [...new Set(e.expected.flatMap(expectationTexts))].sort();
    const found = e.found === null ? 'end of input' : JSON.stringify(e.found);
    return raise(`expected ${oneOf(expected)} but found ${found}`, line, column, expected);
  }
}

function raise(message: string, line: number, column: number, expected: string[]): never {
  throw new RuleSyntaxError(message, { line, column, expected });
}

/**
 * Whitespace is accepted everywhere: listing it as expected would only add noise. peggy merges
 * one-character alternatives (">" / "<") into a class: list its characters as the literals they were.
 */
function expectationTexts(expectation: peggy.parser.Expectation): string[] {
  switch (expectation.type) {
    case 'literal':
      return [JSON.stringify(expectation.text)];
    case 'other':
      return expectation.description === 'whitespace' ? [] : [expectation.description];
    case 'end':
      return ['end of input'];
    case 'class':
      return !expectation.inverted && expectation.parts.every((p) => typeof p === 'string') ? expectation.parts.map((p) => JSON.stringify(p)) : ['a character'];
    default:
      return ['a character'];
  }
}

function oneOf(items: string[]): string {
  return items.length <= 1 ? (items[0] ?? 'nothing') : `${items.slice(0, -1).join(', ')} or ${items[items.length - 1]}`;
}
