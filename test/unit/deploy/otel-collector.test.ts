import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { spanSettings, workerSettings } from '../../../src/config/settings.js';
import { SpanDecoder, TENANT_HEADER } from '../../../src/model/decode.js';
import { generateOtlpRequest } from '../../../src/model/generate-otlp.js';
import type { OtlpEncoding } from '../../../src/model/otlp.js';

/**
 * deploy/otel-collector.yaml, the Collector configuration the README shows: a complete one (the
 * README's earlier fragment failed as pasted with "no receiver configuration specified in config"),
 * wired to what spanledger reads. No Collector runs here: the checks are the Collector's own rules
 * for a pipeline (every component it names is defined) and the kafka exporter settings that
 * spanledger depends on.
 */
const ROOT = path.resolve(import.meta.dirname, '../../..');
const CONFIG_PATH = 'deploy/otel-collector.yaml';
const text = fs.readFileSync(path.join(ROOT, CONFIG_PATH), 'utf8');
// `parse` refuses duplicate keys: the Collector's loader would refuse them too.
const config = parse(text) as Record<string, unknown>;

/** The largest OTLP span (protobuf, before compression) the batch limits are sized for, bytes. */
const SPAN_BYTES_BOUND = 2000;
const COLLECTOR_COMPRESSIONS = ['none', 'gzip', 'snappy', 'lz4', 'zstd'];

function section(value: unknown, name: string): Record<string, unknown> {
  expect(value, `${name} must be a mapping`).toBeTypeOf('object');
  expect(value, `${name} must be a mapping`).not.toBeNull();
  expect(Array.isArray(value), `${name} must be a mapping`).toBe(false);
  return value as Record<string, unknown>;
}

/** `kafka/spans` → `kafka`: a component's type is its id up to the first slash. */
function typeOf(id: string): string {
  return id.split('/')[0]!;
}

const receivers = section(config.receivers, 'receivers');
const processors = section(config.processors, 'processors');
const exporters = section(config.exporters, 'exporters');
const traces = section(section(section(config.service, 'service').pipelines, 'service.pipelines').traces, 'service.pipelines.traces');
const kafkaId = (traces.exporters as string[]).find((id) => typeOf(id) === 'kafka')!;
const kafka = section(exporters[kafkaId], `exporters.${kafkaId}`);
const producer = section(kafka.producer, 'producer');
const batch = section(processors[(traces.processors as string[]).find((id) => typeOf(id) === 'batch')!], 'processors.batch');

describe(CONFIG_PATH, () => {
  it('has receivers, processors and exporters, and a traces pipeline naming only components it defines', () => {
    for (const [name, components] of Object.entries({ receivers, processors, exporters })) {
      expect(Object.keys(components).length, `${name} is empty`).toBeGreaterThan(0);
      const used = traces[name] as unknown;
      expect(Array.isArray(used) && used.length > 0, `service.pipelines.traces.${name} must list at least one`).toBe(true);
      for (const id of used as string[]) expect(Object.keys(components), `service.pipelines.traces.${name} names ${id}`).toContain(id);
    }
    expect(kafkaId).toBeDefined();
  });

  it('receives OTLP over gRPC and HTTP', () => {
    const otlp = section(receivers[(traces.receivers as string[]).find((id) => typeOf(id) === 'otlp')!], 'receivers.otlp');
    expect(Object.keys(section(otlp.protocols, 'receivers.otlp.protocols')).sort()).toEqual(['grpc', 'http']);
  });

  it('limits memory first, then batches', () => {
    expect((traces.processors as string[]).map(typeOf)).toEqual(['memory_limiter', 'batch']);
  });

  it('caps a batch, so that no Kafka message it becomes exceeds the producer limit', () => {
    const max = batch.send_batch_max_size as number;
    expect(Number.isInteger(max) && max > 0, 'send_batch_max_size must be set and > 0 (0 means no cap)').toBe(true);
    expect(batch.send_batch_size as number).toBeLessThanOrEqual(max);
    expect(max * SPAN_BYTES_BOUND).toBeLessThanOrEqual(producer.max_message_bytes as number);
  });

  it('writes where span workers read, in an encoding they decode, keyed by trace id', () => {
    expect(kafka.brokers).toEqual(expect.arrayContaining([expect.stringMatching(/^[^\s:]+:\d{1,5}$/)]));
    const tracesOut = section(kafka.traces, 'kafka.traces');
    expect(tracesOut.topic).toBe(spanSettings.topic.default);
    expect(spanSettings.encoding.schema.safeParse(tracesOut.encoding).success && tracesOut.encoding !== 'auto' && tracesOut.encoding !== 'json').toBe(true);
    expect(kafka.partition_traces_by_id).toBe(true);
    // The deprecated top-level forms would override traces::topic and traces::encoding.
    expect(kafka.topic).toBeUndefined();
    expect(kafka.encoding).toBeUndefined();
  });

  it('produces with acks=all, a codec span workers read, records span workers accept, and never creates a topic', () => {
    expect([-1, 'all']).toContain(producer.required_acks);
    expect(COLLECTOR_COMPRESSIONS).toContain(producer.compression);
    expect(producer.max_message_bytes as number).toBeGreaterThan(0);
    expect(producer.max_message_bytes as number).toBeLessThanOrEqual(Number(workerSettings.maxMessageBytes.default));
    expect(producer.allow_auto_topic_creation).toBe(false);
    expect(section(kafka.sending_queue, 'sending_queue').enabled).toBe(true);
    expect(section(kafka.retry_on_failure, 'retry_on_failure').enabled).toBe(true);
  });

  it("names each record's tenant in the header span workers read, and a span worker with default settings stores every span under it", () => {
    const headers = kafka.record_headers as Array<{ name: string; value: string }>;
    expect(Array.isArray(headers), 'record_headers is a list of {name, value}').toBe(true);
    const tenant = headers.filter((h) => h.name === TENANT_HEADER);
    expect(tenant).toHaveLength(1);
    // A request whose resources name another tenant: the header wins, for every span.
    const request = generateOtlpRequest('00000000-0000-4000-8000-000000000001', 20, section(kafka.traces, 'kafka.traces').encoding as OtlpEncoding);
    const decoded = new SpanDecoder(Number(workerSettings.maxMessageBytes.default), { encoding: 'auto' }).decode({ value: request.value, headers: { [TENANT_HEADER]: Buffer.from(tenant[0]!.value) } });
    expect(decoded.ok && decoded.items.map((i) => i.tenantId)).toEqual(Array(20).fill(tenant[0]!.value.toLowerCase()));
  });

  it('is what the README shows', () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const at = readme.indexOf(`](${CONFIG_PATH}):`);
    expect(at, `README links ${CONFIG_PATH} before its block`).toBeGreaterThan(0);
    const block = /```yaml\n([\s\S]*?)```/.exec(readme.slice(at))?.[1];
    expect(block).toBe(text);
  });
});
