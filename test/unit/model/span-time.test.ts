import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SpanDecoder } from '../../../src/model/decode.js';
import { generateSpan, tenantIdFor } from '../../../src/model/generate.js';
import { endsBeforeStart, spanDay, SpanDays, unixNanoMillis } from '../../../src/model/span.js';

/** Schema-valid times: decimal strings of 1..20 digits (leading zeros allowed) or safe integers. */
const time = fc.oneof(
  fc.stringMatching(/^\d{1,20}$/),
  fc.bigInt({ min: 0n, max: 99_999_999_999_999_999_999n }).map(String),
  fc.bigInt({ min: 0n, max: 2_000_000_000_000_000_000n }).map((n) => n.toString().padStart(22, '0').slice(-20)),
  fc.maxSafeNat(),
);

describe('span times without BigInt', () => {
  it('SpanDays names the same day as spanDay, and refuses the same times', () => {
    const days = new SpanDays();
    fc.assert(
      fc.property(time, (t) => {
        expect(days.of(t)).toBe(spanDay({ startTimeUnixNano: t }));
        expect(SpanDays.tooLate(t)).toBe(spanDay({ startTimeUnixNano: t }) === undefined);
      }),
      { numRuns: 2000 },
    );
  });

  it('is exact at day boundaries (1 ns before and at midnight)', () => {
    const days = new SpanDays();
    expect(days.of('1764633599999999999')).toBe('2025-12-01');
    expect(days.of('1764633600000000000')).toBe('2025-12-02');
    expect(days.of(86_399_999_999_999)).toBe('1970-01-01');
    expect(days.of(86_400_000_000_000)).toBe('1970-01-02');
    expect(days.of('000086400000000000')).toBe('1970-01-02');
    expect(unixNanoMillis('999999')).toBe(0);
  });

  it('endsBeforeStart agrees with BigInt comparison', () => {
    fc.assert(
      fc.property(time, time, (a, b) => {
        expect(endsBeforeStart(a, b)).toBe(BigInt(b) < BigInt(a));
      }),
      { numRuns: 2000 },
    );
    expect(endsBeforeStart('0010', '9')).toBe(true);
    expect(endsBeforeStart('10', '0010')).toBe(false);
    expect(endsBeforeStart('0', '000')).toBe(false);
  });
});

describe('SpanDecoder withDay: false', () => {
  it('decodes the same spans without naming their day, and rejects the same records alike', () => {
    const tenant = tenantIdFor(3);
    const withDay = new SpanDecoder(1_000_000);
    const without = new SpanDecoder(1_000_000, { withDay: false });
    const good = Buffer.from(JSON.stringify(generateSpan(tenant, 1)));
    const a = withDay.decode({ value: good });
    const b = without.decode({ value: good });
    expect(a.ok && b.ok).toBe(true);
    if (!a.ok || !b.ok) return;
    expect(a.items[0]!.value.day).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(b.items[0]!.value.day).toBeUndefined();
    expect(b.items[0]!.value.span).toEqual(a.items[0]!.value.span);
    const backwards = Buffer.from(JSON.stringify({ ...generateSpan(tenant, 2), startTimeUnixNano: '20', endTimeUnixNano: '10' }));
    const ra = withDay.decode({ value: backwards });
    const rb = without.decode({ value: backwards });
    expect(!ra.ok && !rb.ok && [ra.error.errorClass, ra.error.message]).toEqual(!rb.ok && [rb.error.errorClass, rb.error.message]);
  });
});
