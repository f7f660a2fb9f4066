import { randomUUID } from 'node:crypto';
import { makeTable } from './table.js';
import type { Kafka, KafkaMessage } from 'kafkajs';
import { DLQ_HEADERS } from '../kafka/dead-letter.js';

export interface DeadLetterRecord {
  partition: number;
  offset: string;
  key: string | null;
  source: { topic: string; partition: number; offset: string };
  errorClass: string;
  message: string;
  stage: string;
  failedAt: string;
  worker: string;
  value: string | null;
  headers: Record<string, string>;
}

function header(message: KafkaMessage, name: string): string {
  const raw = message.headers?.[name];
  const first = Array.isArray(raw) ? raw[0] : raw;
  return first === undefined ? '' : first.toString();
}

/**
 * Reads a dead-letter topic from the beginning up to its end offsets at the time of the call,
 * with a throwaway consumer group that is deleted afterwards.
 */
export async function readDeadLetters(kafka: Kafka, topic: string, limit = 0, onProgress?: (n: number) => void): Promise<DeadLetterRecord[]> {
  const admin = kafka.admin();
  await admin.connect();
  const group = `spanledger-dlq-inspect-${randomUUID()}`;
  const out: DeadLetterRecord[] = [];
  try {
    const topics = await admin.listTopics();
    if (!topics.includes(topic)) throw new Error(`topic ${topic} does not exist`);
    const ends = await admin.fetchTopicOffsets(topic);
    const remaining = new Map<number, bigint>();
    for (const e of ends) if (BigInt(e.high) > BigInt(e.low)) remaining.set(e.partition, BigInt(e.high));
    if (remaining.size === 0) return out;
    const consumer = kafka.consumer({ groupId: group, maxWaitTimeInMs: 250 });
    await consumer.connect();
    try {
      await consumer.subscribe({ topic, fromBeginning: true });
      await new Promise<void>((resolve, reject) => {
        consumer.on(consumer.events.CRASH, (e) => reject(e.payload.error));
        void consumer.run({
          autoCommit: false,
          eachMessage: async ({ partition, message }) => {
            const end = remaining.get(partition);
            if (end === undefined) return;
            if (limit === 0 || out.length < limit) {
              const headers: Record<string, string> = {};
              for (const name of Object.keys(message.headers ?? {})) headers[name] = header(message, name);
              out.push({
                partition,
                offset: message.offset,
                key: message.key ? message.key.toString() : null,
                source: {
                  topic: header(message, DLQ_HEADERS.topic),
                  partition: Number(header(message, DLQ_HEADERS.partition)),
                  offset: header(message, DLQ_HEADERS.offset),
                },
                errorClass: header(message, DLQ_HEADERS.errorClass),
                message: header(message, DLQ_HEADERS.message),
                stage: header(message, DLQ_HEADERS.stage),
                failedAt: header(message, DLQ_HEADERS.failedAt),
                worker: header(message, DLQ_HEADERS.worker),
                value: message.value ? message.value.toString('utf8') : null,
                headers,
              });
              onProgress?.(out.length);
            }
            if (BigInt(message.offset) + 1n >= end) remaining.delete(partition);
            if (remaining.size === 0 || (limit > 0 && out.length >= limit)) resolve();
          },
        });
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

export interface ReplayOptions {
  topic: string;
  /** Only records with this reason (`__connect.errors.class.name`), or all. */
  reason?: string;
  /** Produce here instead of each record's source topic. */
  to?: string;
  limit: number;
  dryRun: boolean;
}

/**
 * Sends dead-lettered records back to their source topic (or `to`) with their original key,
 * value and headers, minus the dead-letter headers, plus `spanledger.replayed.from` =
 * `<dlq topic>/<partition>/<offset>`. The worker validates them again: records that are still bad
 * land in the dead-letter topic again, carrying that header. The dead-letter topic is not changed.
 */
export async function replayDeadLetters(kafka: Kafka, o: ReplayOptions): Promise<{ selected: DeadLetterRecord[]; sent: number }> {
  const records = await readDeadLetters(kafka, o.topic, 0);
  const selected = records.filter((r) => o.reason === undefined || r.errorClass === o.reason).slice(0, o.limit > 0 ? o.limit : undefined);
  if (o.dryRun || selected.length === 0) return { selected, sent: 0 };
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, retry: { retries: Number.MAX_SAFE_INTEGER, maxRetryTime: 30_000 } });
  await producer.connect();
  try {
    const byTopic = new Map<string, DeadLetterRecord[]>();
    for (const r of selected) {
      const target = o.to ?? r.source.topic;
      if (!target) throw new Error(`dead letter ${r.partition}/${r.offset} has no source topic header; use --to`);
      byTopic.set(target, [...(byTopic.get(target) ?? []), r]);
    }
    for (const [topic, list] of byTopic) {
      await producer.send({
        topic,
        acks: -1,
        messages: list.map((r) => {
          const headers: Record<string, string> = {};
          for (const [name, value] of Object.entries(r.headers)) if (!isDeadLetterHeader(name) && name !== REPLAYED_FROM_HEADER) headers[name] = value;
          headers[REPLAYED_FROM_HEADER] = `${o.topic}/${r.partition}/${r.offset}`;
          return { key: r.key, value: r.value, headers };
        }),
      });
    }
  } finally {
    await producer.disconnect();
  }
  return { selected, sent: selected.length };
}
