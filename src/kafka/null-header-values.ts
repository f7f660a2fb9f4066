import { createRequire } from 'node:module';

/**
 * Lets kafkajs produce headers whose value is null.
 *
 * Kafka allows a null header value (length -1) and kafkajs reads one as `null`, but kafkajs
 * 2.2.4 cannot write one: its record encoder (src/protocol/recordBatch/record/v0) sizes every
 * header with `Buffer.byteLength(value)` before it checks for null, and that throws a TypeError
 * (tulios/kafkajs#1789; fix proposed in #1786, not released). Its `Encoder.writeVarIntBytes(null)`
 * already writes the -1 length correctly, so this installs a record encoder that writes the
 * same bytes, but takes the record's length from the encoded body instead of pre-computing it.
 * Nothing is changed when the installed kafkajs already encodes null header values.
 */
const require = createRequire(import.meta.url);

type RecordEncoder = (record: { offsetDelta?: number; timestampDelta?: number; key: unknown; value: unknown; headers?: Record<string, unknown> }) => EncoderInstance;
interface EncoderInstance {
  writeInt8(v: number): EncoderInstance;
  writeVarInt(v: number): EncoderInstance;
  writeVarLong(v: number): EncoderInstance;
  writeVarIntBytes(v: unknown): EncoderInstance;
  writeVarIntArray(v: EncoderInstance[]): EncoderInstance;
  writeEncoder(v: EncoderInstance): EncoderInstance;
  size(): number;
}

const KAFKAJS = 'kafkajs/src/protocol';
const RECORD_ENCODER = `${KAFKAJS}/recordBatch/record/v0/index.js`;
/** The produce request encoders capture the record encoder when they load (v4…v7 through v3). */
const PRODUCE_REQUESTS = [3, 4, 5, 6, 7].map((v) => `${KAFKAJS}/requests/produce/v${v}/request.js`);

function encodesNullHeaderValues(encode: RecordEncoder): boolean {
  try {
    encode({ key: null, value: null, headers: { h: null } });
    return true;
  } catch {
    return false;
  }
}

let installed = false;

export function allowNullHeaderValues(): void {
  if (installed) return;
  const path = require.resolve(RECORD_ENCODER);
  const original = require(path) as RecordEncoder;
  if (encodesNullHeaderValues(original)) {
    installed = true;
    return;
  }
  const Encoder = require(`${KAFKAJS}/encoder.js`) as new () => EncoderInstance;
  const Header = require(`${KAFKAJS}/recordBatch/header/v0/index.js`) as (h: { key: string; value: unknown }) => EncoderInstance;
  const encode: RecordEncoder = ({ offsetDelta = 0, timestampDelta = 0, key, value, headers = {} }) => {
    // As kafkajs: a header whose value is an array is that header repeated, in array order.
    const list = Object.keys(headers).flatMap((name) => {
      const v = headers[name];
      return Array.isArray(v) ? v.map((item: unknown) => Header({ key: name, value: item })) : [Header({ key: name, value: v })];
    });
    const body = new Encoder().writeInt8(0).writeVarLong(timestampDelta).writeVarInt(offsetDelta).writeVarIntBytes(key).writeVarIntBytes(value).writeVarIntArray(list);
    return new Encoder().writeVarInt(body.size()).writeEncoder(body);
  };
  require.cache[path]!.exports = encode;
  // Produce request encoders loaded before now hold the old record encoder: load them again.
  for (const request of PRODUCE_REQUESTS) {
    const resolved = require.resolve(request);
    delete require.cache[resolved];
  }
  installed = true;
}
