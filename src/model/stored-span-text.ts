/**
 * The span worker's fast path for JSON spans that already are their stored line: when a record's
 * text is, character for character, the JSON the span log would write for it
 * (`JSON.stringify(storedSpan(JSON.parse(text)))`, span-line.ts) and the hand-written quick check
 * would accept the parsed span, the text is the line. One pass over the text then replaces
 * `JSON.parse`, the schema check, `storedSpan` and `JSON.stringify` (together ~40 % of a span
 * worker's CPU per span: bench/README, eighth session). `spanledger produce` writes spans in this
 * form, as does any producer that serializes the stored shape with a JSON library's defaults.
 * A record that is that JSON but for its tenantId field, which it leaves to its `tenant-id`
 * header, is taken too: its line is the tenant field, then the record's fields.
 *
 * It answers undefined ("ask the full path") for anything it is not sure of: whitespace, another
 * key order, a missing optional field the stored line has (attributes, status, resource,
 * parentSpanId), enum names, numeric times, escapes JSON.stringify would not write, numbers that
 * are not small integers, integer-like or repeated attribute names, events, links. The decoder
 * then parses and checks the record as before, so records are accepted and rejected exactly as
 * without it, with the same reasons. test/unit/model/stored-span-text.test.ts checks, on generated
 * and mutated records, that both paths give the same answers and the same lines.
 */

/** What the decoder still needs of a span whose text is its stored line. */
export interface StoredSpanFields {
  /**
   * The line's tenant, or undefined for a record that is its stored line but for its tenant,
   * which it leaves to its `tenant-id` header (as `spanledger produce` writes every fifth span,
   * and producers that route by header do): the line is then `{"tenantId":"<tenant>",` and the
   * record's text after its `{`.
   */
  tenantId: string | undefined;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
}

