import { logLevel as KafkaLogLevel, type LogEntry } from 'kafkajs';

export type PinoLevel = 'error' | 'warn' | 'debug';

/**
 * Messages of the kafkajs protocol errors that a cluster reports while it starts, elects a leader
 * or moves a group coordinator (COORDINATOR_LOAD_IN_PROGRESS, LEADER_NOT_AVAILABLE,
 * NOT_COORDINATOR, GROUP_COORDINATOR_NOT_AVAILABLE, …). kafkajs marks them retriable and retries.
 */
const TRANSIENT_PROTOCOL_ERRORS = [
  "The coordinator is loading and hence can't process requests", // GROUP_LOAD_IN_PROGRESS
  'The group coordinator is not available', // GROUP_COORDINATOR_NOT_AVAILABLE
  'This is not the correct coordinator for this group', // NOT_COORDINATOR_FOR_GROUP
  'There is no leader for this topic-partition as we are in the middle of a leadership election', // LEADER_NOT_AVAILABLE
  'This server is not the leader for that topic-partition', // NOT_LEADER_FOR_PARTITION
  'This server does not host this topic-partition', // UNKNOWN_TOPIC_OR_PARTITION, right after a topic is created
  'The replica is not available for the requested topic-partition', // REPLICA_NOT_AVAILABLE
  'The leader high watermark has not caught up from a recent leader election', // OFFSET_NOT_AVAILABLE
  'The leader epoch in the request is older than the epoch on the broker', // FENCED_LEADER_EPOCH
  'The leader epoch in the request is newer than the epoch on the broker', // UNKNOWN_LEADER_EPOCH
  'This is not the correct controller for this cluster', // NOT_CONTROLLER
];

/** kafkajs log messages that announce a retry it is about to make. */
const RETRY_ANNOUNCEMENTS = [
  /^Restarting the consumer in \d+ms$/,
  /^The coordinator is not aware of this member, re-joining the group$/,
];

/**
 * kafkajs' warning for an idempotent producer whose retries are counted. Ours are on purpose (a
 * command must end; producer.ts), and what the warning fears does not happen here: kafkajs takes
 * a partition's sequence numbers back when a send fails, so the same producer's next try of the
 * records is deduplicated by the broker, and a command whose send gives up fails.
 */
const COUNTED_IDEMPOTENT_RETRIES = 'Limiting retries for the idempotent producer may invalidate EoS guarantees';

function text(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value instanceof Error) return value.message;
  return '';
}

/**
 * The pino level for a kafkajs log entry. kafkajs logs at ERROR each failed attempt it is about
 * to retry; at start-up (a fresh broker, a new group or topic) that is a handful of alarming lines
 * about nothing. Those are logged at warn: a retriable error in one of the transient states
 * above, or kafkajs announcing a retry or a consumer restart. If the retries run out, kafkajs
 * fails the call (or crashes the consumer without restart), and spanledger reports that as an
 * error itself. Everything else keeps its level.
 */
export function kafkajsLogLevel(level: KafkaLogLevel, entry: LogEntry['log']): PinoLevel {
  if (level === KafkaLogLevel.WARN) return text(entry.message) === COUNTED_IDEMPOTENT_RETRIES ? 'debug' : 'warn';
  if (level > KafkaLogLevel.WARN) return 'debug';
  const message = text(entry.message);
  if (RETRY_ANNOUNCEMENTS.some((re) => re.test(message))) return 'warn';
  const said = `${message}\n${text((entry as Record<string, unknown>).error)}`;
  if (TRANSIENT_PROTOCOL_ERRORS.some((m) => said.includes(m))) return 'warn';
  return 'error';
}
