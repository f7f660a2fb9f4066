import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { RecordRejectedError } from '../../../src/errors.js';
import { encodeOtlpRequest, generateOtlpRequest } from '../../../src/model/generate-otlp.js';
import { generateSpan } from '../../../src/model/generate.js';
import { decodeOtlpTraces, detectEncoding, type OtlpEncoding } from '../../../src/model/otlp.js';
import { ExportTraceServiceRequestType } from '../../../src/model/otlp-proto.js';
import { validateSpan, type Span } from '../../../src/model/span.js';

const SpanType = ExportTraceServiceRequestType.lookupType('opentelemetry.proto.trace.v1.Span');
const { Writer } = protobuf;
const TENANT = '00000000-0000-4000-8000-000000000007';
const TRACE_ID = '5b8efff798038103d269b633813fc60c';
const SPAN_ID = 'eee19b7ec3c1b174';

/** A protobuf request from a JSON-shaped object (bytes as Buffers), through protobufjs and the OTLP schema. */
function proto(request: object): Buffer {
  return Buffer.from(ExportTraceServiceRequestType.encode(ExportTraceServiceRequestType.fromObject(request)).finish());
}

function protoSpan(fields: Record<string, unknown> = {}) {
  return { traceId: Buffer.from(TRACE_ID, 'hex'), spanId: Buffer.from(SPAN_ID, 'hex'), name: 'op', startTimeUnixNano: '1764000000000000000', endTimeUnixNano: '1764000000000000001', ...fields };
}

function oneSpan(span: object, resource: object = { attributes: [] }) {
  return { resourceSpans: [{ resource, scopeSpans: [{ spans: [span] }] }] };
}

function jsonSpan(fields: Record<string, unknown> = {}) {
  return { traceId: TRACE_ID, spanId: SPAN_ID, name: 'op', startTimeUnixNano: '1764000000000000000', endTimeUnixNano: '1764000000000000001', ...fields };
}

const json = (request: unknown) => Buffer.from(JSON.stringify(request));

function rejection(value: Buffer, encoding: OtlpEncoding): string {
  try {
    decodeOtlpTraces(value, encoding);
  } catch (e) {
    expect(e).toBeInstanceOf(RecordRejectedError);
    expect((e as RecordRejectedError).errorClass).toBe('InvalidOtlp');
    return (e as Error).message;
  }
  throw new Error('expected the request to be rejected');
}

describe('detectEncoding', () => {
  it('tells spanledger JSON, OTLP/JSON and OTLP protobuf apart', () => {
    expect(detectEncoding(Buffer.from(JSON.stringify(generateSpan(TENANT, 1))))).toBe('json');
    expect(detectEncoding(generateOtlpRequest(TENANT, 10, 'otlp_json').value)).toBe('otlp_json');
    expect(detectEncoding(generateOtlpRequest(TENANT, 10, 'otlp_proto').value)).toBe('otlp_proto');
    expect(detectEncoding(Buffer.from(' \r\n\t{ "resourceSpans": []}'))).toBe('otlp_json');
    expect(detectEncoding(Buffer.from('{"traceId":"x","resourceSpans":[]}'))).toBe('json');
    // Neither JSON nor a protobuf request (which starts with 0x0A): the JSON decoder names the problem.
    expect(detectEncoding(Buffer.from('not json'))).toBe('json');
    expect(detectEncoding(Buffer.from([0xff, 0xfe, 0x00]))).toBe('json');
  });

  it('leaves empty and whitespace-only values to the JSON decoder, which names the problem', () => {
    expect(detectEncoding(Buffer.alloc(0))).toBe('json');
    expect(detectEncoding(Buffer.from(' \n'))).toBe('json');
  });

  it('leaves objects shorter than the "resourceSpans" key to the JSON decoder instead of throwing', () => {
    for (const short of ['{', '{}', '{"spanId":1}', '{ "resourceSpan', '\n{"a":1}']) expect(detectEncoding(Buffer.from(short)), short).toBe('json');
  });

  it('takes a protobuf request whose first resource is 123 bytes long (0x0A 0x7B, "\\n{") as protobuf', () => {
    let value: Buffer | undefined;
    for (let n = 1; n < 200 && value === undefined; n += 1) {
      const candidate = proto(oneSpan(protoSpan({ name: 'x'.repeat(n) })));
      if (candidate[1] === 0x7b) value = candidate;
    }
    expect(value![0]).toBe(0x0a);
    expect(detectEncoding(value!)).toBe('otlp_proto');
    expect(detectEncoding(Buffer.from('\n{"resourceSpans":[]}'))).toBe('otlp_json');
  });
});