// Sticky patterns (matched at lastIndex only) for the fixed parts of a stored line.
const HEAD = /\{"tenantId":"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}","traceId":"[0-9a-f]{32}","spanId":"[0-9a-f]{16}","parentSpanId":/y;
/** Where the tenant's text starts, and the opening quotes of traceId and spanId, in HEAD. */
const TENANT_AT = '{"tenantId":"'.length;
const TRACE_AT = TENANT_AT + 36 + '","traceId":'.length;
const SPAN_AT = TRACE_AT + 34 + ',"spanId":'.length;
/** HEAD without the tenant field (the tenant in the record's header), and that field's length. */
const HEAD_WITHOUT_TENANT = /\{"traceId":"[0-9a-f]{32}","spanId":"[0-9a-f]{16}","parentSpanId":/y;
const TENANT_FIELD = '"tenantId":"'.length + 36 + '",'.length;
/**
 * HEAD and HEAD_WITHOUT_TENANT as pieces to check on the record's bytes instead: text, or a
 * number of lower-case hex digits. The head is ASCII, so it stands at the same places in the
 * bytes and in their text; a byte loop took ~0.13 µs per span here against ~0.47 for the regular
 * expression on the text (bench/README, ninth session).
 */
type HeadPiece = Uint8Array | number;
const headPieces = (...pieces: Array<string | number>): HeadPiece[] => pieces.map((p) => (typeof p === 'number' ? p : Buffer.from(p)));
const HEAD_BYTES = headPieces('{"tenantId":"', 8, '-', 4, '-', 4, '-', 4, '-', 12, '","traceId":"', 32, '","spanId":"', 16, '","parentSpanId":');
const HEAD_WITHOUT_TENANT_BYTES = headPieces('{"traceId":"', 32, '","spanId":"', 16, '","parentSpanId":');
const HEX_BYTE = new Uint8Array(256);
for (const c of '0123456789abcdef') HEX_BYTE[c.charCodeAt(0)] = 1;

/** Where the head `pieces` ends in `bytes`, or -1 when they do not start with it. */
function headOfBytes(bytes: Uint8Array, pieces: readonly HeadPiece[]): number {
  let at = 0;
  for (const piece of pieces) {
    if (typeof piece === 'number') {
      if (at + piece > bytes.length) return -1;
      let hex = 1;
      for (const end = at + piece; at < end; at += 1) hex &= HEX_BYTE[bytes[at]!]!;
      if (hex === 0) return -1;
    } else {
      if (at + piece.length > bytes.length) return -1;
      for (let k = 0; k < piece.length; k += 1, at += 1) if (bytes[at] !== piece[k]) return -1;
    }
  }
  return at;
}

/** Where HEAD (`withTenant`) or HEAD_WITHOUT_TENANT ends in the record, or -1: on its bytes when given. */
function headEnd(text: string, bytes: Uint8Array | undefined, withTenant: boolean): number {
  if (bytes !== undefined) return headOfBytes(bytes, withTenant ? HEAD_BYTES : HEAD_WITHOUT_TENANT_BYTES);
  const head = withTenant ? HEAD : HEAD_WITHOUT_TENANT;
  head.lastIndex = 0;
  return head.test(text) ? head.lastIndex : -1;
}

const ZEROS32 = '0'.repeat(32);
const ZEROS16 = '0'.repeat(16);
const KIND_KEY = ',"kind":';
const START_KEY = ',"startTimeUnixNano":';
const END_KEY = ',"endTimeUnixNano":';
const TIMES = /,"kind":[0-5],"startTimeUnixNano":"[0-9]{1,20}","endTimeUnixNano":"[0-9]{1,20}","attributes":/y;
/** A run of characters a JSON string holds as they are (sticky: from lastIndex). */
const PLAIN = /[^"\\\u0000-\u001f]*/y;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;

/** Scanner state: the text and a cursor (a class, not closures: this runs once per span). */
class Scanner {
  i = 0;
  /** UTF-16 code units of the last string read, escapes decoded. */
  length = 0;

  constructor(readonly s: string) {}

  literal(text: string): boolean {
    if (!this.s.startsWith(text, this.i)) return false;
    this.i += text.length;
    return true;
  }

  /**
   * A string at the cursor (its opening quote included), written as JSON.stringify writes strings:
   * no raw control character; `"` and `\` escaped; control characters as \b \t \n \f \r or
   * \u00xx (lower-case hex); nothing else escaped. Moves past it and answers true, or false.
   */
  string(): boolean {
    const s = this.s;
    if (s.charCodeAt(this.i) !== QUOTE) return false;
    let i = this.i + 1;
    let length = 0;
    for (;;) {
      // The characters needing no escape, in one native step (the regular expression engine).
      PLAIN.lastIndex = i;
      PLAIN.test(s);
      length += PLAIN.lastIndex - i;
      i = PLAIN.lastIndex;
      const c = s.charCodeAt(i);
      if (c === QUOTE) break;
      if (c !== BACKSLASH) return false; // a raw control character, or the end of the text
      const e = s.charCodeAt(i + 1);
      if (e === QUOTE || e === BACKSLASH || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) i += 2;
      else if (e === 0x75 && isControlEscape(s, i + 2)) i += 6;
      else return false;
      length += 1;
    }
    this.i = i + 1;
    this.length = length;
    return true;
  }

  /** A string of at most `max` code units. */
  shortString(max: number): boolean {
    return this.string() && this.length <= max;
  }

  /** `"` + exactly `count` lower-case hex digits + `"`, not all zeros (the head's ids are checked by HEAD). */
  hexId(count: number): boolean {
    const s = this.s;
    if (s.charCodeAt(this.i) !== QUOTE || s.charCodeAt(this.i + count + 1) !== QUOTE) return false;
    let nonZero = false;
    for (let k = this.i + 1; k <= this.i + count; k += 1) {
      const c = s.charCodeAt(k);
      if (c >= 0x30 && c <= 0x39) {
        if (c !== 0x30) nonZero = true;
      } else if (c >= 0x61 && c <= 0x66) nonZero = true;
      else return false;
    }
    this.i += count + 2;
    return nonZero;
  }

  /** One digit from `min` to `max` (an enum as the stored line writes it). */
  digit(min: number, max: number): boolean {
    const c = this.s.charCodeAt(this.i) - 0x30;
    if (!(c >= min && c <= max)) return false;
    this.i += 1;
    return true;
  }

  /**
   * An integer as JSON.stringify writes it, of at most 15 digits (exact as a double, printed the
   * same way): -?(0|[1-9][0-9]*), never -0.
   */
  smallInteger(): boolean {
    const s = this.s;
    let k = this.i;
    if (s.charCodeAt(k) === 0x2d) k += 1;
    const first = k;
    const c0 = s.charCodeAt(k);
    if (c0 === 0x30) k += 1;
    else if (c0 >= 0x31 && c0 <= 0x39) {
      k += 1;
      for (;;) {
        // charCodeAt past the end is NaN: written so that NaN stops the loop.
        const c = s.charCodeAt(k);
        if (!(c >= 0x30 && c <= 0x39)) break;
        k += 1;
      }
    } else return false;
    if (k - first > 15 || (c0 === 0x30 && first !== this.i)) return false;
    this.i = k;
    return true;
  }

  /** An attribute value: a scalar (null, true, false, string, small integer) or an array of them. */
  attributeValue(): boolean {
    if (this.s.charCodeAt(this.i) !== 0x5b) return this.scalar();
    this.i += 1;
    if (this.s.charCodeAt(this.i) === 0x5d) {
      this.i += 1;
      return true;
    }
    for (;;) {
      if (!this.scalar()) return false;
      const c = this.s.charCodeAt(this.i);
      this.i += 1;
      if (c === 0x5d) return true;
      if (c !== COMMA) return false;
    }
  }

  scalar(): boolean {
    const c = this.s.charCodeAt(this.i);
    if (c === QUOTE) return this.string();
    if (c === 0x6e) return this.literal('null');
    if (c === 0x74) return this.literal('true');
    if (c === 0x66) return this.literal('false');
    return this.smallInteger();
  }

  /**
   * An attribute map: names of 1 to 256 code units, none repeated, none made only of digits
   * (JSON.parse moves integer-like names to the front, so the line would differ), none
   * `__proto__`, at most MAX_NAMES of them; values as attributeValue. Names are compared where
   * they stand in the text (two names are the same string exactly when their canonical texts are).
   */
  attributes(): boolean {
    const s = this.s;
    if (s.charCodeAt(this.i) !== 0x7b) return false;
    this.i += 1;
    if (s.charCodeAt(this.i) === 0x7d) {
      this.i += 1;
      return true;
    }
    let count = 0;
    for (;;) {
      const start = this.i + 1;
      if (!this.string() || this.length === 0 || this.length > 256) return false;
      const end = this.i - 1;
      if (count === MAX_NAMES || onlyDigits(s, start, end) || (end - start === 9 && s.startsWith('__proto__', start))) return false;
      for (let k = 0; k < count; k += 1) if (sameText(s, NAMES[2 * k]!, NAMES[2 * k + 1]!, start, end)) return false;
      NAMES[2 * count] = start;
      NAMES[2 * count + 1] = end;
      count += 1;
      if (s.charCodeAt(this.i) !== 0x3a) return false;
      this.i += 1;
      if (!this.attributeValue()) return false;
      const c = s.charCodeAt(this.i);
      this.i += 1;
      if (c === 0x7d) return true;
      if (c !== COMMA) return false;
    }
  }

  /** A scope: `name` (required), `version`, `attributes`, each at most once, in any order. */
  scope(): boolean {
    const s = this.s;
    if (s.charCodeAt(this.i) !== 0x7b) return false;
    this.i += 1;
    let seen = 0;
    for (;;) {
      let bit: number;
      if (this.literal('"name":')) {
        bit = 1;
        if (!this.shortString(1024)) return false;
      } else if (this.literal('"version":')) {
        bit = 2;
        if (!this.shortString(1024)) return false;
      } else if (this.literal('"attributes":')) {
        bit = 4;
        if (!this.attributes()) return false;
      } else return false;
      if ((seen & bit) !== 0) return false;
      seen |= bit;
      const c = s.charCodeAt(this.i);
      this.i += 1;
      if (c === 0x7d) return (seen & 1) !== 0;
      if (c !== COMMA) return false;
    }
  }
}

/** `\u00` + two lower-case hex digits naming a control character JSON.stringify writes that way. */
function isControlEscape(s: string, at: number): boolean {
  if (s.charCodeAt(at) !== 0x30 || s.charCodeAt(at + 1) !== 0x30) return false;
  const hi = s.charCodeAt(at + 2);
  const lo = s.charCodeAt(at + 3);
  if (hi !== 0x30 && hi !== 0x31) return false;
  const low = lo >= 0x30 && lo <= 0x39 ? lo - 0x30 : lo >= 0x61 && lo <= 0x66 ? lo - 0x57 : -1;
  if (low < 0) return false;
  const code = (hi - 0x30) * 16 + low;
  // \b \t \n \f \r have short forms, which JSON.stringify uses.
  return code !== 0x08 && code !== 0x09 && code !== 0x0a && code !== 0x0c && code !== 0x0d;
}

/** Whether s[start, end) is only decimal digits (an integer-like property name). */
function onlyDigits(s: string, start: number, end: number): boolean {
  for (let k = start; k < end; k += 1) {
    const c = s.charCodeAt(k);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/** Whether s[a, aEnd) and s[b, bEnd) are the same text. */
function sameText(s: string, a: number, aEnd: number, b: number, bEnd: number): boolean {
  if (aEnd - a !== bEnd - b) return false;
  for (let k = 0; k < aEnd - a; k += 1) if (s.charCodeAt(a + k) !== s.charCodeAt(b + k)) return false;
  return true;
}

/**
 * Most attribute names a map may have for the fast path (more go the full path: comparing each
 * name with every earlier one would grow with their square). Where the names of the map being
 * read stand (start, end); attributes() is not re-entered while a map is read.
 */
const MAX_NAMES = 64;
const NAMES = new Int32Array(2 * MAX_NAMES);

/**
 * The fields the decoder needs when `text` is exactly a stored span line (see the file's
 * comment), else undefined. `bytes`, when given, are the record's bytes whose UTF-8 text `text`
 * is: the head is checked on them.
 */
export function storedSpanFields(text: string, bytes?: Uint8Array): StoredSpanFields | undefined {
  const r = new Scanner(text);
  // The head, tenant to spanId, in one check (the ids have fixed widths, so their places are
  // fixed too).
  let tenantId: string | undefined;
  let shift = 0;
  let end = headEnd(text, bytes, true);
  if (end >= 0) tenantId = text.slice(TENANT_AT, TENANT_AT + 36);
  else {
    end = headEnd(text, bytes, false);
    if (end < 0) return undefined;
    shift = TENANT_FIELD;
  }
  r.i = end;
  // All-zero ids are invalid (the full path gives the reason).
  if (text.startsWith(ZEROS32, TRACE_AT - shift + 1) || text.startsWith(ZEROS16, SPAN_AT - shift + 1)) return undefined;
  if (!r.literal('""') && !r.hexId(16)) return undefined;
  if (!r.literal(',"name":')) return undefined;
  if (!r.shortString(1024)) return undefined;
  // kind and both times in one match; the times' ends found by their closing quotes.
  TIMES.lastIndex = r.i;
  if (!TIMES.test(text)) return undefined;
  const kindAt = r.i + KIND_KEY.length;
  const startAt = kindAt + 1 + START_KEY.length;
  const startEnd = text.indexOf('"', startAt + 1) + 1;
  const endAt = startEnd + END_KEY.length;
  const endEnd = text.indexOf('"', endAt + 1) + 1;
  const startTimeUnixNano = text.slice(startAt + 1, startEnd - 1);
  const endTimeUnixNano = text.slice(endAt + 1, endEnd - 1);
  r.i = TIMES.lastIndex;
  if (!r.attributes()) return undefined;
  // status: the code, and the message only when not empty (storedSpan drops an empty one).
  if (!r.literal(',"status":{"code":') || !r.digit(0, 2)) return undefined;
  if (r.literal(',"message":')) {
      if (!r.shortString(8192) || r.length === 0) return undefined;
  }
  if (!r.literal('},"resource":{"attributes":')) return undefined;
  if (!r.attributes()) return undefined;
  if (!r.literal('}')) return undefined;
  if (r.literal(',"scope":') && !r.scope()) return undefined;
  // traceState only when not empty (storedSpan drops an empty one).
  if (r.literal(',"traceState":')) {
      if (!r.shortString(8192) || r.length === 0) return undefined;
  }
  if (!r.literal('}') || r.i !== text.length) return undefined;
  return { tenantId, startTimeUnixNano, endTimeUnixNano };
}
