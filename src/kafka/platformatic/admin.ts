import { Admin, ConfigResourceTypes, FetchIsolationLevels, ListOffsetTimestamps, type Group } from '@platformatic/kafka';
import type { CommittedOffset, GroupDescription, GroupMember, KafkaAdmin, KafkaFacadeOptions, PartitionOffsets, TopicSpec } from '../facade.js';
import { everyProtocolErrorIs, isPlatformaticError } from './errors.js';
import { logClientEvents, platformaticBaseOptions } from './options.js';

/** Longest createTopics waits for new topics to show in the cluster's metadata (ms). */
const TOPIC_VISIBLE_TIMEOUT_MS = 10_000;

/** KafkaAdmin on @platformatic/kafka's Admin client. */
export class PlatformaticAdmin implements KafkaAdmin {
  private readonly admin: Admin;
  private closed = false;

  constructor(client: KafkaFacadeOptions) {
    this.admin = new Admin(platformaticBaseOptions(client, 'admin'));
    logClientEvents(this.admin, client.logger);
  }

  async connect(): Promise<void> {
    // The client connects lazily; asking the broker now makes a wrong address fail here.
    await this.admin.listApis();
  }

  async disconnect(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.admin.close();
  }

  /** The cluster's topics, internal ones (__consumer_offsets, ...) left out. */
  listTopics(): Promise<string[]> {
    return this.admin.listTopics();
  }

  async createTopics(topics: TopicSpec[]): Promise<void> {
    // One request per topic: the client sends one set of configs for all the topics of a request.
    await Promise.all(
      topics.map(async (spec) => {
        try {
          await this.admin.createTopics({
            topics: [{ topic: spec.topic, partitions: spec.numPartitions, replicas: spec.replicationFactor ?? -1 }],
            configs: (spec.configEntries ?? []).map(({ name, value }) => ({ name, value })),
          });
        } catch (e) {
          // Made by someone else meanwhile (another worker ensuring the same topic): what we wanted.
          if (!everyProtocolErrorIs(e, 'TOPIC_ALREADY_EXISTS')) throw e;
        }
      }),
    );
    await this.untilListed(topics.map((t) => t.topic));
  }

