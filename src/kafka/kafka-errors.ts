import { FatalStoreError, RetriableError } from '../errors.js';
import { isPlatformaticRetriable, platformaticAnswer } from './platformatic/errors.js';

/**
 * Kafka's classifier: the one place that decides what a failed Kafka call means, whichever client
 * made it (kafkajs or @platformatic/kafka: their errors differ in shape, platformatic/errors.ts
 * describes the latter's, and the same broker answer classifies alike). Every Kafka
 * call of spanledger (produce, dead letters, checkpoints, metadata and offsets while a topic is
 * being created) asks kafkaFailure or classifyKafkaError, so one broker answer is treated alike
 * everywhere. The table (test/unit/kafka/kafka-errors.test.ts has one row per line):
 *
 * - a refusal of these records (too large, invalid, against a policy) → `refused`, scope `records`:
 *   the rest of a batch may still be taken, so a dead-letter batch is narrowed down;
 * - a refusal of the topic (not authorized, topic invalid or gone) → `refused`, scope `topic`;
 *   a topic gone is `retry` instead while the topic may have just been created (its metadata is
 *   still spreading: "This server does not host this topic-partition");
 * - what kafkajs marks retriable (a connection lost or refused, a request timeout, a leader election) → `retry`;
 * - KafkaJSNumberOfRetriesExceeded: kafkajs' own bounded retries of a transient failure ran out;
 *   the failure may still pass → `retry` (our loop goes on with backoff, the breaker watching);
 * - a @platformatic/kafka error whose every part the library marks canRetry (NetworkError,
 *   TimeoutError, NOT_LEADER_OR_FOLLOWER, ...; also when wrapped in the MultipleErrors of its
 *   retries that ran out, as KafkaJSNumberOfRetriesExceeded above) → `retry`;
 * - anything else (the client marks it non-retriable, or it is not a Kafka error at all) → `unknown`:
 *   the pipeline's rule for errors no classifier knows applies (retried a bounded number of
 *   times, then fatal), never retried forever.
 *
 * A refusal is looked for in the whole cause chain (kafkajs wraps a broker's answer in
 * KafkaJSNumberOfRetriesExceeded, a KafkaJSAggregateError or an originalError; platformatic in a
 * ResponseError or MultipleErrors, the answer's name in `apiId`), before the retriable flag: both
 * clients mark UNKNOWN_TOPIC_OR_PARTITION retriable.
 */
export type KafkaFailure = { kind: 'retry' } | { kind: 'refused'; refusal: string; scope: 'records' | 'topic' } | { kind: 'unknown' };

/** Broker answers that refuse these records for good, whichever topic they go to. */
const RECORD_REFUSALS = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE', 'INVALID_RECORD', 'POLICY_VIOLATION']);
/** Broker answers that refuse every record for the topic: no retry and no smaller batch changes them. */
const TOPIC_REFUSALS = new Set(['TOPIC_AUTHORIZATION_FAILED', 'CLUSTER_AUTHORIZATION_FAILED', 'INVALID_TOPIC_EXCEPTION', 'UNKNOWN_TOPIC_OR_PARTITION']);

export interface KafkaCallContext {
  /** The call is on a topic just ensured (created here or by a peer): "topic unknown" is its metadata spreading. */
  topicMayBeNew?: boolean;
}

export function kafkaFailure(error: unknown, context: KafkaCallContext = {}): KafkaFailure {
  const refusal = refusalIn(error);
  if (refusal === 'UNKNOWN_TOPIC_OR_PARTITION' && context.topicMayBeNew) return { kind: 'retry' };
  if (refusal !== undefined) return { kind: 'refused', refusal, scope: RECORD_REFUSALS.has(refusal) ? 'records' : 'topic' };
  if (isKafkaJsRetriable(error) || nameOf(error) === 'KafkaJSNumberOfRetriesExceeded' || isPlatformaticRetriable(error)) return { kind: 'retry' };
  return { kind: 'unknown' };
}

/** A broker refused records for good (`refusal` is its answer, e.g. MESSAGE_TOO_LARGE). */
export class KafkaRefusalError extends FatalStoreError {
  constructor(
    store: string,
    readonly refusal: string,
    readonly scope: 'records' | 'topic',
    message: string,
    cause: unknown,
  ) {
    super(store, message, cause);
  }
}

/**
 * The typed error a failed call to `topic` becomes: a RetriableError, a KafkaRefusalError (a
 * FatalStoreError: thrown, it stops the worker without committing), or `error` itself when
 * unknown (see kafkaFailure). `store` names the caller in the message (e.g. `signals`).
 */
export function classifyKafkaError(error: unknown, store: string, topic: string, context: KafkaCallContext = {}): RetriableError | KafkaRefusalError | unknown {
  const failure = kafkaFailure(error, context);
  const message = error instanceof Error ? error.message : String(error);
  switch (failure.kind) {
    case 'retry':
      return new RetriableError(`${store}: ${topic} did not acknowledge: ${message}`, error);
    case 'refused':
      return new KafkaRefusalError(store, failure.refusal, failure.scope, `${topic} refused the records for good (${failure.refusal}): ${message}`, error);
    case 'unknown':
      return error;
  }
}

function isKafkaJsRetriable(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { retriable?: unknown }).retriable === true;
}

function nameOf(error: unknown): unknown {
  return typeof error === 'object' && error !== null ? (error as { name?: unknown }).name : undefined;
}

/** The first refusal (record or topic) anywhere in the error's cause chain. */
function refusalIn(error: unknown): string | undefined {
  const seen = new Set<unknown>();
  const queue: unknown[] = [error];
  while (queue.length > 0) {
    const e = queue.shift();
    if (typeof e !== 'object' || e === null || seen.has(e)) continue;
    seen.add(e);
    const { type, cause, originalError, errors } = e as { type?: unknown; cause?: unknown; originalError?: unknown; errors?: unknown };
    const answer = typeof type === 'string' ? type : platformaticAnswer(e);
    if (answer !== undefined && (RECORD_REFUSALS.has(answer) || TOPIC_REFUSALS.has(answer))) return answer;
    queue.push(cause, originalError);
    if (Array.isArray(errors)) queue.push(...errors);
  }
  return undefined;
}
