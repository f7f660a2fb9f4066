import { RE2JS } from 're2js';

/**
 * `matches` patterns run on RE2 (re2js, a JavaScript port of Google's RE2): matching takes time
 * linear in the input whatever the pattern, so a tenant's rule such as `(a+)+$` cannot stall a
 * worker the way a backtracking engine (JavaScript's RegExp) can. The syntax is RE2's, as in
 * BeTrace's Go regexp: no backreferences or lookaround.
 */
export interface SafeRegex {
  /** True when the pattern occurs anywhere in `text` (unanchored search). */
  test(text: string): boolean;
}

/** Compiles a pattern, or throws with RE2's reason. */
export function compileRegex(pattern: string): SafeRegex {
  const compiled = RE2JS.compile(pattern);
  return { test: (text) => compiled.matcher(text).find() };
}
