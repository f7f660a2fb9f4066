import { createRequire, Module } from 'node:module';
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

/** The record encoder kafkajs' produce requests use now (after allowNullHeaderValues(), the fixed one). */
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

/** kafkajs' record encoder as shipped, loaded apart from the module cache (which allowNullHeaderValues() changes). */
export function shippedRecordEncoder(): RecordEncoder {
  const path = require.resolve(`${P}/recordBatch/record/v0/index.js`);
  // Module#load evaluates the file in a new module object without registering it in the cache.
  const internals = Module as unknown as { new (id: string): Module & { load(file: string): void }; _nodeModulePaths(from: string): string[] };
  const mod = new internals(path);
  mod.filename = path;
  mod.paths = internals._nodeModulePaths(path);
  mod.load(path);
  return mod.exports as RecordEncoder;
}
