import { randomUUID } from 'node:crypto';
import { makeTable } from './table.js';
import { DLQ_HEADERS } from '../kafka/dead-letter.js';
import type { HeaderList, KafkaFacade, OutgoingRecord } from '../kafka/facade.js';
import { orderedHeaders } from '../kafka/ordered-headers.js';
import type { RecordHeaders } from '../model/headers.js';
import type { ConsumedMessage } from '../pipeline/consumer-port.js';

/** One record header as Kafka holds it: a name and its bytes, or null. */
export interface RecordHeader {
  name: string;
  value: Buffer | null;
}

/** A record's key, value and headers exactly as the dead-letter topic holds them. */
export interface RecordBytes {
  key: Buffer | null;
  value: Buffer | null;
  /** In wire order (the Kafka adapter keeps it), repeated names and null values included. */
  headers: RecordHeader[];
}

export interface DeadLetterRecord {
  partition: number;
  offset: string;
  source: { topic: string; partition: number; offset: string };
  errorClass: string;
  message: string;
  stage: string;
  failedAt: string;
  worker: string;
  /** The key as UTF-8 text (binary bytes come out mangled: `original` has them exactly). */
  key: string | null;
  /** The value as UTF-8 text (likewise). */
  value: string | null;
  /** Each header's first value as UTF-8 text ('' for null). */
  headers: Record<string, string>;
  /** The exact bytes: what `dlq replay` sends. */
  original: RecordBytes;
}

function headerList(headers: RecordHeaders | undefined): RecordHeader[] {
  return orderedHeaders(headers ?? {}).map(([name, value]) => ({ name, value: value === null ? null : Buffer.from(value) }));
}

function firstText(headers: RecordHeader[], name: string): string {
  return headers.find((h) => h.name === name)?.value?.toString('utf8') ?? '';
}

/** A consumed dead-letter record: the fields of its dead-letter headers, text views, and its exact bytes. */
export function deadLetterFromMessage(partition: number, message: ConsumedMessage): DeadLetterRecord {
  const original: RecordBytes = { key: message.key, value: message.value, headers: headerList(message.headers) };
  const headers: Record<string, string> = {};
  for (const h of original.headers) if (!(h.name in headers)) headers[h.name] = h.value?.toString('utf8') ?? '';
  const text = (name: string) => firstText(original.headers, name);
  return {
    partition,
    offset: message.offset.toString(),
    source: { topic: text(DLQ_HEADERS.topic), partition: Number(text(DLQ_HEADERS.partition)), offset: text(DLQ_HEADERS.offset) },
    errorClass: text(DLQ_HEADERS.errorClass),
    message: text(DLQ_HEADERS.message),
    stage: text(DLQ_HEADERS.stage),
    failedAt: text(DLQ_HEADERS.failedAt),
    worker: text(DLQ_HEADERS.worker),
    key: original.key === null ? null : original.key.toString('utf8'),
    value: original.value === null ? null : original.value.toString('utf8'),
    headers,
    original,
  };
}

/**
 * Reads a dead-letter topic from the beginning up to its end offsets at the time of the call,
 * with a throwaway consumer group that is deleted afterwards.
 */
export async function readDeadLetters(kafka: KafkaFacade, topic: string, limit = 0, onProgress?: (read: number, total: number) => void): Promise<DeadLetterRecord[]> {
  const admin = kafka.admin();
  await admin.connect();
  const group = `spanledger-dlq-inspect-${randomUUID()}`;
  const out: DeadLetterRecord[] = [];
  try {
    const topics = await admin.listTopics();
    if (!topics.includes(topic)) throw new Error(`topic ${topic} does not exist`);
    const ends = await admin.topicOffsets(topic);
    const remaining = new Map<number, bigint>();
    let total = 0n;
    for (const e of ends) {
      if (e.high <= e.low) continue;
      remaining.set(e.partition, e.high);
      total += e.high - e.low;
    }
    if (remaining.size === 0) return out;
    const expected = limit > 0 && BigInt(limit) < total ? limit : Number(total);
    const consumer = kafka.groupConsumer({
      group,
      sessionTimeoutMs: 30_000,
      rebalanceTimeoutMs: 60_000,
      heartbeatIntervalMs: 3_000,
      maxInFlightBytes: 40 << 20,
      partitionsConcurrency: 1,
      maxWaitTimeMs: 250,
    });
    await consumer.connect();
    try {
      await consumer.subscribe(topic, true);
      await new Promise<void>((resolve, reject) => {
        // A crash the client restarts the consumer after (a retriable one, e.g. "not the correct
        // coordinator" while a fresh group's coordinator loads) is not the end of the read.
        consumer.onCrash(({ error, restart }) => {
          if (!restart) reject(error);
        });
        consumer
          .run(async (batch) => {
            const { partition } = batch;
            for (const message of batch.messages) {
              const end = remaining.get(partition);
              if (end === undefined) {
                // Read to its end: no more fetches of it.
                consumer.pause(topic, [partition]);
                return;
              }
              batch.resolveOffset(message.offset);
              if (limit === 0 || out.length < limit) {
                out.push(deadLetterFromMessage(partition, message));
                onProgress?.(out.length, expected);
              }
              if (message.offset + 1n >= end) remaining.delete(partition);
              if (remaining.size === 0 || (limit > 0 && out.length >= limit)) resolve();
            }
            if (batch.undecodable !== undefined) reject(new Error(`${topic} partition ${partition}: ${batch.undecodable}`));
          })
          .catch(reject);
      });
    } finally {
      await consumer.disconnect();
    }
  } finally {
    await admin.deleteGroups([group]).catch(() => undefined);
    await admin.disconnect();
  }
  out.sort((a, b) => a.partition - b.partition || Number(BigInt(a.offset) - BigInt(b.offset)));
  return out;
}

