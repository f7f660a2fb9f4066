import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';

/**
 * Record validation on the hot path uses Ajv: it compiles a JSON Schema into one function, which
 * is several times faster per record than an interpreted validator. Schemas carry a
 * `description` on each constrained field, used as the reason a record is rejected.
 */
const ajv = new Ajv({ allErrors: false, verbose: true, strict: true, allowUnionTypes: true });

/**
 * Ajv's validator of `schema`, compiled on its first call (its `errors` set after each call, as
 * Ajv's are): a process that never validates such a value does not pay the compile, ~0.1 s of CPU
 * each at start (a span worker sees no signal; the span quick check leaves few spans to Ajv).
 */
export function compile<T>(schema: object): ValidateFunction<T> {
  let compiled: ValidateFunction<T> | undefined;
  const validate = ((data: unknown) => {
    compiled ??= ajv.compile<T>(schema);
    const valid = compiled(data);
    validate.errors = compiled.errors;
    return valid;
  }) as ValidateFunction<T>;
  return validate;
}

/** One readable line: "traceId: must be 32 lower-case hex characters". */
export function describeErrors(errors: ErrorObject[] | null | undefined): string {
  const e = errors?.[0];
  if (!e) return 'invalid record';
  const path = e.instancePath.replace(/^\//, '').replace(/\//g, '.') || '(record)';
  if (e.keyword === 'additionalProperties') return `${path}: unknown field ${JSON.stringify((e.params as { additionalProperty: string }).additionalProperty)}`;
  if (e.keyword === 'required') return `${path === '(record)' ? '' : `${path}.`}${(e.params as { missingProperty: string }).missingProperty}: is required`;
  const description = (e.parentSchema as { description?: string } | undefined)?.description;
  if (description && (e.keyword === 'pattern' || e.keyword === 'enum' || e.keyword === 'anyOf' || e.keyword === 'maxLength' || e.keyword === 'minLength')) {
    return `${path}: ${description}`;
  }
  return `${path}: ${e.message ?? 'invalid'}`;
}
