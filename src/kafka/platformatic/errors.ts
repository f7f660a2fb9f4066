/**
 * How @platformatic/kafka's errors look (dist/errors.js), read by Kafka's classifier
 * (kafka-errors.ts) and by the admin adapter. Recognised by shape, not by class, so that a copy
 * of the library loaded twice still classifies:
 *
 * - every error of the library has a `code` starting with PLT_KFK_ and, except the aggregates,
 *   a `canRetry` flag: the library's own verdict, which its retry loop follows;
 * - a broker's answer is a ProtocolError (code PLT_KFK_PROTOCOL) with `apiId`, the answer's name
 *   (MESSAGE_TOO_LARGE, NOT_LEADER_OR_FOLLOWER, ...), and `canRetry` from the protocol's table;
 * - a response carrying answers is a ResponseError (PLT_KFK_RESPONSE), an aggregate whose
 *   `errors` are ProtocolErrors; an operation whose retries ran out is a MultipleErrors
 *   (PLT_KFK_MULTIPLE, "<op> failed N times.") of every try's error; requests to several brokers
 *   at once fail as a MultipleErrors of each broker's error;
 * - a connection lost or refused is a NetworkError (canRetry true; false once the client is
 *   closed), a request or connection timeout a TimeoutError (code PLT_KFK_NETWORK too, canRetry true);
 * - a topic the cluster does not know (after the metadata request's retries) becomes a UserError
 *   "Unknown topic <name>." with no cause: the broker's UNKNOWN_TOPIC_OR_PARTITION is dropped
 *   (clients/base/base.js #performMetadata), so it is recognised by its message.
 */
const PREFIX = 'PLT_KFK_';
const AGGREGATES = new Set(['PLT_KFK_MULTIPLE', 'PLT_KFK_RESPONSE']);
const UNKNOWN_TOPIC_MESSAGE = /^Unknown topic .*\.$/;

interface PlatformaticErrorShape {
  code: string;
  message?: unknown;
  canRetry?: unknown;
  apiId?: unknown;
  errors?: unknown;
}

export function isPlatformaticError(error: unknown): error is PlatformaticErrorShape {
  return typeof error === 'object' && error !== null && typeof (error as { code?: unknown }).code === 'string' && (error as { code: string }).code.startsWith(PREFIX);
}

/**
 * The broker answer this one error of the tree stands for, if any: a ProtocolError's `apiId`, or
 * UNKNOWN_TOPIC_OR_PARTITION for the library's "Unknown topic" error.
 */
export function platformaticAnswer(error: unknown): string | undefined {
  if (!isPlatformaticError(error)) return undefined;
  if (error.code === 'PLT_KFK_PROTOCOL' && typeof error.apiId === 'string') return error.apiId;
  if (error.code === 'PLT_KFK_USER' && typeof error.message === 'string' && UNKNOWN_TOPIC_MESSAGE.test(error.message)) return 'UNKNOWN_TOPIC_OR_PARTITION';
  return undefined;
}

/**
 * The library's verdict "worth trying again": every error in the tree (aggregates looked
 * through) is one of the library's own and says canRetry. One that says no, or an error that is
 * not the library's (a bug), makes the whole not retriable, as the library's retry loop has it.
 */
export function isPlatformaticRetriable(error: unknown): boolean {
  if (!isPlatformaticError(error)) return false;
  if (AGGREGATES.has(error.code)) {
    const inner = Array.isArray(error.errors) ? error.errors.filter((e) => e !== undefined && e !== null) : [];
    return inner.length > 0 && inner.every(isPlatformaticRetriable);
  }
  return error.canRetry === true;
}

/**
 * The call failed only with this broker answer (e.g. TOPIC_ALREADY_EXISTS for a topic created
 * meanwhile, GROUP_ID_NOT_FOUND for a group already gone): every error in the tree (aggregates
 * looked through) is that answer. Anything else beside it (a broker that could not be reached,
 * a try that failed otherwise before) and the failure stands: the caller's retry sees it again.
 */
export function everyProtocolErrorIs(error: unknown, answer: string): boolean {
  if (isPlatformaticError(error) && AGGREGATES.has(error.code)) {
    const inner = Array.isArray(error.errors) ? error.errors.filter((e) => e !== undefined && e !== null) : [];
    return inner.length > 0 && inner.every((e) => everyProtocolErrorIs(e, answer));
  }
  return platformaticAnswer(error) === answer;
}

/** Some error in the tree (aggregates looked through) is one of these broker answers. */
export function someProtocolErrorIs(error: unknown, answers: ReadonlySet<string>): boolean {
  if (isPlatformaticError(error) && AGGREGATES.has(error.code)) {
    const inner = Array.isArray(error.errors) ? error.errors : [];
    return inner.some((e) => someProtocolErrorIs(e, answers));
  }
  const answer = platformaticAnswer(error);
  return answer !== undefined && answers.has(answer);
}