/**
 * Bytes in `dlq inspect --json`: a string when they are valid UTF-8 (the string's UTF-8 encoding
 * is exactly those bytes), else `{"base64": "…"}`; null stays null.
 */
export type JsonBytes = string | { base64: string } | null;

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export function jsonBytes(bytes: Buffer | null): JsonBytes {
  if (bytes === null) return null;
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return { base64: bytes.toString('base64') };
  }
}

/** What `dlq inspect --json` prints for a record: headers as [name, value] pairs, repeats kept. */
export function deadLetterJson(r: DeadLetterRecord): Record<string, unknown> {
  return {
    partition: r.partition,
    offset: r.offset,
    source: r.source,
    errorClass: r.errorClass,
    message: r.message,
    stage: r.stage,
    failedAt: r.failedAt,
    worker: r.worker,
    key: jsonBytes(r.original.key),
    value: jsonBytes(r.original.value),
    headers: r.original.headers.map((h) => [h.name, jsonBytes(h.value)]),
  };
}

export function renderDeadLetterTable(records: DeadLetterRecord[]): string {
  const table = makeTable({
    head: ['dlq p/offset', 'source topic/p/offset', 'reason', 'message', 'stage', 'failed at', 'worker'],
    colWidths: [12, 40, 18, 56, 10, 26, 20],
    wordWrap: true,
  });
  for (const r of records) {
    table.push([
      `${r.partition}/${r.offset}`,
      `${r.source.topic}/${r.source.partition}/${r.source.offset}`,
      r.errorClass,
      r.message.length > 240 ? `${r.message.slice(0, 237)}...` : r.message,
      r.stage,
      r.failedAt,
      r.worker,
    ]);
  }
  return table.toString();
}

/** Headers spanledger (and Kafka Connect's convention) adds on the way into a dead-letter topic. */
function isDeadLetterHeader(name: string): boolean {
  return name.startsWith('__connect.errors.') || name.startsWith('spanledger.dlq.');
}

export const REPLAYED_FROM_HEADER = 'spanledger.replayed.from';

/**
 * The record to send again: the original key and value bytes, and its headers (bytes, nulls and
 * repeats) minus the dead-letter headers and an earlier replay mark, plus `spanledger.replayed.from`.
 */
export function replayMessage(dlqTopic: string, r: DeadLetterRecord): OutgoingRecord {
  const list: HeaderList = r.original.headers.filter(({ name }) => !isDeadLetterHeader(name) && name !== REPLAYED_FROM_HEADER).map(({ name, value }) => [name, value]);
  list.push([REPLAYED_FROM_HEADER, Buffer.from(`${dlqTopic}/${r.partition}/${r.offset}`)]);
  return { key: r.original.key, value: r.original.value, headers: list };
}

export interface ReplayOptions {
  topic: string;
  /** Only records with this reason (`__connect.errors.class.name`), or all. */
  reason?: string;
  /** Produce here instead of each record's source topic. */
  to?: string;
  limit: number;
  dryRun: boolean;
}

/** Records per produce request: bounds a request's size when a dead-letter topic is large. */
const REPLAY_BATCH = 500;

/**
 * Sends dead-lettered records back to their source topic (or `to`), byte for byte: original key,
 * value and headers (see replayMessage). The worker validates them again: records that are still
 * bad land in the dead-letter topic again, carrying `spanledger.replayed.from`. The dead-letter
 * topic is not changed.
 */
export async function replayDeadLetters(
  kafka: KafkaFacade,
  o: ReplayOptions,
  progress?: { onRead?: (read: number, total: number) => void; onSent?: (sent: number, total: number) => void },
): Promise<{ selected: DeadLetterRecord[]; sent: number }> {
  const records = await readDeadLetters(kafka, o.topic, 0, progress?.onRead);
  const selected = records.filter((r) => o.reason === undefined || r.errorClass === o.reason).slice(0, o.limit > 0 ? o.limit : undefined);
  if (o.dryRun || selected.length === 0) return { selected, sent: 0 };
  const targets = selected.map((r) => {
    const target = o.to ?? r.source.topic;
    if (!target) throw new Error(`dead letter ${r.partition}/${r.offset} has no source topic header; use --to`);
    return target;
  });
  const producer = kafka.producer({ delivery: 'idempotent' });
  await producer.connect();
  let sent = 0;
  try {
    // In dead-letter order, one topic's run at a time, so each source partition gets them in order.
    for (let i = 0; i < selected.length; ) {
      let j = i + 1;
      while (j < selected.length && j - i < REPLAY_BATCH && targets[j] === targets[i]) j += 1;
      await producer.send(targets[i]!, selected.slice(i, j).map((r) => replayMessage(o.topic, r)));
      sent += j - i;
      progress?.onSent?.(sent, selected.length);
      i = j;
    }
  } finally {
    await producer.disconnect();
  }
  return { selected, sent };
}
