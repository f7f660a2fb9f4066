/**
 * Dev-only: traces with known rule violations, for the demo, the rule-worker tests and the bench.
 * Two rule files (tenant kinds A and B) and trace kinds that break some rules of one kind and
 * none of the other, so a signal from the wrong tenant's rules cannot go unnoticed.
 */
import { createHash } from 'node:crypto';
import { EXAMPLE_RULE_FILE } from '../rules/example-rule-file.js';
import type { StoredSpan } from '../model/span-line.js';

/** The `rules test --help` example (a conditional invariant and a count) plus a negated match. */
export const RULES_A = `${EXAMPLE_RULE_FILE}
  - id: admin-without-auth
    name: Admin request that bypassed auth
    severity: high
    condition: api.request.where(endpoint matches "^/api/v1/admin/") and not auth.check_admin
`;

export const RULES_B = `rules:
  - id: too-many-retries
    name: More than 3 retries
    severity: low
    condition: count(http.retry) > 3
  - id: server-errors
    name: Server errors on GET /items
    severity: high
    condition: '"GET /items".where(http.status_code >= 500)'
`;

export type RuleKind = 'A' | 'B';

/** What each trace kind does, and which rules fire for each tenant kind. */
export const TRACE_KINDS = {
  clean: { A: [], B: [] },
  'no-fraud-check': { A: ['high-value-payment-controls'], B: [] },
  retries: { A: ['too-many-retries'], B: ['too-many-retries'] },
  'admin-no-auth': { A: ['admin-without-auth'], B: [] },
  'server-error': { A: [], B: ['server-errors'] },
  mixed: { A: ['high-value-payment-controls', 'too-many-retries'], B: ['too-many-retries', 'server-errors'] },
} as const satisfies Record<string, Record<RuleKind, readonly string[]>>;

export type TraceKind = keyof typeof TRACE_KINDS;
const KINDS = Object.keys(TRACE_KINDS) as TraceKind[];

export interface CorpusTenant {
  tenantId: string;
  rules: RuleKind;
}

export interface CorpusSpan {
  span: StoredSpan;
  /** The Kafka record timestamp to produce it with (event time), ms. */
  timestamp: number;
}

export interface CorpusTrace {
  tenantId: string;
  traceId: string;
  kind: TraceKind;
  /** Rule ids that must fire on this trace, and only those. */
  expected: readonly string[];
  spans: CorpusSpan[];
}

export interface CorpusOptions {
  tenants: CorpusTenant[];
  traces: number;
  /** Extra spans per trace that no rule looks at. */
  fillerSpans: number;
  /** Event time of the first span. */
  startMs: number;
  /** Event time between the starts of two consecutive traces. */
  traceGapMs: number;
  /** Event time between two spans of one trace. */
  spanGapMs: number;
  /** Distinguishes corpora: trace ids derive from it. */
  seed: string;
}

function hexOf(...parts: Array<string | number>): string {
  return createHash('sha256').update(parts.join('/')).digest('hex');
}

function named(name: string, attributes: StoredSpan['attributes'] = {}): Pick<StoredSpan, 'name' | 'attributes'> {
  return { name, attributes };
}

/** The spans (names and attributes) a trace kind is made of, before filler. */
function shape(kind: TraceKind): Array<Pick<StoredSpan, 'name' | 'attributes'>> {
  const retries = Array.from({ length: 5 }, () => named('http.retry'));
  switch (kind) {
    case 'clean':
      return [named('GET /items', { 'http.status_code': 200 }), named('payment.charge_card', { amount: 2500 }), named('payment.fraud_check'), named('api.request', { endpoint: '/api/v1/admin/users' }), named('auth.check_admin')];
    case 'no-fraud-check':
      return [named('GET /items', { 'http.status_code': 200 }), named('payment.charge_card', { amount: 2500 })];
    case 'retries':
      return [named('GET /items', { 'http.status_code': 200 }), ...retries];
    case 'admin-no-auth':
      return [named('api.request', { endpoint: '/api/v1/admin/users' })];
    case 'server-error':
      return [named('GET /items', { 'http.status_code': 503 })];
    case 'mixed':
      return [named('GET /items', { 'http.status_code': 500 }), named('payment.charge_card', { amount: 5000 }), ...retries];
  }
}