describe('decodeOtlpTraces: attribute values', () => {
  const attributes = [
    { key: 'bytes', value: { bytesValue: Buffer.from([0, 1, 254, 255]) } },
    { key: 'big', value: { intValue: '9007199254740993' } },
    { key: 'small', value: { intValue: '-9223372036854775808' } },
    { key: 'safe', value: { intValue: '-9007199254740991' } },
    { key: 'nan', value: { doubleValue: Number.NaN } },
    { key: 'inf', value: { doubleValue: Number.NEGATIVE_INFINITY } },
    { key: 'empty', value: {} },
    { key: 'scalars', value: { arrayValue: { values: [{ stringValue: 'a' }, { intValue: 1 }, {}, { boolValue: true }] } } },
    { key: 'nested', value: { arrayValue: { values: [{ intValue: 1 }, { arrayValue: { values: [{ stringValue: 'b' }] } }] } } },
    { key: 'kv', value: { kvlistValue: { values: [{ key: 'k', value: { doubleValue: 0.5 } }, { key: '__proto__', value: { stringValue: 'p' } }] } } },
    { key: '__proto__', value: { stringValue: 'own property' } },
    { key: 'dup', value: { stringValue: 'first' } },
    { key: 'dup', value: { stringValue: 'last' } },
  ];
  // Built by JSON.parse, so that "__proto__" is an own property, as the decoders make it.
  const expected = Object.assign(JSON.parse('{"__proto__":"own property"}') as object, {
    bytes: 'AAH+/w==',
    big: '9007199254740993',
    small: '-9223372036854775808',
    safe: -9007199254740991,
    nan: 'NaN',
    inf: '-Infinity',
    empty: null,
    scalars: ['a', 1, null, true],
    nested: '[1,["b"]]',
    kv: '{"k":0.5,"__proto__":"p"}',
    dup: 'last',
  });

  it('maps every AnyValue kind from protobuf as documented', () => {
    const [span] = decodeOtlpTraces(proto(oneSpan(protoSpan({ attributes }))), 'otlp_proto');
    expect(span!.attributes).toEqual(expected);
    expect(Object.getOwnPropertyDescriptor(span!.attributes, '__proto__')?.value).toBe('own property');
    expect(Object.getPrototypeOf(span!.attributes)).toBe(Object.prototype);
    expect(validateSpan(span)).toBe(true);
  });

  it('maps the same values from OTLP/JSON, with 64-bit integers as strings or numbers', () => {
    const jsonAttributes = attributes.map((a) =>
      a.key === 'bytes' ? { key: 'bytes', value: { bytesValue: 'AAH+/w==' } } : a.key === 'nan' ? { key: 'nan', value: { doubleValue: 'NaN' } } : a.key === 'inf' ? { key: 'inf', value: { doubleValue: '-Infinity' } } : a,
    );
    const [span] = decodeOtlpTraces(json(oneSpan(jsonSpan({ attributes: jsonAttributes }))), 'otlp_json');
    expect(span!.attributes).toEqual(expected);
    expect(Object.getOwnPropertyDescriptor(span!.attributes, '__proto__')?.value).toBe('own property');
  });

  it('accepts URL-safe and unpadded base64 bytes in OTLP/JSON and stores standard base64', () => {
    const [span] = decodeOtlpTraces(json(oneSpan(jsonSpan({ attributes: [{ key: 'b', value: { bytesValue: 'AAH-_w' } }] }))), 'otlp_json');
    expect(span!.attributes).toEqual({ b: 'AAH+/w==' });
  });
});

