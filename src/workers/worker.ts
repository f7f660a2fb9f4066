import os from 'node:os';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { checkKafkaClientSettings, type Parsed } from '../config/settings.js';
import type { kafkaSettings, workerSettings } from '../config/settings.js';
import { createKafkaFacade } from '../kafka/client.js';
import type { GroupConsumerOptions, KafkaFacade } from '../kafka/facade.js';
import { ensureTopics, type TopicNeed } from '../kafka/topics.js';
import { DeadLetterProducer } from '../kafka/dead-letter.js';
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
import { pipelineResources, ResourceStack, type PipelineParts } from './resource-stack.js';
import { workerTopicNeeds } from './topic-needs.js';
import { countGroup, GroupWatch } from './group-watch.js';

/**
 * The stages built in start() with the worker's own Kafka facade (made there, see Worker): for a
 * stage whose stores are on Kafka too (the rule worker's producer, checkpoints and rules table).
 */
export interface StagesOfClient<T> {
  createStages: (kafka: KafkaFacade) => PipelineStages<T>;
  sinks?: undefined;
  processor?: undefined;
}

/** `sinks` (span and signal workers), a `processor` with its `tickIntervalMs`, or `createStages` (rule worker). */
export type WorkerOptions<T> = (PipelineStages<T> | StagesOfClient<T>) & {
  role: WorkerRole;
  kafka: Parsed<typeof kafkaSettings>;
  worker: Parsed<typeof workerSettings>;
  /** PipelineOptions.caughtUpFlushIntervalMs (archive workers: one cut on catching up per cycle age). */
  caughtUpFlushIntervalMs?: number;
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
  /** Topics the worker's stages read or write besides its source and dead-letter topics, ensured with them at start. */
  topics?: TopicNeed[];
};

/** The group consumer a worker of these settings runs (also what bench/noop-consumer.mjs measures). */
export function groupConsumerOptions(group: string, worker: Parsed<typeof workerSettings>): GroupConsumerOptions {
  return {
    group,
    sessionTimeoutMs: worker.sessionTimeoutMs,
    rebalanceTimeoutMs: worker.rebalanceTimeoutMs,
    heartbeatIntervalMs: worker.heartbeatIntervalMs,
    maxInFlightBytes: worker.maxInFlightBytes,
    partitionsConcurrency: worker.partitionsConcurrency,
    rebalanceProtocol: worker.rebalanceProtocol,
    ...(worker.groupInstanceId === '' ? {} : { groupInstanceId: worker.groupInstanceId }),
  };
}

