import type { Kafka } from 'kafkajs';
import type { Signal } from '../../src/model/signal.js';
import { createTopic, tempDir, uniqueName } from './harness.js';

/** Fresh topics, group and DuckDB folder of one signal-worker test, and the environment a worker finds them in. */
export interface SignalSetup {
  topic: string;
  dlqTopic: string;
  group: string;
  /** A new temporary folder: the caller removes it. */
  duckdbDir: string;
  env: Record<string, string>;
}

/** Creates the signals topic (`partitions`) and its dead-letter topic; `env` is added to (and overrides) the common worker settings. */
export async function signalSetup(kafka: Kafka, brokers: string, partitions: number, env: Record<string, string>): Promise<SignalSetup> {
  const topic = uniqueName('signals');
  const group = uniqueName('group');
  const duckdbDir = tempDir('duckdb');
  await createTopic(kafka, topic, partitions);
  await createTopic(kafka, `${topic}.dlq`, 1);
  return {
    topic,
    dlqTopic: `${topic}.dlq`,
    group,
    duckdbDir,
    env: {
      KAFKA_BROKERS: brokers,
      SIGNALS_TOPIC: topic,
      SIGNALS_DLQ_TOPIC: `${topic}.dlq`,
      SIGNALS_GROUP: group,
      DUCKDB_DIR: duckdbDir,
      KAFKA_SESSION_TIMEOUT_MS: '8000',
      KAFKA_REBALANCE_TIMEOUT_MS: '10000',
      KAFKA_HEARTBEAT_INTERVAL_MS: '1000',
      BATCH_MAX_AGE_MS: '200',
      ...env,
    },
  };
}

/** Produces signals keyed by tenant, JSON, acknowledged by all in-sync replicas. */
export async function produceSignals(kafka: Kafka, topic: string, signals: Signal[]): Promise<void> {
  const producer = kafka.producer();
  await producer.connect();
  try {
    for (let i = 0; i < signals.length; i += 1000) {
      await producer.send({ topic, acks: -1, messages: signals.slice(i, i + 1000).map((s) => ({ key: s.tenantId, value: JSON.stringify(s) })) });
    }
  } finally {
    await producer.disconnect();
  }
}
