import { describe, expect, it } from 'vitest';
import { envValues, resolveSettings } from '../../../src/config/load.js';
import { checkKafkaClientSettings, kafkaSettings, signalSettings, signalWorkerSettings, workerSettings } from '../../../src/config/settings.js';
import { ConfigError } from '../../../src/errors.js';

describe('settings', () => {
  it('uses defaults, then the config file, then the environment', () => {
    const none = resolveSettings(kafkaSettings, envValues(kafkaSettings, {}), {});
    expect(none.brokers).toEqual(['127.0.0.1:9092']);
    const file = resolveSettings(kafkaSettings, envValues(kafkaSettings, {}), { KAFKA_BROKERS: 'a:1,b:2' });
    expect(file.brokers).toEqual(['a:1', 'b:2']);
    const env = resolveSettings(kafkaSettings, envValues(kafkaSettings, { KAFKA_BROKERS: 'c:3' }), { KAFKA_BROKERS: 'a:1' });
    expect(env.brokers).toEqual(['c:3']);
  });

  it('fails with one line naming the variable and the rule', () => {
    let error: unknown;
    try {
      resolveSettings(workerSettings, envValues(workerSettings, { BATCH_MAX_RECORDS: 'lots' }), {});
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(/^invalid configuration: BATCH_MAX_RECORDS="lots": /);
    expect((error as Error).message).not.toContain('\n');
    expect(() => resolveSettings(kafkaSettings, envValues(kafkaSettings, { KAFKA_BROKERS: 'nohost' }), {})).toThrow(/host:port/);
  });

  it('checks the DuckDB instance settings: a memory size, positive thread and connection counts', () => {
    const defaults = resolveSettings(signalSettings, envValues(signalSettings, {}), {});
    expect(defaults).toMatchObject({ duckdbMemoryLimit: '256MB', duckdbThreads: 1, duckdbConnections: 4, duckdbMaxOpenTenants: 1024 });
    expect(resolveSettings(signalSettings, envValues(signalSettings, { DUCKDB_MEMORY_LIMIT: '1.5GiB' }), {}).duckdbMemoryLimit).toBe('1.5GiB');
    expect(() => resolveSettings(signalSettings, envValues(signalSettings, { DUCKDB_MEMORY_LIMIT: 'lots' }), {})).toThrow(/^invalid configuration: DUCKDB_MEMORY_LIMIT="lots": .*256MB/);
    expect(() => resolveSettings(signalSettings, envValues(signalSettings, { DUCKDB_THREADS: '0' }), {})).toThrow(/DUCKDB_THREADS/);
    expect(() => resolveSettings(signalSettings, envValues(signalSettings, { DUCKDB_CONNECTIONS: '-1' }), {})).toThrow(/DUCKDB_CONNECTIONS/);
  });

  it('gives signal workers their own batching defaults, which the environment still overrides', () => {
    const shared = resolveSettings(workerSettings, envValues(workerSettings, {}), {});
    const signals = resolveSettings(signalWorkerSettings, envValues(signalWorkerSettings, {}), {});
    expect(shared).toMatchObject({ batchMaxRecords: 1000, maxInFlightBytes: 16 * 2 ** 20 });
    expect(signals).toMatchObject({ batchMaxRecords: 10_000, maxInFlightBytes: 64 * 2 ** 20, batchMaxAgeMs: shared.batchMaxAgeMs });
    expect(resolveSettings(signalWorkerSettings, envValues(signalWorkerSettings, { BATCH_MAX_RECORDS: '500' }), {}).batchMaxRecords).toBe(500);
  });

  it('takes STATUS_ADVERTISE_ADDRESS as host:port or empty (then the worker advertises its host name and bound port)', () => {
    expect(resolveSettings(workerSettings, envValues(workerSettings, {}), {}).statusAdvertiseAddress).toBe('');
    for (const address of ['worker-3.svc:9464', '10.0.0.7:9464', '[fd00::7]:9464']) {
      expect(resolveSettings(workerSettings, envValues(workerSettings, { STATUS_ADVERTISE_ADDRESS: address }), {}).statusAdvertiseAddress).toBe(address);
    }
    expect(() => resolveSettings(workerSettings, envValues(workerSettings, { STATUS_ADVERTISE_ADDRESS: 'worker-3' }), {})).toThrow(/^invalid configuration: STATUS_ADVERTISE_ADDRESS="worker-3": must be host:port/);
  });

  it('checks the backpressure marks against each other with one line', () => {
    const defaults = resolveSettings(workerSettings, envValues(workerSettings, {}), {});
    expect(defaults).toMatchObject({ backpressurePauseFraction: 0.9, backpressureResumeFraction: 0.5, breakerFailureRate: 0.5, breakerHalfOpenAfterMs: 30_000 });
    expect(() => resolveSettings(workerSettings, envValues(workerSettings, { BACKPRESSURE_RESUME_FRACTION: '0.9', BACKPRESSURE_PAUSE_FRACTION: '0.8' }), {})).toThrow(
      /^invalid configuration: BACKPRESSURE_RESUME_FRACTION=0.9 must be below BACKPRESSURE_PAUSE_FRACTION=0.8$/,
    );
    expect(() => resolveSettings(workerSettings, envValues(workerSettings, { BREAKER_FAILURE_RATE: '1' }), {})).toThrow(/^invalid configuration: BREAKER_FAILURE_RATE="1": /);
  });

  it('picks the Kafka client, its rebalance protocol and static membership, each failing with one line', () => {
    const kafka = (env: Record<string, string>) => resolveSettings(kafkaSettings, envValues(kafkaSettings, env), {});
    const worker = (env: Record<string, string>) => resolveSettings(workerSettings, envValues(workerSettings, env), {});
    expect(kafka({}).client).toBe('platformatic');
    expect(worker({})).toMatchObject({ rebalanceProtocol: 'cooperative', groupInstanceId: '' });
    expect(kafka({ KAFKA_CLIENT: 'kafkajs' }).client).toBe('kafkajs');
    expect(worker({ KAFKA_REBALANCE_PROTOCOL: 'eager', KAFKA_GROUP_INSTANCE_ID: 'spanledger-spans-0' })).toMatchObject({ rebalanceProtocol: 'eager', groupInstanceId: 'spanledger-spans-0' });
    expect(() => kafka({ KAFKA_CLIENT: 'rdkafka' })).toThrow(/^invalid configuration: KAFKA_CLIENT="rdkafka": must be one of platformatic, kafkajs$/);
    expect(() => worker({ KAFKA_REBALANCE_PROTOCOL: 'sticky' })).toThrow(/^invalid configuration: KAFKA_REBALANCE_PROTOCOL="sticky": must be one of cooperative, eager$/);
    expect(() => worker({ KAFKA_GROUP_INSTANCE_ID: 'a b' })).toThrow(/^invalid configuration: KAFKA_GROUP_INSTANCE_ID="a b": /);
    expect(() => checkKafkaClientSettings(kafka({ KAFKA_CLIENT: 'kafkajs' }), worker({ KAFKA_GROUP_INSTANCE_ID: 'pod-0' }))).toThrow(ConfigError);
    expect(() => checkKafkaClientSettings(kafka({ KAFKA_CLIENT: 'kafkajs' }), worker({ KAFKA_GROUP_INSTANCE_ID: 'pod-0' }))).toThrow(
      /^invalid configuration: KAFKA_GROUP_INSTANCE_ID=pod-0 needs KAFKA_CLIENT=platformatic: kafkajs has no static membership/,
    );
    expect(() => checkKafkaClientSettings(kafka({}), worker({ KAFKA_GROUP_INSTANCE_ID: 'pod-0' }))).not.toThrow();
  });
});
