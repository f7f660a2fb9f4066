// The rule load both rule benchmarks use: span names and rules shaped like the BeTrace examples
// over them (conditional invariants, counts, where chains, regex matches).
export const NAMES = Array.from({ length: 40 }, (_, i) => `svc${i % 8}.op${i}`);

export function ruleText(i) {
  const a = NAMES[i % NAMES.length];
  const b = NAMES[(i * 7 + 3) % NAMES.length];
  const c = NAMES[(i * 13 + 5) % NAMES.length];
  switch (i % 5) {
    case 0: return `when { ${a}.where(amount > ${100 * (i % 10)}) } always { ${b} } never { ${c}.where(bypass == true) }`;
    case 1: return `count(${a}) > 3 and not ${b}`;
    case 2: return `${a}.where(currency in [USD, EUR]).where(region == eu) and ${b}`;
    case 3: return `count(${a}) != count(${b})`;
    default: return `${a}.where(endpoint matches "^/api/v1/admin/") and not (${b} or ${c})`;
  }
}

/** n rules as a rule set takes them. */
export const rulesOf = (n) => Array.from({ length: n }, (_, i) => ({ id: `r${i}`, name: `rule ${i}`, severity: 'HIGH', condition: ruleText(i), enabled: true }));

/** `count` spans over NAMES with the attributes the rules test. */
export const spansOf = (count) =>
  Array.from({ length: count }, (_, i) => ({
    name: NAMES[(i * 31) % NAMES.length],
    spanId: (i + 1).toString(16).padStart(16, '0'),
    attributes: { amount: i % 2000, currency: i % 3 ? 'USD' : 'JPY', region: i % 2 ? 'eu' : 'us', endpoint: i % 10 ? '/api/v1/items' : '/api/v1/admin/x', bypass: i % 97 === 0 },
    resource: { attributes: { 'service.name': `svc${i % 8}` } },
  }));
