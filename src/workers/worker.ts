import os from 'node:os';
import type { Kafka } from 'kafkajs';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Parsed } from '../config/settings.js';
import type { kafkaSettings, workerSettings } from '../config/settings.js';
import { createKafka, ensureTopics, topicMaxMessageBytes } from '../kafka/client.js';
import { DeadLetterProducer } from '../kafka/dead-letter.js';
import { KafkaJsGroupConsumer } from '../kafka/kafkajs-consumer.js';
import { Quarantine } from '../kafka/quarantine.js';
import type { RecordDecoder } from '../model/decode.js';
import type { DecoderSpec } from '../model/decode-thread.js';
import { ThreadDecodePool } from '../pipeline/decode-pool.js';
import { HealthServer } from '../observability/health-server.js';
import { WorkerStatus, type WorkerRole } from '../observability/worker-status.js';
import { advertisingClientId } from '../kafka/status-address.js';
import { WorkerMetrics } from '../observability/metrics.js';
import type { BreakerStatus } from '../pipeline/breakers.js';
import { Pipeline } from '../pipeline/pipeline.js';
import type { PipelineStages } from '../pipeline/types.js';

/** Room for the reason headers a dead letter adds to its record. */
export const DLQ_HEADER_ROOM_BYTES = 64 * 1024;

/**
 * The stages built in start() with the worker's own Kafka client (made there, see Worker): for a
 * stage whose stores are on Kafka too (the rule worker's producer, checkpoints and rules table).
 */
export interface StagesOfClient<T> {
  createStages: (client: Kafka) => PipelineStages<T>;
  sinks?: undefined;
  processor?: undefined;
}

/** `sinks` (span and signal workers), a `processor` with its `tickIntervalMs`, or `createStages` (rule worker). */
export type WorkerOptions<T> = (PipelineStages<T> | StagesOfClient<T>) & {
  role: WorkerRole;
  kafka: Parsed<typeof kafkaSettings>;
  worker: Parsed<typeof workerSettings>;
  topic: string;
  dlqTopic: string;
  group: string;
  decoder: RecordDecoder<T>;
  /** How decode threads build the same decoder (DECODE_THREADS > 0); without it decoding stays on the main thread. */
  decoderSpec?: DecoderSpec;
  logger: Logger;
  registry: Registry;
  /** Rule workers: open traces held by the rule processor, for /status. */
  openTraces?: () => number;
};

/**
 * A consumer worker with its lifecycle: start (metrics server, topics, group), stop (flush,
 * commit, leave). Span and signal workers are this class with different decoders and sinks.
 *
 * The Kafka client and the pipeline are made in start(), after the metrics server has bound:
 * the client id advertises the /status address, whose port is known only then (METRICS_PORT=0).
 */
export class Worker<T> {
  private runner: Pipeline<T> | undefined;
  private readonly health: HealthServer;
  private readonly status: WorkerStatus;
  private readonly metrics: WorkerMetrics;
  private fatalError: Error | undefined;
  private fatalListeners: Array<(e: Error) => void> = [];
  metricsPort: number | undefined;
  /** host:port of /status as advertised in the Kafka client id (known once started). */
  statusAddress: string | undefined;

  constructor(private readonly options: WorkerOptions<T>) {
    const { worker, registry } = options;
    this.metrics = new WorkerMetrics(registry);
    this.status = new WorkerStatus({
      role: options.role,
      group: options.group,
      topic: options.topic,
      workerId: worker.workerId,
      address: () => this.statusAddress,
      snapshot: () => this.runner?.snapshot(),
      openTraces: options.openTraces,
      breakers: () => this.breakerStates(),
    });
    this.health = new HealthServer(worker.metricsPort, registry, {
      healthy: () => this.runner?.healthy() ?? true,
      ready: () => this.runner?.ready() ?? false,
      details: () => this.runner?.details() ?? [],
      problems: () => this.runner?.stuckPartitions() ?? [],
      degraded: () => this.runner?.degraded() ?? [],
      status: () => this.status.status(),
    });
  }

  onFatal(listener: (e: Error) => void): void {
    this.fatalListeners.push(listener);
    if (this.fatalError) listener(this.fatalError);
  }

  ready(): boolean {
    return this.runner?.ready() ?? false;
  }

