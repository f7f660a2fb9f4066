import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { kafkaSettings, Parsed, signalSettings, workerSettings } from '../config/settings.js';
import { SignalDecoder } from '../model/decode.js';
import type { Signal } from '../model/signal.js';
import { duckDbSinkConfig } from '../sinks/duckdb/config.js';
import { DuckDbSignalSink } from '../sinks/duckdb/duckdb-sink.js';
import { TigerBeetleSignalSink, type TigerBeetleClientFactory } from '../sinks/tigerbeetle/tigerbeetle-sink.js';
import { Worker } from './worker.js';

export interface SignalWorkerConfig {
  kafka: Parsed<typeof kafkaSettings>;
  worker: Parsed<typeof workerSettings>;
  signals: Parsed<typeof signalSettings>;
}

export interface SignalWorkerOptions {
  /** How the TigerBeetle sink makes its client (tigerbeetle-node's createClient by default; tests hand in a stand-in cluster's). */
  tigerBeetleClientFactory?: TigerBeetleClientFactory;
}

/** TB_ADDRESS is a list of ports or host:port, as the TigerBeetle CLI takes it ("3000" → 127.0.0.1:3000). */
export function tigerBeetleAddresses(spec: string): string[] {
  return spec
    .split(',')
    .map((a) => a.trim())
    .filter((a) => a.length > 0)
    .map((a) => (/^\d+$/.test(a) ? `127.0.0.1:${a}` : a));
}

export function createDuckDbSink(signals: SignalWorkerConfig['signals'], logger: Logger, registry: Registry): DuckDbSignalSink {
  return new DuckDbSignalSink(duckDbSinkConfig(signals), { logger, registry });
}

export function createTigerBeetleSink(signals: SignalWorkerConfig['signals'], logger: Logger, registry: Registry, clientFactory?: TigerBeetleClientFactory): TigerBeetleSignalSink {
  return new TigerBeetleSignalSink(
    {
      clusterId: signals.tbClusterId,
      addresses: tigerBeetleAddresses(signals.tbAddress),
      maxBatch: signals.tbMaxBatch,
      ledger: signals.tbLedger,
      requestTimeoutMs: signals.tbRequestTimeoutMs,
    },
    { logger, registry },
    { clientFactory },
  );
}

/**
 * Signal worker: `signals` topic → DuckDB row, then TigerBeetle transfer, per signal. DuckDB goes
 * first: it checks a row's content against what it stored under the same id, so a conflicting
 * signal is refused before the ledger counts it. A signal either store refuses is dead-lettered
 * and not given to the next store. `tigerBeetle` lets a test hand in a TigerBeetle client factory.
 */
export function createSignalWorker(config: SignalWorkerConfig, logger: Logger, registry: Registry, options: SignalWorkerOptions = {}): Worker<Signal> {
  return new Worker<Signal>({
    role: 'signals',
    kafka: config.kafka,
    worker: config.worker,
    topic: config.signals.topic,
    dlqTopic: config.signals.dlqTopic,
    group: config.signals.group,
    decoder: new SignalDecoder(config.worker.maxMessageBytes),
    decoderSpec: { kind: 'signals', maxMessageBytes: config.worker.maxMessageBytes },
    sinks: [createDuckDbSink(config.signals, logger, registry), createTigerBeetleSink(config.signals, logger, registry, options.tigerBeetleClientFactory)],
    logger,
    registry,
  });
}
