import { Kafka, logLevel as KafkaLogLevel, type LogEntry } from 'kafkajs';
// Registers the snappy, lz4 and zstd codecs with kafkajs before any client exists.
import '../codecs.js';
import type { Logger } from 'pino';
import type { KafkaFacadeOptions } from '../facade.js';
import { kafkajsLogLevel } from './log.js';

/** A kafkajs client whose own logs go through pino (warnings and errors only; retried start-up errors as warnings). */
export function createKafka(options: KafkaFacadeOptions): Kafka {
  const log: Logger = options.logger.child({ component: 'kafkajs' });
  return new Kafka({
    clientId: options.clientId,
    brokers: options.brokers,
    logLevel: KafkaLogLevel.WARN,
    retry: { initialRetryTime: 100, retries: 8 },
    logCreator:
      () =>
      ({ level, log: entry }: LogEntry) => {
        const { message, ...rest } = entry;
        log[kafkajsLogLevel(level, entry)](rest, message);
      },
  });
}
