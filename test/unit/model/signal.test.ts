import { DuckDBInstance } from '@duckdb/node-api';
import { describe, expect, it } from 'vitest';
import { SignalDecoder } from '../../../src/model/decode.js';
import { generateSignal, tenantIdFor } from '../../../src/model/generate.js';
import { parseSignalTime, signalTime, SIGNAL_METADATA_MAX_DEPTH, SIGNAL_TIME_MAX_MS } from '../../../src/model/signal.js';
import { signalTimeMs } from '../../../src/sinks/tigerbeetle/derivation.js';

const tenant = tenantIdFor(3);
const decoder = new SignalDecoder(1_048_576);
const encode = (v: unknown) => Buffer.from(JSON.stringify(v));

function rejection(overrides: Record<string, unknown>): { errorClass: string; message: string } | undefined {
  const d = decoder.decode({ value: encode({ ...generateSignal(tenant, 1), ...overrides }) });
  return d.ok ? undefined : { errorClass: d.error.errorClass, message: d.error.message };
}

describe('SignalDecoder refuses what either store would refuse', () => {
  it.each([
    ['2026-02-30T00:00:00Z', /day 30/], // V8's Date.parse rolls it over to March 2; DuckDB refuses it
    ['2026-04-31T00:00:00Z', /day 31/],
    ['2025-02-29T00:00:00Z', /day 29/], // not a leap year
    ['2100-02-29T00:00:00Z', /day 29/], // divisible by 100, not by 400
    ['2026-13-01T00:00:00Z', /month 13/],
    ['2026-00-10T00:00:00Z', /month 00/],
    ['2026-11-00T00:00:00Z', /day 00/],
    ['2026-11-24T24:00:00Z', /time of day/], // V8 and DuckDB both read it as the next day; not RFC 3339
    ['2026-11-24T23:59:60Z', /time of day/], // leap second: V8 and DuckDB refuse
    ['2026-11-24T23:60:00Z', /time of day/],
    ['2026-11-24T10:00:00+24:00', /offset/], // DuckDB takes it (a day back), V8 refuses
    ['2026-11-24T10:00:00+23:60', /offset/], // DuckDB reads +24:00
    ['1969-12-31T23:59:59.999Z', /before 1970/], // TigerBeetle's user_data_64 is unsigned
    ['1969-12-31T23:59:59.9999Z', /before 1970/],
    ['1970-01-01T00:30:00+01:00', /before 1970/],
    ['0000-01-01T00:00:00Z', /before 1970/], // DuckDB stores it (1 BC)
    ['9999-12-31T23:59:59-00:01', /after 9999/],
  ])('timestamp %s → InvalidTimestamp', (timestamp, reason) => {
    const r = rejection({ timestamp });
    expect(r?.errorClass).toBe('InvalidTimestamp');
    expect(r?.message).toMatch(reason);
    expect(r?.message).toContain(timestamp);
  });

  it('keeps a malformed timestamp a SchemaViolation', () => {
    expect(rejection({ timestamp: '2026-11-24 10:00:00Z' })?.errorClass).toBe('SchemaViolation');
    expect(rejection({ timestamp: '2026-11-24T10:00:00' })?.errorClass).toBe('SchemaViolation');
  });

  it.each(['00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff'])('signal id %s → InvalidSignalId', (id) => {
    const r = rejection({ id });
    expect(r?.errorClass).toBe('InvalidSignalId');
    expect(r?.message).toContain(id);
  });

  it('refuses lone UTF-16 surrogates (DuckDB refuses them in JSON and replaces them in VARCHAR)', () => {
    expect(rejection({ ruleId: 'rule-\ud800' })?.message).toMatch(/^ruleId: .*surrogate/);
    expect(rejection({ message: 'x\udc00y' })?.message).toMatch(/^message: .*surrogate/);
    expect(rejection({ metadata: { a: [1, { b: '\ud83d' }] } })?.message).toBe('metadata.a[1].b: contains a lone UTF-16 surrogate (not valid Unicode)');
    expect(rejection({ metadata: { '\ud800': 1 } })?.message).toMatch(/^metadata: a key contains a lone UTF-16 surrogate/);
    for (const r of [rejection({ ruleId: 'r\ud800' }), rejection({ metadata: { k: '\ud800' } })]) expect(r?.errorClass).toBe('SchemaViolation');
    // A proper pair (an emoji) is fine.
    expect(rejection({ message: 'ok \ud83d\ude00', metadata: { e: '\ud83d\ude00' } })).toBeUndefined();
  });

  it('refuses metadata nested deeper than the limit (re-serializing it would overflow the stack)', () => {
    const nest = (levels: number): Record<string, unknown> => {
      let value: Record<string, unknown> = {};
      for (let i = 1; i < levels; i++) value = { n: value };
      return value;
    };
    expect(rejection({ metadata: nest(SIGNAL_METADATA_MAX_DEPTH) })).toBeUndefined();
    const deep = rejection({ metadata: nest(SIGNAL_METADATA_MAX_DEPTH + 1) });
    expect(deep?.errorClass).toBe('SchemaViolation');
    expect(deep?.message).toMatch(/nested deeper than 64 levels/);
    // 100,000 levels: JSON.parse copes, JSON.stringify would not; the check must not recurse that far.
    const raw = Buffer.from(JSON.stringify({ ...generateSignal(tenant, 2), metadata: {} }).replace('"metadata":{}', `"metadata":${'{"n":'.repeat(100_000)}1${'}'.repeat(100_000)}`));
    const d = decoder.decode({ value: raw });
    expect(!d.ok && d.error.message).toMatch(/nested deeper/);
  });

  it('accepts the edges both stores hold', () => {
    for (const timestamp of ['1970-01-01T00:00:00Z', '1970-01-01T01:00:00+01:00', '2024-02-29T23:59:59.999999999Z', '9999-12-31T23:59:59.999Z', '9999-12-31T23:59:59+00:00']) {
      expect(rejection({ timestamp })).toBeUndefined();
    }
  });
});

