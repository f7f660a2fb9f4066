import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Parsed } from '../config/settings.js';
import type { kafkaSettings, workerSettings } from '../config/settings.js';
import { createKafka, ensureTopics, topicMaxMessageBytes } from '../kafka/client.js';
import { ConsumerRunner } from '../kafka/consumer-runner.js';
import type { RecordDecoder } from '../model/decode.js';
import { HealthServer } from '../observability/health-server.js';
import { WorkerMetrics } from '../observability/metrics.js';
import type { TenantBatchSink } from '../sinks/types.js';

/** Room for the reason headers a dead letter adds to its record. */
const DLQ_HEADER_ROOM_BYTES = 64 * 1024;

export interface WorkerOptions<T> {
  kafka: Parsed<typeof kafkaSettings>;
  worker: Parsed<typeof workerSettings>;
  topic: string;
  dlqTopic: string;
  group: string;
  decoder: RecordDecoder<T>;
  sinks: TenantBatchSink<T>[];
  logger: Logger;
  registry: Registry;
}

/**
 * A consumer worker with its lifecycle: start (topics, metrics server, group), stop (flush,
 * commit, leave). Span and signal workers are this class with different decoders and sinks.
 */
export class Worker<T> {
  private readonly runner: ConsumerRunner<T>;
  private readonly health: HealthServer;
  private fatalError: Error | undefined;
  private fatalListeners: Array<(e: Error) => void> = [];
  metricsPort: number | undefined;

  constructor(private readonly options: WorkerOptions<T>) {
    const { kafka, worker, logger, registry } = options;
    const client = createKafka({ brokers: kafka.brokers, clientId: kafka.clientId, logger });
    this.kafkaClient = client;
    this.runner = new ConsumerRunner<T>({
      kafka: client,
      topic: options.topic,
      dlqTopic: options.dlqTopic,
      group: options.group,
      workerId: worker.workerId,
      decoder: options.decoder,
      sinks: options.sinks,
      limits: { maxRecords: worker.batchMaxRecords, maxBytes: worker.batchMaxBytes, maxAgeMs: worker.batchMaxAgeMs },
      flushWhenCaughtUp: worker.flushWhenCaughtUp,
      maxInFlightBytes: worker.maxInFlightBytes,
      partitionsConcurrency: worker.partitionsConcurrency,
      sessionTimeoutMs: worker.sessionTimeoutMs,
      rebalanceTimeoutMs: worker.rebalanceTimeoutMs,
      heartbeatIntervalMs: worker.heartbeatIntervalMs,
      retryMaxDelayMs: worker.retryMaxDelayMs,
      shutdownTimeoutMs: worker.shutdownTimeoutMs,
      quarantineDir: worker.quarantineDir,
      logger,
      metrics: new WorkerMetrics(registry),
      onFatal: (e) => {
        this.fatalError ??= e;
        for (const listener of this.fatalListeners) listener(e);
      },
    });
    this.health = new HealthServer(worker.metricsPort, registry, {
      healthy: () => this.runner.healthy(),
      ready: () => this.runner.ready(),
      details: () => this.runner.details(),
      problems: () => this.runner.stuckPartitions(),
    });
  }

  private readonly kafkaClient: ReturnType<typeof createKafka>;

  onFatal(listener: (e: Error) => void): void {
    this.fatalListeners.push(listener);
    if (this.fatalError) listener(this.fatalError);
  }

  ready(): boolean {
    return this.runner.ready();
  }

  async start(): Promise<void> {
    const { options } = this;
    this.metricsPort = await this.health.start();
    const admin = this.kafkaClient.admin();
    await admin.connect();
    let dlqMaxMessageBytes: number;
    try {
      const partitions = options.kafka.topicPartitions;
      const created = await ensureTopics(admin, [{ topic: options.topic, numPartitions: partitions }]);
      // A dead letter is the source record plus reason headers: the dead-letter topic spanledger
      // creates takes records as large as the source topic does, with room for the headers.
      const sourceMaxMessageBytes = await topicMaxMessageBytes(admin, options.topic);
      const dlqConfig = [{ name: 'max.message.bytes', value: String(sourceMaxMessageBytes + DLQ_HEADER_ROOM_BYTES) }];
      created.push(...(await ensureTopics(admin, [{ topic: options.dlqTopic, numPartitions: partitions, configEntries: dlqConfig }])));
      if (created.length > 0) options.logger.info({ topics: created, partitions }, 'created missing topics');
      dlqMaxMessageBytes = await topicMaxMessageBytes(admin, options.dlqTopic);
      if (dlqMaxMessageBytes < sourceMaxMessageBytes) {
        options.logger.warn(
          { dlqTopic: options.dlqTopic, dlqMaxMessageBytes, topic: options.topic, sourceMaxMessageBytes },
          'the dead-letter topic takes smaller records than the source topic: dead letters of the largest records will be quarantined (raise its max.message.bytes)',
        );
      }
    } finally {
      await admin.disconnect();
    }
    await this.runner.start(dlqMaxMessageBytes);
    options.logger.info(
      { topic: options.topic, group: options.group, dlqTopic: options.dlqTopic, metricsPort: this.metricsPort, sinks: options.sinks.map((s) => s.name) },
      'worker started',
    );
  }

  /** Resolves true if everything buffered was flushed and committed within the shutdown timeout. */
  async stop(): Promise<boolean> {
    const clean = await this.runner.stop(this.options.worker.shutdownTimeoutMs);
    await this.health.close();
    return clean;
  }
}