  private stagesFor(client: Kafka): PipelineStages<T> {
    const { options } = this;
    if ('createStages' in options) return options.createStages(client);
    return options.processor === undefined ? { sinks: options.sinks } : { processor: options.processor, tickIntervalMs: options.tickIntervalMs };
  }

  private createPipeline(client: Kafka, stages: PipelineStages<T>): Pipeline<T> {
    const { options, metrics } = this;
    const { worker, logger } = options;
    const quarantine = new Quarantine(worker.quarantineDir, (letters, refusal) => {
      for (const l of letters) metrics.quarantined.inc({ topic: options.topic, reason: l.error.errorClass });
      logger.error(
        { count: letters.length, refusal, dlqTopic: options.dlqTopic, dir: worker.quarantineDir, first: { partition: letters[0]!.partition, offset: letters[0]!.source.offset.toString() } },
        'dead-letter topic refused dead letters for good; quarantined them on disk and going on',
      );
    });
    return new Pipeline<T>({
      ...stages,
      consumer: new KafkaJsGroupConsumer(client, {
        group: options.group,
        sessionTimeoutMs: worker.sessionTimeoutMs,
        rebalanceTimeoutMs: worker.rebalanceTimeoutMs,
        heartbeatIntervalMs: worker.heartbeatIntervalMs,
        maxInFlightBytes: worker.maxInFlightBytes,
        partitionsConcurrency: worker.partitionsConcurrency,
      }),
      deadLetters: new DeadLetterProducer(client, options.dlqTopic, { group: options.group, workerId: worker.workerId }, quarantine),
      topic: options.topic,
      decoder: options.decoder,
      decodePool: worker.decodeThreads > 0 && options.decoderSpec !== undefined ? new ThreadDecodePool<T>(options.decoderSpec, worker.decodeThreads) : undefined,
      limits: { maxRecords: worker.batchMaxRecords, maxBytes: worker.batchMaxBytes, maxAgeMs: worker.batchMaxAgeMs },
      flushWhenCaughtUp: worker.flushWhenCaughtUp,
      maxInFlightBytes: worker.maxInFlightBytes,
      backpressure: { pauseFraction: worker.backpressurePauseFraction, resumeFraction: worker.backpressureResumeFraction },
      breakers: { failureRate: worker.breakerFailureRate, windowMs: worker.breakerWindowMs, minCalls: worker.breakerMinCalls, halfOpenAfterMs: worker.breakerHalfOpenAfterMs },
      heartbeatIntervalMs: worker.heartbeatIntervalMs,
      retryMaxDelayMs: worker.retryMaxDelayMs,
      shutdownTimeoutMs: worker.shutdownTimeoutMs,
      logger,
      metrics,
      onFatal: (e) => {
        this.fatalError ??= e;
        for (const listener of this.fatalListeners) listener(e);
      },
    });
  }

  /** Every store's circuit breaker (state, since, next probe of an open one): for status pages. */
  breakerStates(): BreakerStatus[] {
    return this.runner?.breakerStates() ?? [];
  }

  async start(): Promise<void> {
    const { options } = this;
    this.metricsPort = await this.health.start();
    this.statusAddress = options.worker.statusAdvertiseAddress || `${os.hostname()}:${this.metricsPort}`;
    const client = createKafka({ brokers: options.kafka.brokers, clientId: advertisingClientId(options.kafka.clientId, this.statusAddress), logger: options.logger });
    const stages = this.stagesFor(client);
    const runner = this.createPipeline(client, stages);
    this.runner = runner;
    this.status.start();
    const admin = client.admin();
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
    await runner.start(dlqMaxMessageBytes);
    options.logger.info(
      {
        topic: options.topic,
        group: options.group,
        dlqTopic: options.dlqTopic,
        metricsPort: this.metricsPort,
        statusAddress: this.statusAddress,
        ...(stages.processor === undefined ? { sinks: stages.sinks.map((s) => s.name) } : { processor: stages.processor.name }),
      },
      'worker started',
    );
  }

  /** Resolves true if everything buffered was flushed and committed within the shutdown timeout. */
  async stop(): Promise<boolean> {
    const clean = (await this.runner?.stop(this.options.worker.shutdownTimeoutMs)) ?? true;
    this.status.stop();
    await this.health.close();
    return clean;
  }
}
