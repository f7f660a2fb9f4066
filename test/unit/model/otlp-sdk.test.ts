import { createTraceState, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags, type Attributes } from '@opentelemetry/api';
import { JsonTraceSerializer, ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { describe, expect, it } from 'vitest';
import { decodeOtlpTraces, detectEncoding } from '../../../src/model/otlp.js';
import { storedSpan } from '../../../src/model/span-line.js';
import { validateSpan, type AttributeValue, type Span } from '../../../src/model/span.js';

const TENANT_A = '00000000-0000-4000-8000-00000000000a';
const TENANT_B = '00000000-0000-4000-8000-00000000000b';
const SECOND = 1_764_000_000;
const REMOTE_TRACE_ID = '0af7651916cd43dd8448eb211c80319c';
const REMOTE_SPAN_ID = 'b7ad6b7169203331';

/** Attributes of every type the SDK API allows. */
const EVERY_TYPE: Attributes = {
  'str': 'text ü',
  'int': 42,
  'negative': -7,
  'double': 2.5,
  'bool.true': true,
  'bool.false': false,
  'strs': ['a', 'b'],
  'ints': [1, 2, 3],
  'doubles': [0.5, 1.5],
  'bools': [true, false],
  'empty.string': '',
};

/** Real SDK spans: two resources (two tenants), two scopes, parents, a remote parent with tracestate, events, links, statuses. */
function sdkSpans(): ReadableSpan[] {
  const exporter = new InMemorySpanExporter();
  const providerFor = (tenant: string, service: string) =>
    new BasicTracerProvider({
      resource: resourceFromAttributes({ 'service.name': service, 'tenant.id': tenant, 'deployment.count': 3 }),
      spanProcessors: [new SimpleSpanProcessor(exporter)],
    });
  const a = providerFor(TENANT_A, 'checkout');
  const b = providerFor(TENANT_B, 'payments');
  const http = a.getTracer('http-instrumentation', '1.2.3');
  const db = a.getTracer('db-instrumentation');
  const payments = b.getTracer('payments-scope', '0.1.0');

  const root = http.startSpan('GET /cart', { kind: SpanKind.SERVER, attributes: EVERY_TYPE, startTime: [SECOND, 100] });
  const child = db.startSpan('SELECT cart', { kind: SpanKind.CLIENT, attributes: { 'db.rows': 12 }, startTime: [SECOND, 200] }, trace.setSpan(ROOT_CONTEXT, root));
  child.addEvent('rows.read', { count: 12, partial: false }, [SECOND, 250]);
  child.addEvent('no.attributes', undefined, [SECOND, 260]);
  child.setStatus({ code: SpanStatusCode.ERROR, message: 'deadlock' });
  child.end([SECOND, 300]);
  const grandchild = http.startSpan('render', { startTime: [SECOND, 310], links: [{ context: child.spanContext(), attributes: { reason: 'retry' } }] }, trace.setSpan(ROOT_CONTEXT, child));
  grandchild.end([SECOND + 1, 0]);
  root.setStatus({ code: SpanStatusCode.OK });
  root.end([SECOND + 2, 999_999_999]);

  const remote = trace.setSpanContext(ROOT_CONTEXT, {
    traceId: REMOTE_TRACE_ID,
    spanId: REMOTE_SPAN_ID,
    traceFlags: TraceFlags.SAMPLED,
    isRemote: true,
    traceState: createTraceState('vendor=opaque,other=1'),
  });
  const consumer = payments.startSpan('charge', { kind: SpanKind.CONSUMER, startTime: [SECOND, 0] }, remote);
  consumer.end([SECOND, 5]);
  const producer = payments.startSpan('emit', { kind: SpanKind.PRODUCER, startTime: [SECOND, 6], links: [{ context: consumer.spanContext() }] }, trace.setSpan(ROOT_CONTEXT, consumer));
  producer.end([SECOND, 7]);
  return exporter.getFinishedSpans();
}

const nanos = ([s, ns]: [number, number]) => (BigInt(s) * 1_000_000_000n + BigInt(ns)).toString();

/** What the documented mapping (src/model/otlp-values.ts) makes of an SDK span. */
function expected(s: ReadableSpan): Span {
  const context = s.spanContext();
  const span: Span = {
    traceId: context.traceId,
    spanId: context.spanId,
    parentSpanId: s.parentSpanContext?.spanId ?? '',
    name: s.name,
    kind: s.kind + 1,
    startTimeUnixNano: nanos(s.startTime),
    endTimeUnixNano: nanos(s.endTime),
    attributes: s.attributes as Record<string, AttributeValue>,
    status: s.status.message ? { code: s.status.code, message: s.status.message } : { code: s.status.code },
    resource: { attributes: s.resource.attributes as Record<string, AttributeValue> },
    scope: s.instrumentationScope.version ? { name: s.instrumentationScope.name, version: s.instrumentationScope.version } : { name: s.instrumentationScope.name },
  };
  const traceState = context.traceState?.serialize();
  if (traceState) span.traceState = traceState;
  if (s.events.length > 0) {
    span.events = s.events.map((e) => ({ timeUnixNano: nanos(e.time), name: e.name, ...(e.attributes && Object.keys(e.attributes).length > 0 ? { attributes: e.attributes as Record<string, AttributeValue> } : {}) }));
  }
  if (s.links.length > 0) {
    span.links = s.links.map((l) => ({
      traceId: l.context.traceId,
      spanId: l.context.spanId,
      ...(l.context.traceState ? { traceState: l.context.traceState.serialize() } : {}),
      ...(l.attributes && Object.keys(l.attributes).length > 0 ? { attributes: l.attributes as Record<string, AttributeValue> } : {}) }));
  }
  return span;
}

/** The SDK serializers group spans by resource, then by scope, each in first-seen order. */
function inRequestOrder(spans: ReadableSpan[]): ReadableSpan[] {
  const byResource = new Map<unknown, Map<string, ReadableSpan[]>>();
  for (const s of spans) {
    const scopes = byResource.get(s.resource) ?? new Map<string, ReadableSpan[]>();
    byResource.set(s.resource, scopes);
    const key = `${s.instrumentationScope.name}@${s.instrumentationScope.version ?? ''}`;
    scopes.set(key, [...(scopes.get(key) ?? []), s]);
  }
  return [...byResource.values()].flatMap((scopes) => [...scopes.values()].flat());
}

describe.each([
  ['otlp_proto', ProtobufTraceSerializer],
  ['otlp_json', JsonTraceSerializer],
] as const)('decodeOtlpTraces(%s) of the OpenTelemetry JS SDK serializer', (encoding, serializer) => {
  const spans = sdkSpans();
  const value = Buffer.from(serializer.serializeRequest(spans)!);

  it('maps every span, in request order, as documented', () => {
    const decoded = decodeOtlpTraces(value, encoding);
    expect(decoded).toHaveLength(5);
    expect(decoded).toEqual(inRequestOrder(spans).map(expected));
  });

  it('keeps the fields a reader checks by hand: parents, kinds, times, tenants, tracestate, events, links', () => {
    const decoded = decodeOtlpTraces(value, encoding);
    const byName = new Map(decoded.map((s) => [s.name, s]));
    const root = byName.get('GET /cart')!;
    expect(root.parentSpanId).toBe('');
    expect(root.kind).toBe(2);
    expect(root.startTimeUnixNano).toBe('1764000000000000100');
    expect(root.endTimeUnixNano).toBe('1764000002999999999');
    expect(root.attributes).toEqual({ str: 'text ü', int: 42, negative: -7, double: 2.5, 'bool.true': true, 'bool.false': false, strs: ['a', 'b'], ints: [1, 2, 3], doubles: [0.5, 1.5], bools: [true, false], 'empty.string': '' });
    expect(root.status).toEqual({ code: 1 });
    expect(root.scope).toEqual({ name: 'http-instrumentation', version: '1.2.3' });
    const child = byName.get('SELECT cart')!;
    expect(child.parentSpanId).toBe(root.spanId);
    expect(child.traceId).toBe(root.traceId);
    expect(child.scope).toEqual({ name: 'db-instrumentation' });
    expect(child.status).toEqual({ code: 2, message: 'deadlock' });
    expect(child.events).toEqual([
      { timeUnixNano: '1764000000000000250', name: 'rows.read', attributes: { count: 12, partial: false } },
      { timeUnixNano: '1764000000000000260', name: 'no.attributes' },
    ]);
    expect(byName.get('render')!.links).toEqual([{ traceId: root.traceId, spanId: child.spanId, attributes: { reason: 'retry' } }]);
    const charge = byName.get('charge')!;
    expect(charge).toMatchObject({ traceId: REMOTE_TRACE_ID, parentSpanId: REMOTE_SPAN_ID, kind: 5, traceState: 'vendor=opaque,other=1' });
    expect(charge.resource!.attributes).toEqual({ 'service.name': 'payments', 'tenant.id': TENANT_B, 'deployment.count': 3 });
    expect(byName.get('emit')!.kind).toBe(4);
    expect(root.resource!.attributes['tenant.id']).toBe(TENANT_A);
  });

  it("gives spans that spanledger's span schema accepts, already in the span log's canonical shape", () => {
    for (const span of decodeOtlpTraces(value, encoding)) {
      expect(validateSpan(span), JSON.stringify(validateSpan.errors)).toBe(true);
      expect(storedSpan(span, TENANT_A)).toEqual({ tenantId: TENANT_A, ...span });
    }
  });

  it('is detected as ' + encoding, () => {
    expect(detectEncoding(value)).toBe(encoding);
  });
});
