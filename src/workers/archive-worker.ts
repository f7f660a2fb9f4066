import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { archiveWorkerConfig, type archiveSettings, type archiveWorkerSettings, type kafkaSettings, type Parsed, type spanSettings } from '../config/settings.js';
import { ArchiveSpanDecoder, type ArchiveRow } from '../model/archive-row.js';
import { ArchiveSink } from '../sinks/archive/archive-sink.js';
import { Worker } from './worker.js';

export interface ArchiveWorkerConfig {
  kafka: Parsed<typeof kafkaSettings>;
  worker: Parsed<typeof archiveWorkerSettings>;
  spans: Pick<Parsed<typeof spanSettings>, 'topic' | 'encoding' | 'tenantAttribute'>;
  archive: Parsed<typeof archiveSettings>;
}

/**
 * Archive worker: `spans` topic (its own group) → per-tenant, per-day Parquet objects in an
 * S3-compatible bucket. The span worker's pipeline with another sink: the same decoder and
 * dead-letter rules, the archive's cycles as its flushes (ARCHIVE_CYCLE_* are its batch limits).
 */
export function createArchiveWorker(config: ArchiveWorkerConfig, logger: Logger, registry: Registry): Worker<ArchiveRow> {
  const worker = archiveWorkerConfig(config.worker, config.archive);
  const decoderOptions = { encoding: config.spans.encoding, tenantAttribute: config.spans.tenantAttribute };
  const { archive } = config;
  const sink = new ArchiveSink(
    {
      endpoint: archive.endpoint,
      bucket: archive.bucket,
      forcePathStyle: archive.forcePathStyle,
      requestTimeoutMs: archive.requestTimeoutMs,
      partSizeBytes: archive.partSizeBytes,
      prefix: archive.prefix,
      scratchDir: archive.scratchDir,
      duckdbMemoryLimit: archive.duckdbMemoryLimit,
    },
    { logger, registry },
  );
  return new Worker<ArchiveRow>({
    role: 'archive',
    kafka: config.kafka,
    worker,
    // A backlog's last partial cycle is cut when the partition is caught up instead of waiting
    // ARCHIVE_CYCLE_MAX_AGE_MS; at most one such cut per that interval (docs/archive.md, Cycles).
    caughtUpFlushIntervalMs: archive.cycleMaxAgeMs,
    topic: config.spans.topic,
    dlqTopic: archive.dlqTopic,
    group: archive.group,
    decoder: new ArchiveSpanDecoder(worker.maxMessageBytes, decoderOptions),
    decoderSpec: { kind: 'archive-spans', maxMessageBytes: worker.maxMessageBytes, options: decoderOptions },
    sinks: [sink],
    logger,
    registry,
  });
}
