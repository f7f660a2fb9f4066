/**
 * Tenant ids become path components (span log folders, DuckDB file names), so only canonical,
 * lower-case UUIDs are accepted: no separators, no dots, nothing a path could escape with.
 */
export const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isCanonicalUuid(value: unknown): value is string {
  return typeof value === 'string' && CANONICAL_UUID.test(value);
}
