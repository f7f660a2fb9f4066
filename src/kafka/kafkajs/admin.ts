import kafkajs, { type Admin, type Kafka } from 'kafkajs';
import type { CommittedOffset, GroupDescription, KafkaAdmin, PartitionOffsets, TopicSpec } from '../facade.js';

// kafkajs is CommonJS and Node sees only some of its exports as named ones.
const { AssignerProtocol, ConfigResourceTypes } = kafkajs;

/** The facade's admin client on kafkajs' Admin. Errors are kafkajs' own (classified by kafka-errors.ts). */
export class KafkaJsAdmin implements KafkaAdmin {
  private readonly admin: Admin;
  private connected = false;

  constructor(kafka: Kafka) {
    this.admin = kafka.admin();
  }

  async connect(): Promise<void> {
    await this.admin.connect();
    this.connected = true;
  }

  async disconnect(): Promise<void> {
    if (!this.connected) return;
    this.connected = false;
    await this.admin.disconnect();
  }

  listTopics(): Promise<string[]> {
    return this.admin.listTopics();
  }

  async createTopics(topics: TopicSpec[]): Promise<void> {
    if (topics.length === 0) return;
    try {
      // Not kafkajs' waitForLeaders: on a broker that has just started it gave up with "This
      // server does not host this topic-partition" (make profile); topics.ts waits, bounded.
      await this.admin.createTopics({
        topics: topics.map(({ topic, numPartitions, replicationFactor, configEntries }) => ({ topic, numPartitions, ...(replicationFactor === undefined ? {} : { replicationFactor }), configEntries })),
        waitForLeaders: false,
      });
    } catch (e) {
      // Another worker may have created it at the same moment.
      if (!String((e as Error).message).includes('exists')) throw e;
    }
  }

  /**
   * kafkajs' metadata call fails as a whole when any topic asked for is unknown to the broker
   * (UNKNOWN_TOPIC_OR_PARTITION: a topic that does not exist, or one just created whose metadata
   * has not reached this broker yet) or has a partition without leader (LEADER_NOT_AVAILABLE,
   * which kafkajs retries). So each topic is asked for alone: an unknown one is left out, as the
   * facade has it. A partition without leader cannot be reported as leader -1 (kafkajs' answer
   * parser drops the whole answer): once kafkajs' retries run out the call fails with that
   * retriable error, which waitForLeaders (topics.ts) takes as "no leader yet".
   */
  async topicPartitions(topics: string[]): Promise<Map<string, Array<{ partition: number; leader: number }>>> {
    const out = new Map<string, Array<{ partition: number; leader: number }>>();
    const answers = await Promise.all(
      [...new Set(topics)].map(async (topic) => {
        try {
          const metadata = await this.admin.fetchTopicMetadata({ topics: [topic] });
          return metadata.topics.find((t) => t.name === topic);
        } catch (e) {
          if (protocolErrorType(e) === 'UNKNOWN_TOPIC_OR_PARTITION') return undefined;
          throw e;
        }
      }),
    );
    for (const t of answers) {
      if (t === undefined) continue;
      out.set(
        t.name,
        t.partitions.map((p) => ({ partition: p.partitionId, leader: p.leader })).sort((a, b) => a.partition - b.partition),
      );
    }
    return out;
  }

  async topicConfigs(topics: string[], names: string[]): Promise<Map<string, Map<string, string>>> {
    const out = new Map<string, Map<string, string>>();
    if (topics.length === 0) return out;
    const described = await this.admin.describeConfigs({
      resources: topics.map((name) => ({ type: ConfigResourceTypes.TOPIC, name, configNames: names })),
      includeSynonyms: false,
    });
    for (const r of described.resources) out.set(r.resourceName, new Map(r.configEntries.map((c) => [c.configName, c.configValue])));
    return out;
  }

  async topicOffsets(topic: string): Promise<PartitionOffsets[]> {
    const offsets = await this.admin.fetchTopicOffsets(topic);
    return offsets.map((o) => ({ partition: o.partition, low: BigInt(o.low), high: BigInt(o.high) })).sort((a, b) => a.partition - b.partition);
  }

  async committedOffsets(group: string, topics?: string[]): Promise<CommittedOffset[]> {
    const committed = await this.admin.fetchOffsets(topics === undefined ? { groupId: group } : { groupId: group, topics });
    return committed.flatMap((t) => t.partitions.map((p) => ({ topic: t.topic, partition: p.partition, offset: p.offset === '-1' ? null : BigInt(p.offset) })));
  }

  async describeGroups(groups: string[]): Promise<GroupDescription[]> {
    if (groups.length === 0) return [];
    const described = await this.admin.describeGroups(groups);
    return described.groups.map((g) => ({
      group: g.groupId,
      state: g.state,
      members: g.members.map((m) => ({
        memberId: m.memberId,
        clientId: m.clientId,
        clientHost: m.clientHost,
        // kafkajs' DescribeGroups (v2) carries no group instance id.
        groupInstanceId: null,
        assignment: decodeAssignment(m.memberAssignment),
      })),
    }));
  }

  async deleteGroups(groups: string[]): Promise<void> {
    if (groups.length === 0) return;
    try {
      await this.admin.deleteGroups(groups);
    } catch (e) {
      // GROUP_ID_NOT_FOUND for a group that never committed or was deleted already.
      const failures = (e as { groups?: Array<{ error?: { type?: string } }> }).groups;
      if (failures !== undefined && failures.every((g) => g.error === undefined || g.error.type === 'GROUP_ID_NOT_FOUND')) return;
      throw e;
    }
  }
}

/** The broker answer a kafkajs error stands for (its `type`), looked for through kafkajs' wrappers. */
function protocolErrorType(error: unknown): string | undefined {
  for (let e = error, depth = 0; typeof e === 'object' && e !== null && depth < 5; depth += 1) {
    const { type, originalError, cause } = e as { type?: unknown; originalError?: unknown; cause?: unknown };
    if (typeof type === 'string') return type;
    e = originalError ?? cause;
  }
  return undefined;
}

/** A member's assignment (the consumer protocol's MemberAssignment): topic → partitions; empty while the group rebalances. */
export function decodeAssignment(buffer: Buffer): Record<string, number[]> {
  if (buffer.length === 0) return {};
  return AssignerProtocol.MemberAssignment.decode(buffer)?.assignment ?? {};
}
