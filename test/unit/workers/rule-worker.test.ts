import pino from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it, vi } from 'vitest';
import { envValues, resolveSettings } from '../../../src/config/load.js';
import { kafkaSettings, ruleSettings, ruleWorkerSettings, signalSettings, spanSettings, workerSettings, type Settings } from '../../../src/config/settings.js';
import type { KafkaFacade } from '../../../src/kafka/facade.js';
import type { DecodedSpan } from '../../../src/model/decode.js';
import { RuleProcessor } from '../../../src/rules/rule-processor.js';
import { createRuleWorker, traceTickMs, type RuleWorkerConfig } from '../../../src/workers/rule-worker.js';
import type { WorkerOptions } from '../../../src/workers/worker.js';

/** Every Kafka facade made through createKafkaFacade (the worker makes its one in start(), not before). */
const clients = vi.hoisted(() => ({ made: 0 }));
vi.mock('../../../src/kafka/client.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../../src/kafka/client.js')>();
  return {
    ...original,
    createKafkaFacade: (...args: Parameters<typeof original.createKafkaFacade>) => {
      clients.made += 1;
      return original.createKafkaFacade(...args);
    },
  };
});

const defaults = <S extends Settings>(settings: S) => resolveSettings(settings, envValues(settings, {}), {});

function config(): RuleWorkerConfig {
  return {
    kafka: defaults(kafkaSettings),
    worker: defaults(workerSettings),
    spans: defaults(spanSettings),
    rules: defaults(ruleSettings),
    ruleWorker: defaults(ruleWorkerSettings),
    signals: { topic: defaults(signalSettings).topic },
  };
}

/** A facade that only counts what is made with it (nothing here connects). */
function countingClient(): { kafka: KafkaFacade; producers: number; admins: number } {
  const counts = { producers: 0, admins: 0 };
  const kafka = {
    kind: 'kafkajs',
    producer: () => {
      counts.producers += 1;
      return {};
    },
    admin: () => {
      counts.admins += 1;
      return {};
    },
    groupConsumer: () => {
      throw new Error('the rule stage makes its consumers in start()');
    },
  } as unknown as KafkaFacade;
  return Object.assign(counts, { kafka });
}

describe('createRuleWorker', () => {
  it('makes no Kafka client of its own: the rule stage is built with the worker\'s one client', () => {
    const settings = config();
    const worker = createRuleWorker(settings, pino({ level: 'silent' }), new Registry());
    expect(clients.made).toBe(0);

    const options = (worker as unknown as { options: WorkerOptions<DecodedSpan> }).options;
    expect(options.processor).toBeUndefined();
    expect(options.openTraces?.()).toBe(0);
    if (!('createStages' in options)) throw new Error('the rule worker builds its stage with the worker\'s client (createStages)');
    const client = countingClient();
    const stages = options.createStages(client.kafka);
    expect(stages.processor).toBeInstanceOf(RuleProcessor);
    expect(stages.tickIntervalMs).toBe(traceTickMs(settings.ruleWorker.traceIdleMs));
    // The signals producer and the checkpoint store's producer, both on the client given.
    expect(client.producers).toBe(2);
    expect(clients.made).toBe(0);
    expect(options.openTraces?.()).toBe(0);
  });
});
