import { createRequire } from 'node:module';
import type { IHeaders, KafkaMessage } from 'kafkajs';

/**
 * kafkajs' own record encoder and decoder (the ones its producer and consumer use), to check
 * what a message becomes on the wire without a broker.
 */
const require = createRequire(import.meta.url);
const P = 'kafkajs/src/protocol';

interface Encoded {
  buffer: Buffer;
}
type RecordEncoder = (record: { key?: unknown; value: unknown; headers?: IHeaders | Record<string, unknown> }) => Encoded;

/** The record encoder kafkajs' produce requests use (with our patch: null header values, wire order). */
export function recordEncoder(): RecordEncoder {
  return require(`${P}/recordBatch/record/v0/index.js`) as RecordEncoder;
}

/** Decodes one encoded record (varint length + body) as kafkajs' consumer does. */
export function decodeRecord(encoded: Buffer): KafkaMessage {
  const Decoder = require(`${P}/decoder.js`) as new (b: Buffer) => { readVarIntBytes(): Buffer };
  const RecordDecoder = require(`${P}/recordBatch/record/v0/decoder.js`) as (d: unknown, ctx: object) => KafkaMessage;
  const body = new Decoder(encoded).readVarIntBytes();
  return RecordDecoder(new Decoder(body), { firstOffset: '0', firstTimestamp: '0' });
}
