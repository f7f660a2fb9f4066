import { createRequire } from 'node:module';
import { Writable } from 'node:stream';
import { logLevel } from 'kafkajs';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { createKafka } from '../../../src/kafka/kafkajs/kafka.js';
import { kafkajsLogLevel } from '../../../src/kafka/kafkajs/log.js';

// kafkajs' own protocol error table, so the samples carry exactly the texts kafkajs logs.
const { errorCodes } = createRequire(import.meta.url)('kafkajs/src/protocol/error.js') as {
  errorCodes: Array<{ type: string; code: number; retriable: boolean; message: string }>;
};
function protocolMessage(type: string): string {
  const found = errorCodes.find((e) => e.type === type);
  if (!found) throw new Error(`kafkajs has no protocol error ${type}`);
  return found.message;
}

const entry = (message: string, extra: Record<string, unknown> = {}) => ({ timestamp: '2026-01-01T00:00:00.000Z', logger: 'kafkajs', message, namespace: 'x', ...extra });

describe('kafkajs log levels', () => {
  it.each(['GROUP_LOAD_IN_PROGRESS', 'LEADER_NOT_AVAILABLE', 'NOT_COORDINATOR_FOR_GROUP', 'GROUP_COORDINATOR_NOT_AVAILABLE', 'NOT_LEADER_FOR_PARTITION', 'UNKNOWN_TOPIC_OR_PARTITION'])(
    'logs a retried %s at warn, wherever kafkajs puts its text',
    (type) => {
      const text = protocolMessage(type);
      // network/connection.js: the response error in an `error` field
      expect(kafkajsLogLevel(logLevel.ERROR, entry('Response Metadata(key: 3, version: 6)', { error: text, correlationId: 7, size: 90 }))).toBe('warn');
      // producer/sendMessages.js and cluster/brokerPool.js: in the message, with the retry's count and time
      expect(kafkajsLogLevel(logLevel.ERROR, entry(`Failed to send messages: ${text}`, { retryCount: 0, retryTime: 312 }))).toBe('warn');
      // consumer/index.js: a crash on a retriable error is followed by a restart
      expect(kafkajsLogLevel(logLevel.ERROR, entry(`Crash: KafkaJSNumberOfRetriesExceeded: ${text}`, { groupId: 'g', retryCount: 5, stack: '...' }))).toBe('warn');
    },
  );

  it('logs announced retries and consumer restarts at warn', () => {
    expect(kafkajsLogLevel(logLevel.ERROR, entry('Restarting the consumer in 3000ms', { retryCount: 5, retryTime: 3000, groupId: 'g' }))).toBe('warn');
    expect(kafkajsLogLevel(logLevel.ERROR, entry('The coordinator is not aware of this member, re-joining the group', { groupId: 'g', memberId: 'm', error: 'The coordinator is not aware of this member' }))).toBe('warn');
  });

  it('keeps real errors at error', () => {
    expect(kafkajsLogLevel(logLevel.ERROR, entry('Response Produce(key: 0, version: 7)', { error: protocolMessage('MESSAGE_TOO_LARGE'), correlationId: 3, size: 60 }))).toBe('error');
    expect(kafkajsLogLevel(logLevel.ERROR, entry(protocolMessage('TOPIC_AUTHORIZATION_FAILED'), { retryCount: 0, retryTime: 250 }))).toBe('error');
    expect(kafkajsLogLevel(logLevel.ERROR, entry('Crash: KafkaJSNonRetriableError: Closed connection', { groupId: 'g', stack: '...' }))).toBe('error');
    expect(kafkajsLogLevel(logLevel.ERROR, entry('Connection error: connect ECONNREFUSED 127.0.0.1:9092', { broker: '127.0.0.1:9092' }))).toBe('error');
    expect(kafkajsLogLevel(logLevel.ERROR, entry('Restarting the consumer soon, maybe'))).toBe('error');
  });

  it('keeps warnings at warn and sends info and debug to debug', () => {
    expect(kafkajsLogLevel(logLevel.WARN, entry('Could not create topics', { error: 'x', retryCount: 1, retryTime: 300 }))).toBe('warn');
    expect(kafkajsLogLevel(logLevel.INFO, entry('Starting'))).toBe('debug');
    expect(kafkajsLogLevel(logLevel.DEBUG, entry('Request Metadata'))).toBe('debug');
  });

  it('is what createKafka logs through pino', () => {
    const lines: Array<{ level: number; msg: string; component: string; retryTime?: number }> = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(JSON.parse(chunk.toString('utf8')));
        done();
      },
    });
    const logger = pino({ level: 'debug' }, sink);
    const kafka = createKafka({ brokers: ['127.0.0.1:1'], clientId: 't', logger });
    kafka.logger().error('Response FindCoordinator(key: 10, version: 2)', { error: protocolMessage('GROUP_COORDINATOR_NOT_AVAILABLE') });
    kafka.logger().error('Restarting the consumer in 300ms', { retryCount: 1, retryTime: 300 });
    kafka.logger().error(protocolMessage('MESSAGE_TOO_LARGE'), { retryCount: 0, retryTime: 100 });
    kafka.logger().warn('Could not create topics', { error: 'x' });
    expect(lines.map((l) => [pino.levels.labels[l.level], l.msg, l.component])).toEqual([
      ['warn', 'Response FindCoordinator(key: 10, version: 2)', 'kafkajs'],
      ['warn', 'Restarting the consumer in 300ms', 'kafkajs'],
      ['error', protocolMessage('MESSAGE_TOO_LARGE'), 'kafkajs'],
      ['warn', 'Could not create topics', 'kafkajs'],
    ]);
    expect(lines[1]!.retryTime).toBe(300);
  });
});