/** One trace of a given kind, its spans `spanGapMs` apart in event time from `startMs`. */
export function corpusTrace(o: Pick<CorpusOptions, 'fillerSpans' | 'spanGapMs' | 'seed'>, tenant: CorpusTenant, index: number, kind: TraceKind, startMs: number): CorpusTrace {
  const traceId = hexOf(o.seed, tenant.tenantId, index).slice(0, 32);
  const parts = [...shape(kind), ...Array.from({ length: o.fillerSpans }, (_, i) => named('db.query', { 'db.row': i }))];
  const spans = parts.map((p, j): CorpusSpan => {
    const timestamp = Math.round(startMs + j * o.spanGapMs);
    const startNs = BigInt(timestamp) * 1_000_000n;
    return {
      timestamp,
      span: {
        tenantId: tenant.tenantId,
        traceId,
        spanId: hexOf(traceId, j).slice(0, 16),
        parentSpanId: j === 0 ? '' : hexOf(traceId, 0).slice(0, 16),
        name: p.name,
        kind: 1,
        startTimeUnixNano: startNs.toString(),
        endTimeUnixNano: (startNs + 1_000_000n).toString(),
        attributes: p.attributes,
        status: { code: 0 },
        resource: { attributes: { 'service.name': 'corpus' } },
      },
    };
  });
  return { tenantId: tenant.tenantId, traceId, kind, expected: TRACE_KINDS[kind][tenant.rules], spans };
}

/** `traces` traces, tenants and kinds taken in turn (so every tenant gets every kind). */
export function corpus(o: CorpusOptions): CorpusTrace[] {
  return Array.from({ length: o.traces }, (_, i) => {
    const tenant = o.tenants[i % o.tenants.length]!;
    const kind = KINDS[Math.floor(i / o.tenants.length) % KINDS.length]!;
    return corpusTrace(o, tenant, i, kind, o.startMs + i * o.traceGapMs);
  });
}

/** Every span of the traces in event-time order (ties: trace order), as a stream would carry them. */
export function spansInTimeOrder(traces: CorpusTrace[]): CorpusSpan[] {
  return traces
    .flatMap((t, i) => t.spans.map((s, j) => ({ s, i, j })))
    .sort((a, b) => a.s.timestamp - b.s.timestamp || a.i - b.i || a.j - b.j)
    .map((x) => x.s);
}

/** `${tenantId}/${traceId}/${ruleId}` for every signal the traces must produce. */
export function expectedSignals(traces: CorpusTrace[]): Set<string> {
  return new Set(traces.flatMap((t) => t.expected.map((rule) => `${t.tenantId}/${t.traceId}/${rule}`)));
}

/**
 * Produces spans as a tracing pipeline keyed by trace id would (all spans of a trace in one
 * partition), each with its event time as the record timestamp, `chunk` records a request.
 * `paced`: each request waits until the wall clock reaches its first span's event time (a steady
 * load, for spans whose event times lie ahead).
 */
/**
 * What produceCorpus needs of the Kafka facade (kafka/facade.ts, which devtools sits below): a
 * producer that lands records once, in order.
 */
export interface CorpusKafka {
  producer(options: { delivery: 'idempotent' }): {
    connect(): Promise<void>;
    send(topic: string, records: Array<{ key: string; value: string; timestamp: string }>): Promise<void>;
    disconnect(): Promise<void>;
  };
}

export async function produceCorpus(kafka: CorpusKafka, topic: string, spans: readonly CorpusSpan[], options: { chunk?: number; paced?: boolean; onProgress?: (sent: number) => void } = {}): Promise<void> {
  const chunk = options.chunk ?? 1000;
  const producer = kafka.producer({ delivery: 'idempotent' });
  await producer.connect();
  try {
    for (let i = 0; i < spans.length; i += chunk) {
      const due = spans[i]!.timestamp - Date.now();
      if (options.paced && due > 0) await new Promise((resolve) => setTimeout(resolve, due));
      await producer.send(
        topic,
        spans.slice(i, i + chunk).map(({ span, timestamp }) => ({ key: span.traceId, value: JSON.stringify(span), timestamp: String(timestamp) })),
      );
      options.onProgress?.(Math.min(spans.length, i + chunk));
    }
  } finally {
    await producer.disconnect();
  }
}
