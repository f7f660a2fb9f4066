import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { kafkaSettings, Parsed, ruleSettings, ruleWorkerSettings, signalSettings, spanSettings, workerSettings } from '../config/settings.js';
import type { KafkaFacade } from '../kafka/facade.js';
import { CheckpointStore } from '../kafka/checkpoint-store.js';
import { rulesTopicFeed } from '../kafka/rules-feed.js';
import { KafkaSignalPublisher } from '../kafka/signal-publisher.js';
import { SpanDecoder, type DecodedSpan } from '../model/decode.js';
import { RuleWorkerMetrics } from '../rules/rule-metrics.js';
import { RuleBook } from '../rules/rule-book.js';
import { RuleProcessor } from '../rules/rule-processor.js';
import { ruleStageTopicNeeds } from './topic-needs.js';
import { Worker } from './worker.js';

export interface RuleWorkerConfig {
  kafka: Parsed<typeof kafkaSettings>;
  worker: Parsed<typeof workerSettings>;
  spans: Pick<Parsed<typeof spanSettings>, 'topic' | 'encoding' | 'tenantAttribute'>;
  rules: Parsed<typeof ruleSettings>;
  ruleWorker: Parsed<typeof ruleWorkerSettings>;
  signals: Pick<Parsed<typeof signalSettings>, 'topic'>;
}

/**
 * How often open traces are checked against the wall clock (a partition that receives nothing
 * closes them after TRACE_IDLE_MS): a quarter of the idle time, between 50 ms and 1 s, so that the
 * fallback adds at most a quarter to the idle time.
 */
export function traceTickMs(traceIdleMs: number): number {
  return Math.max(50, Math.min(1000, Math.floor(traceIdleMs / 4)));
}

/**
 * Rule worker: spans topic (its own group) → traces per tenant → the tenant's rules → one signal
 * per violation on the signals topic. Decodes spans exactly as the span worker does. The rule
 * stage's stores (signals producer, checkpoint topic, rules topic) use the worker's one Kafka
 * facade, which the worker makes in start(): the stage is built there (createStages).
 */
export function createRuleWorker(config: RuleWorkerConfig, logger: Logger, registry: Registry): Worker<DecodedSpan> {
  const { ruleWorker } = config;
  const decoderOptions = { encoding: config.spans.encoding, tenantAttribute: config.spans.tenantAttribute, withDay: false };
  const metrics = new RuleWorkerMetrics(registry);
  let processor: RuleProcessor | undefined;
  const createProcessor = (kafka: KafkaFacade): RuleProcessor =>
    new RuleProcessor({
      signalsTopic: config.signals.topic,
      signals: new KafkaSignalPublisher(kafka),
      checkpoints: new CheckpointStore(kafka, { topic: ruleWorker.checkpointTopic, group: ruleWorker.group, logger }),
      ruleBook: new RuleBook({ feed: rulesTopicFeed(kafka, { topic: config.rules.topic, logger }), logger, registry }),
      limits: { idleMs: ruleWorker.traceIdleMs, maxAgeMs: ruleWorker.traceMaxAgeMs, maxOpenTraces: ruleWorker.maxOpenTraces, maxOpenTraceBytes: ruleWorker.maxOpenTraceBytes, closedMemory: ruleWorker.closedTraceMemory },
      checkpointIntervalMs: ruleWorker.checkpointIntervalMs,
      logger,
      metrics,
    });
  return new Worker<DecodedSpan>({
    role: 'rules',
    kafka: config.kafka,
    worker: config.worker,
    topic: config.spans.topic,
    dlqTopic: ruleWorker.dlqTopic,
    group: ruleWorker.group,
    decoder: new SpanDecoder(config.worker.maxMessageBytes, decoderOptions),
    decoderSpec: { kind: 'spans', maxMessageBytes: config.worker.maxMessageBytes, options: decoderOptions },
    // Ensured by the worker at start, with its own topics (kafka/topics.ts).
    topics: ruleStageTopicNeeds({ signalsTopic: config.signals.topic, rulesTopic: config.rules.topic, checkpointTopic: ruleWorker.checkpointTopic }, config.kafka.topicPartitions),
    createStages: (kafka) => {
      processor = createProcessor(kafka);
      return { processor, tickIntervalMs: traceTickMs(ruleWorker.traceIdleMs) };
    },
    // Before start() made the stage, nothing is open.
    openTraces: () => processor?.openTraces ?? 0,
    logger,
    registry,
  });
}