describe('decodeOtlpTraces: OTLP/JSON specifics', () => {
  it('accepts upper-case hex ids, enum names, numbers for 64-bit integers, null as absent, and ignores unknown fields', () => {
    const value = json(
      oneSpan(
        jsonSpan({
          traceId: TRACE_ID.toUpperCase(),
          parentSpanId: null,
          kind: 'SPAN_KIND_PRODUCER',
          startTimeUnixNano: 1_000,
          endTimeUnixNano: '2000',
          status: { code: 'STATUS_CODE_ERROR', message: 'x' },
          droppedAttributesCount: 3,
          futureField: { anything: true },
        }),
      ),
    );
    const [span] = decodeOtlpTraces(value, 'otlp_json');
    expect(span).toMatchObject({ traceId: TRACE_ID, parentSpanId: '', kind: 4, startTimeUnixNano: '1000', endTimeUnixNano: '2000', status: { code: 2, message: 'x' } });
  });

  it('treats an all-zero parent span id as no parent, in both encodings', () => {
    expect(decodeOtlpTraces(json(oneSpan(jsonSpan({ parentSpanId: '0000000000000000' }))), 'otlp_json')[0]!.parentSpanId).toBe('');
    expect(decodeOtlpTraces(proto(oneSpan(protoSpan({ parentSpanId: Buffer.alloc(8) }))), 'otlp_proto')[0]!.parentSpanId).toBe('');
  });

  it('takes values nested as deep as protobuf allows and rejects deeper ones without overflowing the stack', () => {
    const nested = (levels: number) => {
      let value: object = { stringValue: 'leaf' };
      for (let depth = 0; depth < levels; depth += 1) value = depth % 2 ? { arrayValue: { values: [value] } } : { kvlistValue: { values: [{ key: 'k', value }] } };
      return json(oneSpan(jsonSpan({ attributes: [{ key: 'deep', value }] })));
    };
    expect(decodeOtlpTraces(nested(47), 'otlp_json')[0]!.attributes!.deep).toMatch(/^\{"k":\[\{"k":/);
    expect(rejection(nested(48), 'otlp_json')).toMatch(/^resourceSpans\[0\]\.scopeSpans\[0\]\.spans\[0\]\.attributes\["deep"\]\.arrayValue\.values\[0\]\.kvlistValue\["k"\]\..*: values nested more than 47 levels deep$/);
    // Written as text: JSON.stringify itself would overflow the stack here (JSON.parse does not).
    const levels = 100_000;
    const deep = `{"arrayValue":{"values":[`.repeat(levels) + '{"stringValue":"leaf"}' + ']}}'.repeat(levels);
    const text = JSON.stringify(oneSpan(jsonSpan({ attributes: [{ key: 'deep', value: 'DEEP' }] }))).replace('"DEEP"', deep);
    expect(rejection(Buffer.from(text), 'otlp_json')).toMatch(/values nested more than 47 levels deep$/);
  });

  it('gives [] for a request without spans', () => {
    expect(decodeOtlpTraces(json({ resourceSpans: [] }), 'otlp_json')).toEqual([]);
    expect(decodeOtlpTraces(json({}), 'otlp_json')).toEqual([]);
    expect(decodeOtlpTraces(Buffer.alloc(0), 'otlp_proto')).toEqual([]);
  });

  it.each([
    ['not JSON', Buffer.from('{"resourceSpans": ['), /^value is not JSON: /],
    ['not UTF-8', Buffer.from([0x7b, 0xff, 0x7d]), /not valid UTF-8/],
    ['an array', json([]), /^request: must be an object, got an array/],
    ['resourceSpans not an array', json({ resourceSpans: {} }), /^resourceSpans: must be an array, got an object/],
    ['a number trace id', json(oneSpan(jsonSpan({ traceId: 5 }))), /^resourceSpans\[0\]\.scopeSpans\[0\]\.spans\[0\]\.traceId: must be a string, got number 5/],
    ['a short span id', json(oneSpan(jsonSpan({ spanId: 'abc' }))), /spans\[0\]\.spanId: must be 16 hex characters, got "abc"/],
    ['base64 ids', json(oneSpan(jsonSpan({ traceId: Buffer.from(TRACE_ID, 'hex').toString('base64') }))), /traceId: must be 32 hex characters/],
    ['no span id', json(oneSpan(jsonSpan({ spanId: undefined }))), /spans\[0\]\.spanId: is missing/],
    ['snake_case ids only (unknown fields)', json(oneSpan({ trace_id: TRACE_ID, span_id: SPAN_ID, name: 'op' })), /spans\[0\]\.traceId: is missing/],
    ['an all-zero trace id', json(oneSpan(jsonSpan({ traceId: '0'.repeat(32) }))), /traceId: must not be all zeros/],
    ['an unknown kind name', json(oneSpan(jsonSpan({ kind: 'SPAN_KIND_BOGUS' }))), /kind: must be 0\.\.5 or SPAN_KIND_\*, got string "SPAN_KIND_BOGUS"/],
    ['a kind out of range', json(oneSpan(jsonSpan({ kind: 9 }))), /kind: must be 0\.\.5/],
    ['a start time with letters', json(oneSpan(jsonSpan({ startTimeUnixNano: '12x' }))), /startTimeUnixNano: must be an unsigned 64-bit integer, got string "12x"/],
    ['a negative end time', json(oneSpan(jsonSpan({ endTimeUnixNano: '-1' }))), /endTimeUnixNano: must be an unsigned 64-bit integer/],
    ['a time above 2^64', json(oneSpan(jsonSpan({ endTimeUnixNano: '18446744073709551616' }))), /endTimeUnixNano: must be an unsigned 64-bit integer/],
    ['a time number that lost precision', json(oneSpan(jsonSpan({ startTimeUnixNano: 1764000000000000000 }))), /startTimeUnixNano: must be an unsigned 64-bit integer \(a decimal string above 2\^53\)/],
    ['attributes not an array', json(oneSpan(jsonSpan({ attributes: { a: 1 } }))), /spans\[0\]\.attributes: must be an array, got an object/],
    ['a fractional intValue', json(oneSpan(jsonSpan({ attributes: [{ key: 'n', value: { intValue: '1.5' } }] }))), /spans\[0\]\.attributes\["n"\]\.intValue: must be a 64-bit integer/],
    ['a string boolValue', json(oneSpan(jsonSpan({ attributes: [{ key: 'b', value: { boolValue: 'true' } }] }))), /attributes\["b"\]\.boolValue: must be a boolean, got string "true"/],
    ['two values in one AnyValue', json(oneSpan(jsonSpan({ attributes: [{ key: 'x', value: { stringValue: 'a', intValue: 1 } }] }))), /attributes\["x"\]: has both stringValue and intValue/],
    ['a bad value deep in a kvlist', json(oneSpan(jsonSpan({ attributes: [{ key: 'kv', value: { kvlistValue: { values: [{ key: 'a', value: { arrayValue: { values: [{ doubleValue: 'x' }] } } }] } } }] }))), /attributes\["kv"\]\.kvlistValue\["a"\]\.arrayValue\.values\[0\]\.doubleValue: must be a number/],
    ['a bad resource attribute', json(oneSpan(jsonSpan(), { attributes: [{ key: 7 }] })), /^resourceSpans\[0\]\.resource\.attributes\[0\]\.key: must be a string, got number 7/],
    ['bad base64', json(oneSpan(jsonSpan({ attributes: [{ key: 'b', value: { bytesValue: 'a*b' } }] }))), /bytesValue: must be base64/],
    ['a link without span id', json(oneSpan(jsonSpan({ links: [{ traceId: TRACE_ID }] }))), /spans\[0\]\.links\[0\]\.spanId: is missing/],
    ['an event time as an object', json(oneSpan(jsonSpan({ events: [{ timeUnixNano: {}, name: 'e' }] }))), /spans\[0\]\.events\[0\]\.timeUnixNano: must be an unsigned 64-bit integer, got an object/],
    ['a status message number', json(oneSpan(jsonSpan({ status: { message: 1 } }))), /status\.message: must be a string/],
    ['a scope name number', json({ resourceSpans: [{ scopeSpans: [{ scope: { name: 1 }, spans: [] }] }] }), /^resourceSpans\[0\]\.scopeSpans\[0\]\.scope\.name: must be a string/],
  ])('rejects OTLP/JSON with %s, saying where and why', (_what, value, reason) => {
    expect(rejection(value, 'otlp_json')).toMatch(reason);
  });
});

describe('decodeOtlpTraces: malformed protobuf', () => {
  it('rejects bytes that are not protobuf', () => {
    expect(rejection(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), 'otlp_proto')).toMatch(/^value is not a protobuf ExportTraceServiceRequest: /);
    expect(rejection(Buffer.from('{"traceId":"abc"}'), 'otlp_proto')).toMatch(/^value is not a protobuf ExportTraceServiceRequest: /);
  });

  it('rejects every truncation of a request, except a cut between two resources (protobuf has no total length)', () => {
    const { value, spans } = generateOtlpRequest(TENANT, 20, 'otlp_proto', 0, 1_764_000_000_000);
    const request = ExportTraceServiceRequestType.decode(value) as unknown as { resourceSpans: unknown[] };
    expect(request.resourceSpans).toHaveLength(2);
    const firstResourceEnd = value.length - Buffer.from(ExportTraceServiceRequestType.encode({ resourceSpans: [request.resourceSpans[1]] }).finish()).length;
    let rejected = 0;
    for (let cut = 1; cut < value.length; cut += 1) {
      if (cut === firstResourceEnd) {
        expect(decodeOtlpTraces(value.subarray(0, cut), 'otlp_proto')).toEqual(spans.filter((s) => s.resource!.attributes['service.name'] === spans[0]!.resource!.attributes['service.name']));
        continue;
      }
      expect(rejection(value.subarray(0, cut), 'otlp_proto')).toMatch(/^value is not a protobuf ExportTraceServiceRequest: |spans\[\d+\]\.(traceId|spanId|parentSpanId)/);
      rejected += 1;
    }
    expect(rejected).toBe(value.length - 2);
  });

  it('rejects invalid UTF-8 in a string field', () => {
    const value = proto(oneSpan(protoSpan({ name: 'opé' })));
    const at = value.indexOf(Buffer.from('opé'));
    value[at + 2] = 0xff;
    expect(rejection(value, 'otlp_proto')).toMatch(/^value is not a protobuf ExportTraceServiceRequest: .*utf-8/i);
  });

  it('rejects values nested deeper than protobuf allows (100)', () => {
    // Written field by field: protobufjs will not encode what it would not decode.
    const field = (n: number, bytes: Uint8Array) => Writer.create().uint32((n << 3) | 2).bytes(bytes).finish();
    let anyValue = field(1, Buffer.from('leaf'));
    for (let depth = 0; depth < 120; depth += 1) anyValue = field(5, field(1, anyValue));
    const keyValue = Buffer.concat([field(1, Buffer.from('deep')), field(2, anyValue)]);
    const span = Buffer.concat([Buffer.from(SpanType.encode(protoSpan()).finish()), field(9, keyValue)]);
    const value = Buffer.from(field(1, field(2, field(2, span))));
    expect(rejection(value, 'otlp_proto')).toMatch(/^value is not a protobuf ExportTraceServiceRequest: max depth exceeded/);
  });

  it.each([
    ['no trace id', { traceId: Buffer.alloc(0) }, /^resourceSpans\[0\]\.scopeSpans\[0\]\.spans\[0\]\.traceId: is missing$/],
    ['no span id', { spanId: undefined }, /spans\[0\]\.spanId: is missing$/],
    ['a 4-byte span id', { spanId: Buffer.from('abcdef01', 'hex') }, /spans\[0\]\.spanId: must be 8 bytes, got 4$/],
    ['an all-zero trace id', { traceId: Buffer.alloc(16) }, /traceId: must not be all zeros$/],
    ['a 3-byte parent id', { parentSpanId: Buffer.from([1, 2, 3]) }, /parentSpanId: must be 8 bytes, got 3$/],
    ['a link with a short trace id', { links: [{ traceId: Buffer.from([1]), spanId: Buffer.from(SPAN_ID, 'hex') }] }, /spans\[0\]\.links\[0\]\.traceId: must be 16 bytes, got 1$/],
  ])('rejects a span with %s, saying where', (_what, fields, reason) => {
    expect(rejection(proto(oneSpan(protoSpan(fields))), 'otlp_proto')).toMatch(reason);
  });

  it('treats a field sent with the wrong wire type as unknown (protobuf rules), so a required id is then missing', () => {
    // Field 1 (trace_id, length-delimited) sent as a varint.
    const good = proto(oneSpan(protoSpan({ traceId: undefined })));
    const span = Buffer.concat([Buffer.from([0x08, 0x01]), Buffer.from(SpanType.encode(protoSpan({ traceId: undefined })).finish())]);
    const scopeSpans = Buffer.concat([Buffer.from([0x12, span.length]), span]);
    const resourceSpans = Buffer.concat([Buffer.from([0x12, scopeSpans.length]), scopeSpans]);
    const value = Buffer.concat([Buffer.from([0x0a, resourceSpans.length]), resourceSpans]);
    expect(rejection(good, 'otlp_proto')).toMatch(/traceId: is missing/);
    expect(rejection(value, 'otlp_proto')).toMatch(/^resourceSpans\[0\]\.scopeSpans\[0\]\.spans\[0\]\.traceId: is missing$/);
  });
});

describe('generateOtlpRequest', () => {
  it.each(['otlp_proto', 'otlp_json'] as const)('%s: says exactly which spans the request holds, all of one tenant, with parents inside their trace', (encoding) => {
    const generated = generateOtlpRequest(TENANT, 100, encoding, 1000, 1_764_000_000_000);
    const decoded = decodeOtlpTraces(generated.value, encoding);
    expect(decoded).toEqual(generated.spans);
    expect(generated.key).toBe(TENANT);
    expect(new Set(decoded.map((s) => s.spanId)).size).toBe(100);
    expect(new Set(decoded.map((s) => s.traceId)).size).toBe(13);
    const byId = new Map(decoded.map((s) => [s.spanId, s]));
    for (const span of decoded) {
      expect(validateSpan(span), JSON.stringify(validateSpan.errors)).toBe(true);
      expect(span.resource!.attributes['tenant.id']).toBe(TENANT);
      expect(span.resource!.attributes['service.name']).toEqual(expect.any(String));
      if (span.parentSpanId !== '') expect(byId.get(span.parentSpanId!)!.traceId).toBe(span.traceId);
    }
    expect(new Set(decoded.map((s) => s.resource!.attributes['service.name'])).size).toBe(2);
    expect(decoded.map((s) => s.attributes!['spanledger.seq']).sort((a, b) => Number(a) - Number(b))).toEqual(Array.from({ length: 100 }, (_, i) => 1000 + i));
  });

  it('encodes spans with names, events, links and trace states both ways alike', () => {
    const span: Span = {
      traceId: TRACE_ID,
      spanId: SPAN_ID,
      parentSpanId: '',
      name: 'op',
      kind: 3,
      startTimeUnixNano: '1764000000000000000',
      endTimeUnixNano: '1764000000000000002',
      attributes: { s: 'x', n: 1, d: 1.5, b: false, a: ['p', 'q'], z: null },
      status: { code: 2, message: 'bad' },
      resource: { attributes: { 'tenant.id': TENANT } },
      scope: { name: 'lib', version: '2', attributes: { 'lib.attr': 1 } },
      traceState: 'k=v',
      events: [{ timeUnixNano: '1764000000000000001', name: 'e', attributes: { x: 1 } }],
      links: [{ traceId: TRACE_ID, spanId: 'aaaaaaaaaaaaaaaa', traceState: 'l=1', attributes: { y: true } }],
    };
    const request = [{ resource: span.resource!.attributes, scopeSpans: [{ scope: span.scope!, spans: [span] }] }];
    expect(decodeOtlpTraces(encodeOtlpRequest(request, 'otlp_proto'), 'otlp_proto')).toEqual([span]);
    expect(decodeOtlpTraces(encodeOtlpRequest(request, 'otlp_json'), 'otlp_json')).toEqual([span]);
  });
});
