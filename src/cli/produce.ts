import cliProgress from 'cli-progress';
import type { HeaderList, KafkaFacade, OutgoingRecord } from '../kafka/facade.js';
import { ensureTopics } from '../kafka/topics.js';
import { TENANT_HEADER } from '../model/decode.js';
import { generateSignal, generateSpan, malformedRecords, tenantIdFor } from '../model/generate.js';
import { generateOtlpRequest } from '../model/generate-otlp.js';
import type { SpanEncoding } from '../model/otlp.js';

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
  /** Spans only: one span per message as spanledger JSON (default), or OTLP ExportTraceServiceRequests. */
  encoding?: SpanEncoding;
  /** OTLP only: spans per message (default 100). */
  spansPerMessage?: number;
  /** OTLP only: also set the tenant-id header (every span of a generated request has one tenant). */
  tenantHeader?: boolean;
}

export interface ProduceResult {
  /** Valid records (spans or signals), not counting malformed ones. */
  produced: number;
  /** Kafka messages they took (as many as records, except OTLP: several spans a message). */
  messages: number;
  bad: number;
  seconds: number;
  rate: number;
}

/** One valid message and the records (spans or signals) it carries. */
type MakeMessage = (seq: number, remaining: number) => { message: OutgoingRecord; records: number };

/** Messages of spanledger JSON: one record each; every fifth span carries its tenant in the header only, as some producers do. */
function jsonMessages(o: ProduceOptions): MakeMessage {
  return (seq) => {
    const tenantId = tenantIdFor((o.tenantBase ?? 0) + (seq % o.tenants));
    const record = o.kind === 'spans' ? generateSpan(tenantId, seq) : generateSignal(tenantId, seq);
    let value: unknown = record;
    const headers: HeaderList = [];
    if (o.kind === 'spans' && seq % 5 === 4) {
      const { tenantId: _omit, ...rest } = record as { tenantId: string };
      value = rest;
      headers.push([TENANT_HEADER, tenantId]);
    }
    return { message: { key: tenantId, value: JSON.stringify(value), headers, timestamp: String(Date.now()) }, records: 1 };
  };
}

/**
 * Messages of OTLP ExportTraceServiceRequests, as the Collector's Kafka exporter writes them, of
 * one tenant each (round-robin): keyed by tenant id, so a tenant stays on one partition, and
 * the tenant travels in the resource attribute tenant.id (plus the header if asked).
 */
function otlpMessages(o: ProduceOptions, encoding: Exclude<SpanEncoding, 'json'>): MakeMessage {
  const spansPerMessage = o.spansPerMessage ?? 100;
  let message = 0;
  return (seq, remaining) => {
    const tenantId = tenantIdFor((o.tenantBase ?? 0) + (message % o.tenants));
    message += 1;
    const request = generateOtlpRequest(tenantId, Math.min(spansPerMessage, remaining), encoding, seq);
    const headers: HeaderList = o.tenantHeader ? [[TENANT_HEADER, tenantId]] : [];
    return { message: { key: request.key, value: request.value, headers, timestamp: String(Date.now()) }, records: request.spans.length };
  };
}

/** Bytes of one produce request at most: the broker limits a record batch (message.max.bytes, 1 MiB by default). */
const MAX_BATCH_BYTES = 512 * 1024;

/**
 * Load generator: sends `count` records spread round-robin over `tenants` tenants, keyed by
 * tenant id (so a tenant stays on one partition), in batches, acks=all.
 */
export async function produce(kafka: KafkaFacade, o: ProduceOptions): Promise<ProduceResult> {
  await ensureTopics(kafka, [{ topic: o.topic, numPartitions: o.topicPartitions }]);
  const producer = kafka.producer({ delivery: 'bounded' });
  await producer.connect();
  const encoding = o.kind === 'spans' ? (o.encoding ?? 'json') : 'json';
  const makeMessage = encoding === 'json' ? jsonMessages(o) : otlpMessages(o, encoding);
  // Progress and --rate count records (spans), whatever number of messages they take.
  const total = o.count + o.bad;
  const bar = o.progress
    ? new cliProgress.SingleBar(
        {
          format: `producing ${o.kind}${encoding === 'json' ? '' : ` (${encoding})`} [{bar}] {percentage}% | {value}/{total} | {rate}/s | eta {eta}s`,
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
  let messagesSent = 0;
  const bad = o.bad > 0 ? malformedRecords(tenantIdFor(0), o.maxMessageBytes) : [];
  // Malformed records sit at evenly spread positions of the stream (counted in records).
  const badAt: number[] = [];
  for (let j = 0; j < o.bad; j += 1) badAt.push(Math.floor(((j + 1) * total) / (o.bad + 1)));
  let badSent = 0;
  let seq = 0;
  let queued = 0;
  const inFlight: Array<Promise<void>> = [];
  try {
    while (queued < total) {
      const messages: OutgoingRecord[] = [];
      let records = 0;
      let bytes = 0;
      while (messages.length < o.batchSize && queued + records < total && bytes < MAX_BATCH_BYTES) {
        if (badSent < o.bad && (badAt[badSent]! <= queued + records || seq === o.count)) {
          const b = bad[badSent % bad.length]!;
          // A large record travels alone: the broker limits the size of a whole record batch.
          if (b.value.length > 65536 && messages.length > 0) break;
          messages.push({ key: tenantIdFor(0), value: b.value, ...(b.headers === undefined ? {} : { headers: Object.entries(b.headers) }) });
          badSent += 1;
          records += 1;
          bytes += b.value.length;
          if (b.value.length > 65536) break;
          continue;
        }
        const next = makeMessage(seq, o.count - seq);
        messages.push(next.message);
        seq += next.records;
        records += next.records;
        bytes += (next.message.value as Buffer | string).length;
      }
      // Several requests in flight: one at a time leaves the broker idle between round trips.
      const count = messages.length;
      queued += records;
      inFlight.push(
        producer.send(o.topic, messages).then(() => {
          sent += records;
          messagesSent += count;
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
  return { produced: sent - badSent, messages: messagesSent - badSent, bad: badSent, seconds, rate: Math.round(sent / Math.max(seconds, 0.001)) };
}
