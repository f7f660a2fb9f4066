import type { KafkaAdmin, KafkaClientKind, KafkaFacade, KafkaFacadeOptions } from './facade.js';

/**
 * The Kafka facade of the client KAFKA_CLIENT names: the one way code outside src/kafka reaches
 * Kafka. Each call makes a new client (its own connections). The client's library is loaded here,
 * on first use, and only the one named: loading @platformatic/kafka costs ~0.9 s of CPU and
 * ~100 MiB, which a kafkajs process, or one that never reaches Kafka, need not pay.
 */
export async function createKafkaFacade(options: KafkaFacadeOptions & { client: KafkaClientKind }): Promise<KafkaFacade> {
  const { client, ...facadeOptions } = options;
  switch (client) {
    case 'kafkajs':
      return (await import('./kafkajs/facade.js')).createKafkaJsFacade(facadeOptions);
    case 'platformatic':
      return (await import('./platformatic/index.js')).createPlatformaticFacade(facadeOptions);
  }
}

/** Committed offset vs. end offset per partition of a topic for a group (lag = end - committed; nothing committed counts as 0). */
export async function groupLag(admin: KafkaAdmin, group: string, topic: string): Promise<Array<{ partition: number; committed: bigint; end: bigint; lag: bigint }>> {
  const ends = await admin.topicOffsets(topic);
  const committed = await admin.committedOffsets(group, [topic]);
  const byPartition = new Map<number, bigint>();
  for (const c of committed) if (c.topic === topic && c.offset !== null) byPartition.set(c.partition, c.offset);
  return ends
    .map((e) => {
      const c = byPartition.get(e.partition) ?? 0n;
      return { partition: e.partition, committed: c, end: e.high, lag: e.high - c };
    })
    .sort((a, b) => a.partition - b.partition);
}
