import { describe, expect, it } from 'vitest';
import { FatalStoreError, RetriableError } from '../../../src/errors.js';
import { classifyKafkaError, kafkaFailure, KafkaRefusalError, type KafkaCallContext, type KafkaFailure } from '../../../src/kafka/kafka-errors.js';

/** A kafkajs error as kafkajs builds it: a name, its retriable flag, a broker answer's type, a cause. */
function kafkajsError(name: string, message: string, fields: { retriable: boolean; type?: string; cause?: unknown }): Error {
  return Object.assign(new Error(message, fields.cause === undefined ? undefined : { cause: fields.cause }), { name, ...fields });
}
const protocol = (type: string, retriable: boolean) => kafkajsError('KafkaJSProtocolError', type.toLowerCase(), { retriable, type });

const rows: Array<[string, unknown, KafkaCallContext, KafkaFailure]> = [
  ['KafkaJSConnectionError (retriable flag)', kafkajsError('KafkaJSConnectionError', 'Connection timeout', { retriable: true }), {}, { kind: 'retry' }],
  ['KafkaJSRequestTimeoutError', kafkajsError('KafkaJSRequestTimeoutError', 'Request timed out', { retriable: true }), {}, { kind: 'retry' }],
  ['a retriable broker answer (leader election)', protocol('LEADER_NOT_AVAILABLE', true), {}, { kind: 'retry' }],
  ['KafkaJSNumberOfRetriesExceeded of a transient failure', kafkajsError('KafkaJSNumberOfRetriesExceeded', 'Number of retries exceeded', { retriable: false, cause: protocol('NOT_LEADER_FOR_PARTITION', true) }), {}, { kind: 'retry' }],
  ['record too large', protocol('MESSAGE_TOO_LARGE', false), {}, { kind: 'refused', refusal: 'MESSAGE_TOO_LARGE', scope: 'records' }],
  ['record batch too large, deep in the cause chain', new Error('x', { cause: { originalError: { type: 'RECORD_LIST_TOO_LARGE' } } }), {}, { kind: 'refused', refusal: 'RECORD_LIST_TOO_LARGE', scope: 'records' }],
  ['invalid record', protocol('INVALID_RECORD', false), {}, { kind: 'refused', refusal: 'INVALID_RECORD', scope: 'records' }],
  ['policy violation', protocol('POLICY_VIOLATION', false), {}, { kind: 'refused', refusal: 'POLICY_VIOLATION', scope: 'records' }],
  ['one refusal among an aggregate of answers', { errors: [{ type: 'NOT_LEADER_FOR_PARTITION' }, { type: 'MESSAGE_TOO_LARGE' }] }, {}, { kind: 'refused', refusal: 'MESSAGE_TOO_LARGE', scope: 'records' }],
  ['topic authorization failed', protocol('TOPIC_AUTHORIZATION_FAILED', false), {}, { kind: 'refused', refusal: 'TOPIC_AUTHORIZATION_FAILED', scope: 'topic' }],
  ['cluster authorization failed', protocol('CLUSTER_AUTHORIZATION_FAILED', false), {}, { kind: 'refused', refusal: 'CLUSTER_AUTHORIZATION_FAILED', scope: 'topic' }],
  ['invalid topic', protocol('INVALID_TOPIC_EXCEPTION', false), {}, { kind: 'refused', refusal: 'INVALID_TOPIC_EXCEPTION', scope: 'topic' }],
  ['topic gone, after kafkajs gave up retrying', kafkajsError('KafkaJSNumberOfRetriesExceeded', 'Number of retries exceeded', { retriable: false, cause: protocol('UNKNOWN_TOPIC_OR_PARTITION', true) }), {}, { kind: 'refused', refusal: 'UNKNOWN_TOPIC_OR_PARTITION', scope: 'topic' }],
  ['topic unknown while it may have just been created', protocol('UNKNOWN_TOPIC_OR_PARTITION', true), { topicMayBeNew: true }, { kind: 'retry' }],
  ['a kafkajs error kafkajs marks non-retriable, not a refusal', kafkajsError('KafkaJSNonRetriableError', 'The producer is disconnecting', { retriable: false }), {}, { kind: 'unknown' }],
  ['a non-retriable broker answer that is not a refusal', protocol('INVALID_REQUIRED_ACKS', false), {}, { kind: 'unknown' }],
  ['not a Kafka error', new Error('ECONNREFUSED'), {}, { kind: 'unknown' }],
  ['not an error at all', 'boom', {}, { kind: 'unknown' }],
];

describe("Kafka's error classifier", () => {
  it.each(rows)('%s', (_name, error, context, expected) => {
    expect(kafkaFailure(error, context)).toEqual(expected);
  });

  it('finds nothing to refuse in transient errors', () => {
    expect(kafkaFailure({ type: 'LEADER_NOT_AVAILABLE' }).kind).not.toBe('refused');
    expect(kafkaFailure(new Error('ECONNREFUSED')).kind).not.toBe('refused');
  });

  it('turns a failed call into a RetriableError, a KafkaRefusalError (fatal) or the unknown error itself', () => {
    const retry = classifyKafkaError(kafkajsError('KafkaJSConnectionError', 'Connection timeout', { retriable: true }), 'signals', 'signals');
    expect(retry).toBeInstanceOf(RetriableError);
    expect((retry as Error).message).toBe('signals: signals did not acknowledge: Connection timeout');

    const refused = classifyKafkaError(protocol('TOPIC_AUTHORIZATION_FAILED', false), 'rule checkpoint', 'rules.checkpoints');
    expect(refused).toBeInstanceOf(KafkaRefusalError);
    expect(refused).toBeInstanceOf(FatalStoreError);
    expect(refused).toMatchObject({ refusal: 'TOPIC_AUTHORIZATION_FAILED', scope: 'topic', retriable: false });
    expect((refused as Error).message).toBe('rule checkpoint: rules.checkpoints refused the records for good (TOPIC_AUTHORIZATION_FAILED): topic_authorization_failed');

    const bug = new TypeError('x is not a function');
    expect(classifyKafkaError(bug, 'signals', 'signals')).toBe(bug);
  });
});
