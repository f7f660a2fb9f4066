import type { BaseOptions, RetryDelayGetter } from '@platformatic/kafka';
import type { Logger } from 'pino';
import type { KafkaFacadeOptions } from '../facade.js';

/** Longest wait between two tries of one operation. */
const MAX_RETRY_DELAY_MS = 2_000;
const FIRST_RETRY_DELAY_MS = 250;

/** The wait before try `attempt + 1` (attempt counts from 1): 250, 500, 1000, then 2000 ms. */
export const retryDelay: RetryDelayGetter = (_client, _operation, attempt) => Math.min(MAX_RETRY_DELAY_MS, FIRST_RETRY_DELAY_MS * 2 ** Math.max(0, attempt - 1));

/** Options every @platformatic/kafka client of spanledger shares. `role` tells the clients of one process apart in broker logs. */
export function platformaticBaseOptions(client: KafkaFacadeOptions, role: string): BaseOptions {
  return {
    clientId: `${client.clientId}-${role}`,
    bootstrapBrokers: client.brokers,
    // A request the broker does not answer within this fails (a TimeoutError, retried): a broker
    // that hangs costs at most this per try. `timeout` (how long the broker itself may wait, e.g.
    // for acks=all) keeps the client's default of 5 s, below it.
    requestTimeout: 10_000,
    connectTimeout: 5_000,
    retries: 5,
    retryDelay,
    autocreateTopics: false,
  };
}

/**
 * @platformatic/kafka has no logger hook: it writes debug output through the `debug` package and
 * emits events. The one worth an operator's eye is a failed connection to a broker (warn); the
 * failures of calls reach their callers as errors and are logged there.
 */
export function logClientEvents(client: { on(event: 'client:broker:failed', listener: (payload: { broker: { host: string; port: number } }) => void): unknown }, logger: Logger): void {
  const log = logger.child({ component: 'platformatic-kafka' });
  client.on('client:broker:failed', ({ broker }) => log.warn({ broker: `${broker.host}:${broker.port}` }, 'connection to a Kafka broker failed'));
}