describe('parseSignalTime reads the instant DuckDB and TigerBeetle store', () => {
  it('agrees with DuckDB\'s TIMESTAMPTZ cast, to the millisecond, on every accepted time', async () => {
    const accepted = [
      '1970-01-01T00:00:00Z', '1970-01-01T00:00:00.000999Z', '1970-01-01T05:30:00+05:30', '1969-12-31T20:00:00-04:00',
      '2024-02-29T12:34:56.789123456Z', '2026-11-24T10:00:00.5-23:59', '2026-11-24T10:00:00.123+14:00',
      '2000-02-29T00:00:00Z', '9999-12-31T23:59:59.999999Z', '9999-12-31T23:59:59-00:00', '2026-03-29T01:30:00+01:00',
    ];
    const instance = await DuckDBInstance.create(':memory:');
    const conn = await instance.connect();
    try {
      await conn.run(`SET TimeZone = 'UTC'`);
      for (const timestamp of accepted) {
        const time = parseSignalTime(timestamp);
        expect(time, timestamp).toMatchObject({ ok: true });
        const rows = (await conn.runAndReadAll('SELECT epoch_ms(?::TIMESTAMPTZ)', [timestamp])).getRowsJS();
        expect(BigInt(rows[0]![0] as bigint), timestamp).toBe(BigInt(time.ok ? time.epochMs : -1));
        expect(signalTimeMs(timestamp), timestamp).toBe(BigInt(time.ok ? time.epochMs : -1));
        expect(time.ok && time.epochMs <= SIGNAL_TIME_MAX_MS).toBe(true);
      }
    } finally {
      conn.disconnectSync();
      instance.closeSync();
    }
  });

  it('gives the TigerBeetle sink nothing for a time the decoder refuses', () => {
    for (const timestamp of ['2026-02-30T00:00:00Z', '1969-12-31T23:59:59Z', '2026-11-24T24:00:00Z']) {
      expect(signalTimeMs(timestamp)).toBeNull();
    }
  });
});

describe('signalTime', () => {
  it('parses a signal\'s timestamp once per signal object, and again when the timestamp changes', () => {
    const signal = { id: 'x', tenantId: 't', ruleId: 'r', traceId: 'tr', timestamp: '2026-11-24T10:00:00.123+01:00', severity: 'LOW' as const, message: 'm', metadata: {} };
    const first = signalTime(signal);
    expect(first).toEqual(parseSignalTime(signal.timestamp));
    expect(first).toEqual({ ok: true, epochMs: Date.UTC(2026, 10, 24, 9, 0, 0, 123) });
    expect(signalTime(signal)).toBe(first); // the cached result, not a new parse
    signal.timestamp = '2026-02-30T00:00:00Z';
    expect(signalTime(signal).ok).toBe(false);
  });
});
