import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { kafkaSettings, Parsed, spanSettings, workerSettings } from '../config/settings.js';
import { SpanDecoder, type DecodedSpan } from '../model/decode.js';
import { SpanLogSink } from '../sinks/spanlog/spanlog-sink.js';
import { Worker } from './worker.js';

export interface SpanWorkerConfig {
  kafka: Parsed<typeof kafkaSettings>;
  worker: Parsed<typeof workerSettings>;
  spans: Parsed<typeof spanSettings>;
}

/** Span worker: `spans` topic → per-tenant, per-day JSONL span log. */
export function createSpanWorker(config: SpanWorkerConfig, logger: Logger, registry: Registry): Worker<DecodedSpan> {
  // storedText: the span log writes each span's line, which a JSON record often already is;
  // recordBytes: such a line is written from the record's own bytes.
  const decoderOptions = { encoding: config.spans.encoding, tenantAttribute: config.spans.tenantAttribute, storedText: true, recordBytes: true };
  const sink = new SpanLogSink({ dir: config.spans.spanlogDir, lockStaleMs: config.spans.lockStaleMs, maxOpenFiles: config.spans.maxOpenFiles }, { logger, registry });
  return new Worker<DecodedSpan>({
    role: 'spans',
    kafka: config.kafka,
    worker: config.worker,
    topic: config.spans.topic,
    dlqTopic: config.spans.dlqTopic,
    group: config.spans.group,
    decoder: new SpanDecoder(config.worker.maxMessageBytes, decoderOptions),
    decoderSpec: { kind: 'spans', maxMessageBytes: config.worker.maxMessageBytes, options: decoderOptions },
    sinks: [sink],
    logger,
    registry,
  });
}
