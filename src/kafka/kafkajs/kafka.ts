import { Kafka, logLevel as KafkaLogLevel, type LogEntry } from 'kafkajs';
// Registers the snappy, lz4 and zstd codecs with kafkajs before any client exists.
import '../codecs.js';
import type { Logger } from 'pino';
import type { KafkaFacadeOptions } from '../facade.js';
import { kafkajsLogLevel } from './log.js';

/**
 * kafkajs' retry settings, every field given: with NODE_ENV=test (which vitest sets, and the
 * tests' workers inherit) kafkajs replaces the defaults of the fields left out with its own test
 * suite's (at most 1 s between tries, ×1.5), so a worker under test gave up in ~1-4 s where a
 * deployed one waits ~25 s. Set in full, a worker under test retries as a deployed one does.
 *
 * The client's (admin calls; producers override the count and the longest wait): 8 tries after the
 * first, 0.1 s doubling, about 25 s in all.
 */
export const CLIENT_RETRY = { initialRetryTime: 100, maxRetryTime: 30_000, multiplier: 2, factor: 0.2, retries: 8 } as const;

/**
 * A group consumer's: 17 tries after the first, 0.1 s doubling to at most 5 s between tries, about
 * 60 s in all. A kafkajs consumer whose retries run out crashes and is restarted under a new member
 * id, while the old id keeps its partitions until its session times out (every rebalance until
 * then waits for it). kafkajs' own default for consumers (5 tries, ~3 s; ~1.3 s under test) ran
 * out while a broker was down (ECONNREFUSED) or a coordinator was loading: seen as crashes on
 * every broker event of the 3-broker tests. 60 s outlasts a broker's fencing after kill -9
 * (broker.session.timeout.ms, 9 s), the election of new leaders and a coordinator's load.
 */
export const CONSUMER_RETRY = { initialRetryTime: 100, maxRetryTime: 5_000, multiplier: 2, factor: 0.2, retries: 17 } as const;

/**
 * A 'bounded' producer's client (the facade's promise: a send gives up within about 5 s, and the
 * pipeline's own retry loop, visible in metrics and /status, takes over). kafkajs connects a
 * producer's cluster with the client's retry settings, not the producer's, so an unreachable
 * cluster would hold a bounded send for CLIENT_RETRY's ~25 s: 5 tries after the first, 0.1 s
 * doubling, about 3 s.
 */
export const BOUNDED_RETRY = { initialRetryTime: 100, maxRetryTime: 5_000, multiplier: 2, factor: 0.2, retries: 5 } as const;

/** A kafkajs client whose own logs go through pino (warnings and errors only; retried start-up errors as warnings). */
export function createKafka(options: KafkaFacadeOptions, retry: typeof CLIENT_RETRY | typeof BOUNDED_RETRY = CLIENT_RETRY): Kafka {
  const log: Logger = options.logger.child({ component: 'kafkajs' });
  return new Kafka({
    clientId: options.clientId,
    brokers: options.brokers,
    logLevel: KafkaLogLevel.WARN,
    retry,
    logCreator:
      () =>
      ({ level, log: entry }: LogEntry) => {
        const { message, ...rest } = entry;
        log[kafkajsLogLevel(level, entry)](rest, message);
      },
  });
}
