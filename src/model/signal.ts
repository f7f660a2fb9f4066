import { compile } from './json-schema.js';
import { CANONICAL_UUID_PATTERN } from './span.js';
import { TENANT_ID_PATTERN } from './tenant.js';

export const SEVERITIES = ['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'] as const;
export type Severity = (typeof SEVERITIES)[number];

/**
 * A signal: one rule hit found in a trace. `id` is the idempotency key for both stores:
 * the TigerBeetle transfer id is derived from it and it is the DuckDB primary key.
 */
export interface Signal {
  id: string;
  tenantId: string;
  ruleId: string;
  traceId: string;
  /** RFC 3339 time at which the rule fired, e.g. 2026-11-24T10:00:00.000Z. */
  timestamp: string;
  severity: Severity;
  message: string;
  metadata: Record<string, unknown>;
}

const uuid = { type: 'string', pattern: CANONICAL_UUID_PATTERN, description: 'must be a canonical lower-case UUID' };

export const SIGNAL_JSON_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'tenantId', 'ruleId', 'traceId', 'timestamp', 'severity', 'message', 'metadata'],
  properties: {
    id: uuid,
    tenantId: { type: 'string', pattern: TENANT_ID_PATTERN, description: 'must be a UUID' },
    ruleId: { type: 'string', minLength: 1, maxLength: 256, description: 'must be 1 to 256 characters' },
    traceId: { type: 'string', pattern: '^[0-9a-f]{32}$', description: 'must be 32 lower-case hex characters' },
    timestamp: {
      type: 'string',
      pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,9})?(Z|[+-]\\d{2}:\\d{2})$',
      description: 'must be an RFC 3339 date-time with an offset, e.g. 2026-11-24T10:00:00.000Z',
    },
    severity: { enum: [...SEVERITIES], description: `must be one of ${SEVERITIES.join(', ')}` },
    message: { type: 'string', maxLength: 8192, description: 'must be at most 8192 characters' },
    metadata: { type: 'object' },
  },
} as const;

export const validateSignal = compile<Signal>(SIGNAL_JSON_SCHEMA);
