/**
 * Tenant ids become path components (span log folders, DuckDB file names), so only canonical,
 * lower-case UUIDs are accepted: no separators, no dots, nothing a path could escape with.
 */
export const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isCanonicalUuid(value: unknown): value is string {
  return typeof value === 'string' && CANONICAL_UUID.test(value);
}

/** A UUID in any letter case; canonicalTenantId lower-cases it. */
export const TENANT_ID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
const ANY_CASE_UUID = new RegExp(TENANT_ID_PATTERN);

/**
 * UUIDs are case-insensitive (RFC 9562), so `6F9619FF-…` and `6f9619ff-…` are one tenant: both
 * are accepted and stored under the lower-case form, never as two folders or databases.
 */
export function canonicalTenantId(value: string): string | undefined {
  return ANY_CASE_UUID.test(value) ? value.toLowerCase() : undefined;
}
