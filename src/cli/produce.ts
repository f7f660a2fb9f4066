import cliProgress from 'cli-progress';
import type { Kafka, Message } from 'kafkajs';
import { ensureTopics } from '../kafka/client.js';
import { TENANT_HEADER } from '../model/decode.js';
import { generateSignal, generateSpan, malformedRecords, tenantIdFor } from '../model/generate.js';

export interface ProduceOptions {
  kind: 'spans' | 'signals';
  topic: string;
  count: number;
  tenants: number;
  /** Records per second; 0 = as fast as the broker takes them. */
  rate: number;
  /** Malformed records to mix in, to exercise the dead-letter path. */
  bad: number;
  batchSize: number;
  topicPartitions: number;
  maxMessageBytes: number;
  /** Tenants are tenantIdFor(tenantBase + i); a demo uses a fresh base so runs don't share tenants. */
  tenantBase?: number;
  /** Write progress to stderr (a bar on a terminal, a line every 2 s otherwise). */
  progress: boolean;
}

export interface ProduceResult {
  produced: number;
  bad: number;
  seconds: number;
  rate: number;
}

/**
 * Load generator: sends `count` records spread round-robin over `tenants` tenants, keyed by
 * tenant id (so a tenant stays on one partition), in batches, acks=all.
 */
export async function produce(kafka: Kafka, o: ProduceOptions): Promise<ProduceResult> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await ensureTopics(admin, [{ topic: o.topic, numPartitions: o.topicPartitions }]);
  } finally {
    await admin.disconnect();
  }
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const total = o.count + o.bad;
  const bar = o.progress
    ? new cliProgress.SingleBar(
        {
          format: `producing ${o.kind} [{bar}] {percentage}% | {value}/{total} | {rate}/s | eta {eta}s`,
          stream: process.stderr,
          noTTYOutput: true,
          notTTYSchedule: 2000,
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  bar?.start(total, 0, { rate: 0 });
  const started = Date.now();
  let sent = 0;
  const bad = o.bad > 0 ? malformedRecords(tenantIdFor(0), o.maxMessageBytes) : [];
  // Malformed records sit at evenly spread positions of the stream.
  const badAt = new Set<number>();
  for (let j = 0; j < o.bad; j += 1) badAt.add(Math.floor(((j + 1) * total) / (o.bad + 1)));
  let badSent = 0;
  let seq = 0;
  let queued = 0;
  const inFlight: Array<Promise<void>> = [];
  try {
    while (queued < total) {
      const messages: Message[] = [];
      while (messages.length < o.batchSize && queued + messages.length < total) {
        if (badAt.has(queued + messages.length)) {
          const b = bad[badSent % bad.length]!;
          // A large record travels alone: the broker limits the size of a whole record batch.
          if (b.value.length > 65536 && messages.length > 0) break;
          messages.push({ key: tenantIdFor(0), value: b.value, headers: b.headers });
          badSent += 1;
          if (b.value.length > 65536) break;
          continue;
        }
        const tenantId = tenantIdFor((o.tenantBase ?? 0) + (seq % o.tenants));
        const record = o.kind === 'spans' ? generateSpan(tenantId, seq) : generateSignal(tenantId, seq);
        // Every fifth span carries its tenant in the header only, as some producers do.
        let value: unknown = record;
        const headers: Record<string, string> = {};
        if (o.kind === 'spans' && seq % 5 === 4) {
          const { tenantId: _omit, ...rest } = record as { tenantId: string };
          value = rest;
          headers[TENANT_HEADER] = tenantId;
        }
        messages.push({ key: tenantId, value: JSON.stringify(value), headers, timestamp: String(Date.now()) });
        seq += 1;
      }
      // Several requests in flight: one at a time leaves the broker idle between round trips.
      const count = messages.length;
      queued += count;
      inFlight.push(
        producer.send({ topic: o.topic, messages, acks: -1 }).then(() => {
          sent += count;
          bar?.update(sent, { rate: Math.round(sent / Math.max((Date.now() - started) / 1000, 0.001)) });
        }),
      );
      if (inFlight.length >= 8) await inFlight.shift();
      if (o.rate > 0) {
        const dueMs = (queued / o.rate) * 1000 - (Date.now() - started);
        if (dueMs > 0) await new Promise((r) => setTimeout(r, dueMs));
      }
    }
    await Promise.all(inFlight);
  } finally {
    bar?.stop();
    await producer.disconnect();
  }
  const seconds = (Date.now() - started) / 1000;
  return { produced: sent - badSent, bad: badSent, seconds, rate: Math.round(sent / Math.max(seconds, 0.001)) };
}
