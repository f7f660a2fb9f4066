import { z } from 'zod';
import { CANONICAL_UUID } from './tenant.js';

export const SEVERITIES = ['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'] as const;
export type Severity = (typeof SEVERITIES)[number];

/**
 * A signal: one rule hit found in a trace. `id` is the idempotency key for both stores:
 * the TigerBeetle transfer id is derived from it and it is the DuckDB primary key.
 */
export const signalSchema = z.strictObject({
  id: z.string().regex(CANONICAL_UUID, 'must be a canonical lower-case UUID'),
  tenantId: z.string().regex(CANONICAL_UUID, 'must be a canonical lower-case UUID'),
  ruleId: z.string().min(1).max(256),
  traceId: z.string().regex(/^[0-9a-f]{32}$/, 'must be 32 lower-case hex characters'),
  /** RFC 3339 time at which the rule fired, e.g. 2026-11-24T10:00:00.000Z. */
  timestamp: z.iso.datetime({ offset: true }),
  severity: z.enum(SEVERITIES),
  message: z.string().max(8192),
  metadata: z.record(z.string(), z.unknown()),
});

export type Signal = z.infer<typeof signalSchema>;
