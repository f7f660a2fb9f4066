import { randomBytes, randomUUID } from 'node:crypto';
import { SEVERITIES, type Signal } from './signal.js';
import type { Span } from './span.js';

/** Deterministic, readable tenant ids for load generation: tenant i → 00000000-0000-4000-8000-<i in hex>. */
export function tenantIdFor(index: number): string {
  return `00000000-0000-4000-8000-${index.toString(16).padStart(12, '0')}`;
}

// Random ids from a pooled buffer: one randomBytes call per 64 KiB instead of one per id.
let pool = Buffer.alloc(0);
let poolAt = 0;
function hex(bytes: number): string {
  if (poolAt + bytes > pool.length) {
    pool = randomBytes(65536);
    poolAt = 0;
  }
  poolAt += bytes;
  return pool.toString('hex', poolAt - bytes, poolAt);
}
const SERVICES = ['checkout', 'payments', 'search', 'catalog', 'auth'];
const OPERATIONS = ['GET /items', 'POST /orders', 'db.query', 'cache.get', 'rpc.call'];

export function generateSpan(tenantId: string, seq: number, nowMs = Date.now()): Span & { tenantId: string } {
  const start = BigInt(nowMs) * 1_000_000n + BigInt(seq % 1_000_000);
  const duration = BigInt(1 + (seq % 5000)) * 1000n;
  return {
    tenantId,
    traceId: hex(16),
    spanId: hex(8),
    parentSpanId: seq % 4 === 0 ? '' : hex(8),
    name: OPERATIONS[seq % OPERATIONS.length]!,
    kind: (seq % 5) + 1,
    startTimeUnixNano: start.toString(),
    endTimeUnixNano: (start + duration).toString(),
    attributes: { 'http.status_code': seq % 17 === 0 ? 500 : 200, 'spanledger.seq': seq },
    status: { code: seq % 17 === 0 ? 2 : 1 },
    resource: { attributes: { 'service.name': SERVICES[seq % SERVICES.length]! } },
  };
}

export function generateSignal(tenantId: string, seq: number, nowMs = Date.now()): Signal {
  return {
    id: randomUUID(),
    tenantId,
    ruleId: `rule-${seq % 7}`,
    traceId: hex(16),
    timestamp: new Date(nowMs).toISOString(),
    // Not seq % 4: with 4 tenants round-robin, each tenant would get a single severity.
    severity: SEVERITIES[Math.floor(seq / 3) % SEVERITIES.length]!,
    message: `rule-${seq % 7} matched`,
    metadata: { seq, service: SERVICES[seq % SERVICES.length] },
  };
}

/** Malformed records of every kind the decoders reject, for demos and tests. */
export function malformedRecords(tenantId: string, maxMessageBytes = 1_000_000): Array<{ kind: string; value: Buffer; headers?: Record<string, string> }> {
  const good = JSON.stringify(generateSpan(tenantId, 1));
  const span = JSON.parse(good) as Record<string, unknown>;
  return [
    { kind: 'InvalidJson', value: Buffer.from('{"traceId": "abc", oops') },
    { kind: 'SchemaViolation', value: Buffer.from(JSON.stringify({ ...span, traceId: 'not-hex' })) },
    { kind: 'InvalidTenantId', value: Buffer.from(JSON.stringify({ ...span, tenantId: '../../etc' })) },
    { kind: 'MissingTenantId', value: Buffer.from(JSON.stringify({ ...span, tenantId: undefined })) },
    // One byte over the limit, and no more, so that the broker still takes it.
    { kind: 'RecordTooLarge', value: oversized(span, maxMessageBytes + 1) },
  ];
}

/** A valid span padded (in an attribute) to exactly `bytes` bytes of JSON. */
function oversized(span: Record<string, unknown>, bytes: number): Buffer {
  const attributes = { ...(span.attributes as Record<string, unknown>), pad: '' };
  const base = JSON.stringify({ ...span, attributes }).length;
  attributes.pad = 'x'.repeat(Math.max(0, bytes - base));
  return Buffer.from(JSON.stringify({ ...span, attributes }));
}