  /**
   * The controller has the topics once CreateTopics answers, but a broker's metadata may show them
   * a moment later (a listTopics right after creating missed them once in the suite): wait,
   * bounded, until they are listed, so that what createTopics made is there when it resolves.
   */
  private async untilListed(topics: string[]): Promise<void> {
    const deadline = Date.now() + TOPIC_VISIBLE_TIMEOUT_MS;
    for (let delayMs = 20; ; delayMs = Math.min(delayMs * 2, 500)) {
      const listed = new Set(await this.admin.listTopics({ includeInternals: true }));
      const missing = topics.filter((t) => !listed.has(t));
      if (missing.length === 0) return;
      if (Date.now() + delayMs > deadline) throw new Error(`topics ${missing.join(', ')} created but not listed by the cluster within ${TOPIC_VISIBLE_TIMEOUT_MS} ms`);
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }

  async topicPartitions(topics: string[]): Promise<Map<string, Array<{ partition: number; leader: number }>>> {
    const result = new Map<string, Array<{ partition: number; leader: number }>>();
    // The client answers a metadata request for an unknown topic with an error after its retries
    // (not with an empty topic): ask only for the topics the cluster has.
    const known = await this.knownTopics(topics);
    if (known.length === 0) return result;
    let metadata;
    try {
      metadata = await this.admin.metadata({ topics: known, forceUpdate: true, retries: 0 });
    } catch (e) {
      // A partition without a leader fails the client's metadata call; the answer rides on the error.
      const answered = leadersInMetadataAnswer(e, known);
      if (answered !== undefined) return answered;
      metadata = await this.admin.metadata({ topics: known, forceUpdate: true });
    }
    for (const topic of known) {
      const described = metadata.topics.get(topic);
      if (described === undefined) continue;
      result.set(
        topic,
        described.partitions.map((p, partition) => ({ partition, leader: p.leader })),
      );
    }
    return result;
  }

  async topicConfigs(topics: string[], names: string[]): Promise<Map<string, Map<string, string>>> {
    const result = new Map<string, Map<string, string>>();
    if (topics.length === 0) return result;
    const described = await this.admin.describeConfigs({
      resources: topics.map((topic) => ({ resourceType: ConfigResourceTypes.TOPIC, resourceName: topic, configurationKeys: names })),
    });
    for (const resource of described) {
      const configs = new Map<string, string>();
      for (const { name, value } of resource.configs) if (typeof value === 'string') configs.set(name, value);
      result.set(resource.resourceName, configs);
    }
    return result;
  }

  async topicOffsets(topic: string): Promise<PartitionOffsets[]> {
    // A topic the cluster does not have fails here (the client's "Unknown topic", classified
    // UNKNOWN_TOPIC_OR_PARTITION), as kafkajs' fetchTopicOffsets fails.
    const partitions = (await this.admin.metadata({ topics: [topic] })).topics.get(topic)?.partitionsCount ?? 0;
    const indexes = Array.from({ length: partitions }, (_, i) => i);
    // READ_COMMITTED as kafkajs' fetchTopicOffsets: the end is the last stable offset (the high
    // watermark unless a transaction is open).
    const at = (timestamp: bigint) =>
      this.admin.listOffsets({
        topics: [{ name: topic, partitions: indexes.map((partitionIndex) => ({ partitionIndex, timestamp })) }],
        isolationLevel: FetchIsolationLevels.READ_COMMITTED,
      });
    const [earliest, latest] = await Promise.all([at(ListOffsetTimestamps.EARLIEST), at(ListOffsetTimestamps.LATEST)]);
    const low = new Map(earliest.flatMap((t) => t.partitions).map((p) => [p.partitionIndex, p.offset]));
    const high = new Map(latest.flatMap((t) => t.partitions).map((p) => [p.partitionIndex, p.offset]));
    return indexes.map((partition) => ({ partition, low: low.get(partition) ?? 0n, high: high.get(partition) ?? 0n }));
  }

  async committedOffsets(group: string, topics?: string[]): Promise<CommittedOffset[]> {
    let request: Parameters<Admin['listConsumerGroupOffsets']>[0]['groups'][number] = group;
    if (topics !== undefined) {
      // Every partition of the named topics, so that one without a commit is listed (offset null).
      const named: Array<{ name: string; partitionIndexes: number[] }> = [];
      for (const [name, partitions] of await this.topicPartitions(topics)) named.push({ name, partitionIndexes: partitions.map((p) => p.partition) });
      if (named.length === 0) return [];
      request = { groupId: group, topics: named };
    }
    const listed = await this.admin.listConsumerGroupOffsets({ groups: [request] });
    const offsets: CommittedOffset[] = [];
    for (const g of listed) {
      if (g.groupId !== group) continue;
      for (const t of g.topics) {
        for (const p of t.partitions) offsets.push({ topic: t.name, partition: p.partitionIndex, offset: p.committedOffset < 0n ? null : p.committedOffset });
      }
    }
    return offsets.sort((a, b) => (a.topic === b.topic ? a.partition - b.partition : a.topic < b.topic ? -1 : 1));
  }

  async describeGroups(groups: string[]): Promise<GroupDescription[]> {
    if (groups.length === 0) return [];
    const described = await this.admin.describeGroups({ groups });
    return groups.map((group) => {
      const g = described.get(group);
      // A group the coordinator does not know is described as Dead with no members (DescribeGroups v5).
      return g === undefined ? { group, state: 'Dead', members: [] } : describedGroup(g);
    });
  }

  async deleteGroups(groups: string[]): Promise<void> {
    if (groups.length === 0) return;
    try {
      await this.admin.deleteGroups({ groups });
    } catch (e) {
      // The broker deletes the groups it has and answers GROUP_ID_NOT_FOUND for the others.
      if (!everyProtocolErrorIs(e, 'GROUP_ID_NOT_FOUND')) throw e;
    }
  }

  private async knownTopics(topics: string[]): Promise<string[]> {
    const existing = new Set(await this.admin.listTopics({ includeInternals: true }));
    return [...new Set(topics)].filter((t) => existing.has(t));
  }
}

export function describedGroup(g: Pick<Group, 'id' | 'state' | 'members'>): GroupDescription {
  const members: GroupMember[] = [...g.members.values()].map((m) => ({
    memberId: m.id,
    clientId: m.clientId,
    clientHost: m.clientHost,
    groupInstanceId: m.groupInstanceId ?? null,
    assignment: Object.fromEntries([...(m.assignments?.values() ?? [])].map((a) => [a.topic, [...a.partitions].sort((x, y) => x - y)])),
  }));
  return { group: g.id, state: g.state, members };
}

interface MetadataAnswer {
  topics: Array<{ errorCode: number; name: string | null; partitions: Array<{ partitionIndex: number; leaderId: number }> }>;
}

/**
 * The partitions and leaders of `topics` from a metadata answer the client rejected because some
 * partitions carry an error (LEADER_NOT_AVAILABLE while a leader is elected: the broker says leader
 * -1; REPLICA_NOT_AVAILABLE while a follower is down), when
 * every topic itself was answered; undefined for any other failure.
 */
export function leadersInMetadataAnswer(error: unknown, topics: string[]): Map<string, Array<{ partition: number; leader: number }>> | undefined {
  const response = isPlatformaticError(error) && error.code === 'PLT_KFK_RESPONSE' ? (error as { response?: unknown }).response : undefined;
  const answered = (response as Partial<MetadataAnswer> | undefined)?.topics;
  if (!Array.isArray(answered)) return undefined;
  const result = new Map<string, Array<{ partition: number; leader: number }>>();
  for (const topic of topics) {
    const t = answered.find((a) => a.name === topic);
    if (t === undefined || t.errorCode !== 0) return undefined;
    result.set(
      topic,
      t.partitions.map((p) => ({ partition: p.partitionIndex, leader: p.leaderId })).sort((a, b) => a.partition - b.partition),
    );
  }
  return result;
}
