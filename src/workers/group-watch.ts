import type { Logger } from 'pino';
import type { KafkaAdmin } from '../kafka/facade.js';

/** The admin calls the partition check needs: topics' partitions and a group's members. */
export type GroupAdmin = Pick<KafkaAdmin, 'connect' | 'disconnect' | 'topicPartitions' | 'describeGroups'>;
import type { GroupConsumer } from '../pipeline/consumer-port.js';

/** A topic's partition count beside its group's member count, as read after a join. */
export interface GroupCount {
  partitions: number;
  members: number;
}

/**
 * The warning when the group has more members than its topic has partitions, else undefined:
 * the extra members get nothing. Seen when a Collector wrote before the topic existed and the
 * broker created it with its default of one partition.
 */
export function partitionShortfall(topic: string, group: string, count: GroupCount): string | undefined {
  const { partitions, members } = count;
  if (partitions === 0 || members <= partitions) return undefined;
  const idle = members - partitions;
  return (
    `topic ${topic} has ${partitions} partition${partitions === 1 ? '' : 's'} but group ${group} has ${members} members: ` +
    `${idle} of them get${idle === 1 ? 's' : ''} no records. Add partitions (kafka-topics.sh --alter --partitions N), or run fewer workers; ` +
    '`spanledger topics create` before a Collector first writes keeps the broker from creating a one-partition topic'
  );
}

/** How long a worker waits for its group join before it says why it may be waiting: half the session timeout, at most 10 s. */
export function joinWaitNoticeMs(sessionTimeoutMs: number): number {
  return Math.min(10_000, Math.floor(sessionTimeoutMs / 2));
}

/** The one line a worker logs while its group join takes long (after a kill -9, about a session timeout). */
export function joinWaitLine(group: string, sessionTimeoutMs: number, groupInstanceId: string | undefined): string {
  const why = `waiting to join group ${group}: a previous member of this worker may still hold partitions until its session times out (KAFKA_SESSION_TIMEOUT_MS=${sessionTimeoutMs})`;
  return groupInstanceId === undefined
    ? `${why}; static membership (KAFKA_GROUP_INSTANCE_ID) removes this wait for a restart under the same id`
    : `${why}, unless it restarted as ${groupInstanceId} (static membership), which takes its partitions back at once`;
}

/** A topic's partition count and a group's member count, with one short-lived admin connection. */
export async function countGroup(admin: GroupAdmin, topic: string, group: string): Promise<GroupCount> {
  await admin.connect();
  try {
    const partitions = (await admin.topicPartitions([topic])).get(topic)?.length ?? 0;
    const [described] = await admin.describeGroups([group]);
    return { partitions, members: described?.members.length ?? 0 };
  } finally {
    await admin.disconnect();
  }
}

export interface GroupWatchOptions {
  consumer: Pick<GroupConsumer, 'onGroupJoin' | 'onCrash'>;
  topic: string;
  group: string;
  logger: Pick<Logger, 'info' | 'warn' | 'debug'>;
  sessionTimeoutMs: number;
  groupInstanceId?: string;
  /** Reads the counts once per join (countGroup on the worker's client). */
  countGroup: () => Promise<GroupCount>;
}

/**
 * What a worker says about its group that the consumer does not: one line when its join takes
 * long (started, or its consumer restarted, and no join within joinWaitNoticeMs), and a warning
 * after a join when the topic has fewer partitions than the group has members. Listens from
 * construction; start() when the consumer starts connecting, stop() when it stops.
 */
export class GroupWatch {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  /** The counts last warned about: the same shortfall is not repeated at every join. */
  private warned: string | undefined;

  constructor(private readonly options: GroupWatchOptions) {
    options.consumer.onGroupJoin(() => this.joined());
    options.consumer.onCrash(({ restart }) => {
      // A restarted consumer joins again, possibly under a new member id while the old one is held.
      if (restart) this.arm();
    });
  }

  start(): void {
    this.running = true;
    this.arm();
  }

  stop(): void {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(): void {
    if (!this.running) return;
    const { group, sessionTimeoutMs, groupInstanceId, logger } = this.options;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      logger.info({ group, sessionTimeoutMs }, joinWaitLine(group, sessionTimeoutMs, groupInstanceId));
    }, joinWaitNoticeMs(sessionTimeoutMs));
    this.timer.unref();
  }

  private joined(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.running) return;
    const { topic, group, logger } = this.options;
    this.options.countGroup().then(
      (count) => {
        const warning = this.running ? partitionShortfall(topic, group, count) : undefined;
        const key = `${count.partitions}/${count.members}`;
        if (warning !== undefined && key !== this.warned) logger.warn({ topic, group, ...count }, warning);
        this.warned = warning === undefined ? undefined : key;
      },
      // Only a check: a failed admin call changes nothing the worker does.
      (e: unknown) => logger.debug({ err: e, topic, group }, 'could not compare partitions with group members'),
    );
  }
}
