/**
 * A signal worker whose TigerBeetle client is the in-process stand-in (test/support/tigerbeetle-standin.ts),
 * for tests that need a running signal worker (its /metrics, its log) on a machine without
 * TigerBeetle. Everything else is the real worker as `spanledger worker signals` builds it, from
 * the same environment variables: Kafka, DuckDB, metrics, graceful stop.
 *
 *   vite-node signal-worker-standin.child.ts      (settings from the environment)
 */
import { kafkaSettings, signalSettings, workerSettings } from '../../src/config/settings.js';
import { envValues, resolveSettings } from '../../src/config/load.js';
import { runWorker } from '../../src/cli/run-worker.js';
import { createLogger } from '../../src/observability/logger.js';
import { createRegistry } from '../../src/observability/metrics.js';
import { createSignalWorker } from '../../src/workers/signal-worker.js';
import { StandInCluster } from '../support/tigerbeetle-standin.js';

const config = {
  kafka: resolveSettings(kafkaSettings, envValues(kafkaSettings), {}),
  worker: resolveSettings(workerSettings, envValues(workerSettings), {}),
  signals: resolveSettings(signalSettings, envValues(signalSettings), {}),
};
const logger = createLogger(config.worker.logLevel, { worker: config.worker.workerId, role: 'signals' });
await runWorker(createSignalWorker(config, logger, createRegistry(), { tigerBeetleClientFactory: new StandInCluster().factory }), logger);