/**
 * A consumer worker with its lifecycle: start (metrics server, topics, group), stop (flush,
 * commit, leave). Span and signal workers are this class with different decoders and sinks.
 *
 * The worker owns every resource it runs on: it makes them, starts them in order (health server,
 * status sampler, dead-letter producer, sinks or processor, then the pipeline, which joins the
 * group) and stops them in reverse order (resource-stack.ts).
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
  /** Everything this worker started, stopped in reverse order. */
  private readonly resources: ResourceStack;
  private stopping: Promise<boolean> | undefined;
  /** The pipeline's stop result (true until it stopped: a worker stopped before its pipeline started has nothing to lose). */
  private clean = true;
  private fatalListeners: Array<(e: Error) => void> = [];
  metricsPort: number | undefined;
  /** host:port of /status as advertised in the Kafka client id (known once started). */
  statusAddress: string | undefined;

  constructor(private readonly options: WorkerOptions<T>) {
    const { worker, registry } = options;
    checkKafkaClientSettings(options.kafka, worker);
    this.metrics = new WorkerMetrics(registry);
    this.resources = new ResourceStack(options.logger);
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

  private stagesFor(client: KafkaFacade): PipelineStages<T> {
    const { options } = this;
    if ('createStages' in options) return options.createStages(client);
    return options.processor === undefined ? { sinks: options.sinks } : { processor: options.processor, tickIntervalMs: options.tickIntervalMs };
  }

  /** The worker's parts on the Kafka client: made here, started and stopped by start() and stop(). */
  private createPipeline(client: KafkaFacade, stages: PipelineStages<T>): Omit<PipelineParts<T>, 'dlqMaxMessageBytes' | 'onPipelineStopped'> & { groupWatch: GroupWatch } {
    const { options, metrics } = this;
    const { worker, logger } = options;
    const quarantine = new Quarantine(worker.quarantineDir, (letters, refusal) => {
      for (const l of letters) metrics.quarantined.inc({ topic: options.topic, reason: l.error.errorClass });
      logger.error(
        { count: letters.length, refusal, dlqTopic: options.dlqTopic, dir: worker.quarantineDir, first: { partition: letters[0]!.partition, offset: letters[0]!.source.offset.toString() } },
        'dead-letter topic refused dead letters for good; quarantined them on disk and going on',
      );
    });
    const deadLetters = new DeadLetterProducer(client, options.dlqTopic, { group: options.group, workerId: worker.workerId }, quarantine);
    const decodePool = worker.decodeThreads > 0 && options.decoderSpec !== undefined ? new ThreadDecodePool<T>(options.decoderSpec, worker.decodeThreads) : undefined;
    const consumer = client.groupConsumer(groupConsumerOptions(options.group, worker));
    const { topic, group } = options;
    const groupWatch = new GroupWatch({ consumer, topic, group, logger, sessionTimeoutMs: worker.sessionTimeoutMs, countGroup: () => countGroup(client.admin(), topic, group) });
    const pipeline = new Pipeline<T>({
      ...stages,
      consumer,
      deadLetters,
      topic: options.topic,
      decoder: options.decoder,
      decodePool,
      limits: { maxRecords: worker.batchMaxRecords, maxBytes: worker.batchMaxBytes, maxAgeMs: worker.batchMaxAgeMs },
      flushWhenCaughtUp: worker.flushWhenCaughtUp,
      ...(options.caughtUpFlushIntervalMs === undefined ? {} : { caughtUpFlushIntervalMs: options.caughtUpFlushIntervalMs }),
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
    return { deadLetters, stages, decodePool, pipeline, groupWatch, shutdownTimeoutMs: worker.shutdownTimeoutMs };
  }

  /** Every store's circuit breaker (state, since, next probe of an open one): for status pages. */
  breakerStates(): BreakerStatus[] {
    return this.runner?.breakerStates() ?? [];
  }

  async start(): Promise<void> {
    const { options, resources } = this;
    await resources.start({
      name: 'health server',
      start: async () => {
        this.metricsPort = await this.health.start();
      },
      stop: () => this.health.close(),
      stopFailed: { msg: 'health server close failed' },
    });
    this.statusAddress = options.worker.statusAdvertiseAddress || `${os.hostname()}:${this.metricsPort}`;
    const client = await createKafkaFacade({ client: options.kafka.client, brokers: options.kafka.brokers, clientId: advertisingClientId(options.kafka.clientId, this.statusAddress), logger: options.logger });
    await resources.start({ name: 'status sampler', start: async () => this.status.start(), stop: async () => this.status.stop(), stopFailed: { msg: 'status sampler stop failed' } });
    const partitions = options.kafka.topicPartitions;
    const topics = await ensureTopics(client, workerTopicNeeds(options, partitions), options.logger);
    const dlqMaxMessageBytes = topics.maxMessageBytes.get(options.dlqTopic)!;
    // Made only now, so that nothing is made that start() does not also start (and stop() stop).
    const stages = this.stagesFor(client);
    const parts = this.createPipeline(client, stages);
    this.runner = parts.pipeline;
    const onPipelineStopped = (clean: boolean) => {
      this.clean = clean;
    };
    const ordered = pipelineResources({ ...parts, dlqMaxMessageBytes, onPipelineStopped });
    // The group watch starts just before the pipeline, which joins the group (its wait is the join's).
    ordered.splice(-1, 0, { name: 'group watch', start: async () => parts.groupWatch.start(), stop: async () => parts.groupWatch.stop(), stopFailed: { msg: 'group watch stop failed' } });
    for (const resource of ordered) await resources.start(resource);
    options.logger.info(
      {
        topic: options.topic,
        group: options.group,
        dlqTopic: options.dlqTopic,
        metricsPort: this.metricsPort,
        statusAddress: this.statusAddress,
        kafkaClient: client.kind,
        ...(stages.processor === undefined ? { sinks: stages.sinks.map((s) => s.name) } : { processor: stages.processor.name }),
      },
      'worker started',
    );
  }

  /**
   * Stops everything start() started, in reverse order: the pipeline (stop taking records, flush,
   * commit, leave the group), the decode threads, the processor or sinks, the dead-letter
   * producer, the status sampler, the health server. A part that fails to stop is logged and the
   * others still stop. Idempotent: every call gets the first call's answer. Resolves true if
   * everything buffered was flushed and committed within the shutdown timeout.
   */
  stop(): Promise<boolean> {
    this.stopping ??= this.resources.stopAll().then(() => this.clean);
    return this.stopping;
  }
}
