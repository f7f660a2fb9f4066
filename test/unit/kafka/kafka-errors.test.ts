import { MultipleErrors, NetworkError, ProtocolError, ResponseError, TimeoutError, UserError } from '@platformatic/kafka';
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

/** @platformatic/kafka's errors, built by its own classes as the client builds them. */
const answer = (id: string) => new ProtocolError(id);
/** A produce response carrying a broker answer for one partition (the shape the Produce API rejects with). */
const produceResponse = (id: string) => new ResponseError(0, 9, { '/responses/0/partitionResponses/0': [answer(id).apiCode as number, null] }, {});
/** What an operation rejects with once the client's own retries ran out: every try's error. */
const retriesRanOut = (...errors: Error[]) => new MultipleErrors(`produce failed ${errors.length} times.`, errors);

const platformaticRows: Array<[string, unknown, KafkaCallContext, KafkaFailure]> = [
  ['platformatic: connection lost (NetworkError)', new NetworkError('Connection closed'), {}, { kind: 'retry' }],
  ['platformatic: request timed out (TimeoutError)', new TimeoutError('Request timed out', { canRetry: true }), {}, { kind: 'retry' }],
  ['platformatic: retries ran out on a leader change', retriesRanOut(produceResponse('NOT_LEADER_OR_FOLLOWER'), new NetworkError('Connection closed'), produceResponse('NOT_LEADER_OR_FOLLOWER')), {}, { kind: 'retry' }],
  ['platformatic: the broker timed out (REQUEST_TIMED_OUT)', produceResponse('REQUEST_TIMED_OUT'), {}, { kind: 'retry' }],
  ['platformatic: record too large', produceResponse('MESSAGE_TOO_LARGE'), {}, { kind: 'refused', refusal: 'MESSAGE_TOO_LARGE', scope: 'records' }],
  ['platformatic: record batch too large, among several brokers\' answers', new MultipleErrors('Producing messages failed.', [new NetworkError('Connection closed'), produceResponse('RECORD_LIST_TOO_LARGE')]), {}, { kind: 'refused', refusal: 'RECORD_LIST_TOO_LARGE', scope: 'records' }],
  ['platformatic: invalid record', produceResponse('INVALID_RECORD'), {}, { kind: 'refused', refusal: 'INVALID_RECORD', scope: 'records' }],
  ['platformatic: topic authorization failed', produceResponse('TOPIC_AUTHORIZATION_FAILED'), {}, { kind: 'refused', refusal: 'TOPIC_AUTHORIZATION_FAILED', scope: 'topic' }],
  ['platformatic: topic gone, after the retries ran out', retriesRanOut(produceResponse('UNKNOWN_TOPIC_OR_PARTITION'), produceResponse('UNKNOWN_TOPIC_OR_PARTITION')), {}, { kind: 'refused', refusal: 'UNKNOWN_TOPIC_OR_PARTITION', scope: 'topic' }],
  ['platformatic: topic unknown to the metadata ("Unknown topic" UserError)', new UserError('Unknown topic spans-x.'), {}, { kind: 'refused', refusal: 'UNKNOWN_TOPIC_OR_PARTITION', scope: 'topic' }],
  ['platformatic: topic unknown while it may have just been created', new UserError('Unknown topic spans-x.'), { topicMayBeNew: true }, { kind: 'retry' }],
  ['platformatic: the client was closed', new NetworkError('Client is closed.', { canRetry: false, closed: true }), {}, { kind: 'unknown' }],
  ['platformatic: a non-retriable answer that is not a refusal', produceResponse('INVALID_REQUIRED_ACKS'), {}, { kind: 'unknown' }],
  ['platformatic: retries ran out, the last answer not retriable', retriesRanOut(new NetworkError('Connection closed'), produceResponse('INVALID_REQUIRED_ACKS')), {}, { kind: 'unknown' }],
  ['platformatic: a UserError (bad call)', new UserError('Failed to serialize a message.'), {}, { kind: 'unknown' }],
];

describe("Kafka's error classifier", () => {
  it.each(platformaticRows)('%s', (_name, error, context, expected) => {
    expect(kafkaFailure(error, context)).toEqual(expected);
  });


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
