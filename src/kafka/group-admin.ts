import kafkajs, { type Kafka } from 'kafkajs';
import type { KafkaAdmin } from './facade.js';

// kafkajs is CommonJS and Node sees only some of its exports as named ones.
const { AssignerProtocol } = kafkajs;

/** The admin calls the topics command and the partition check need: topics' partitions and a group's members. */
export type GroupAdmin = Pick<KafkaAdmin, 'connect' | 'disconnect' | 'topicPartitions' | 'describeGroups'>;

/**
 * Those calls on a kafkajs client, as KafkaAdmin specifies them. A stopgap until the workers and
 * commands get a KafkaFacade: then `facade.admin()` is a GroupAdmin and this file goes.
 */
export function kafkajsGroupAdmin(kafka: Pick<Kafka, 'admin'>): GroupAdmin {
  const admin = kafka.admin();
  return {
    connect: () => admin.connect(),
    disconnect: () => admin.disconnect(),
    async topicPartitions(topics) {
      const out = new Map<string, Array<{ partition: number; leader: number }>>();
      // kafkajs refuses to describe a topic the broker does not know; KafkaAdmin leaves it out.
      const existing = new Set(await admin.listTopics());
      const known = topics.filter((t) => existing.has(t));
      if (known.length === 0) return out;
      for (const t of (await admin.fetchTopicMetadata({ topics: known })).topics) {
        out.set(t.name, t.partitions.map((p) => ({ partition: p.partitionId, leader: p.leader })));
      }
      return out;
    },
    async describeGroups(groups) {
      const { groups: described } = await admin.describeGroups(groups);
      return described.map((g) => ({
        group: g.groupId,
        state: g.state,
        members: g.members.map((m) => ({
          memberId: m.memberId,
          clientId: m.clientId,
          clientHost: m.clientHost,
          groupInstanceId: null,
          assignment: m.memberAssignment.length === 0 ? {} : (AssignerProtocol.MemberAssignment.decode(m.memberAssignment)?.assignment ?? {}),
        })),
      }));
    },
  };
}
