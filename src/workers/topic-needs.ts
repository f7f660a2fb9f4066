import { checkpointTopicNeed } from '../kafka/checkpoint-store.js';
import { RULES_TOPIC_CONFIG } from '../kafka/rules-feed.js';
import type { TopicNeed } from '../kafka/topics.js';
import { archiveSettings, type WorkerRoleName } from '../config/settings.js';

/**
 * The topics each worker group needs, in one place: what a worker ensures at start and what
 * `spanledger topics create` ensures before any worker (or a Collector) runs, so that the two
 * cannot drift apart.
 */

/** A worker's topics: its source, its dead-letter topic (sized from the source's limit), then what its stages read and write. */
export function workerTopicNeeds(worker: { topic: string; dlqTopic: string; topics?: TopicNeed[] }, numPartitions: number): TopicNeed[] {
  return [{ topic: worker.topic, numPartitions }, { topic: worker.dlqTopic, numPartitions, deadLettersOf: worker.topic }, ...(worker.topics ?? [])];
}

/** What the rule worker's stage reads and writes besides its source and dead-letter topics. */
export function ruleStageTopicNeeds(topics: { signalsTopic: string; rulesTopic: string; checkpointTopic: string }, numPartitions: number): TopicNeed[] {
  return [{ topic: topics.signalsTopic, numPartitions }, { topic: topics.rulesTopic, ...RULES_TOPIC_CONFIG }, checkpointTopicNeed(topics.checkpointTopic, numPartitions)];
}

/** The groups `spanledger topics create` knows: the worker roles and the archive workers. */
export type TopicGroup = WorkerRoleName | 'archive';

/** Every topic name a group's workers use, as the settings name them. */
export interface GroupTopicNames {
  spansTopic: string;
  spansDlqTopic: string;
  rulesTopic: string;
  rulesDlqTopic: string;
  rulesCheckpointTopic: string;
  signalsTopic: string;
  signalsDlqTopic: string;
  /** Absent: the archive group's topics are not asked for. */
  archiveDlqTopic?: string;
}

/** The topic a group's workers consume: its partitions bound how many of them get records. */
export function groupSourceTopic(group: TopicGroup, names: GroupTopicNames): string {
  return group === 'signals' ? names.signalsTopic : names.spansTopic;
}

/** The topics of the given worker groups, each once (the spans topic is read by two groups; the first need of a topic wins). */
export function groupTopicNeeds(groups: readonly TopicGroup[], names: GroupTopicNames, numPartitions: number): TopicNeed[] {
  const byGroup: Record<TopicGroup, () => TopicNeed[]> = {
    spans: () => workerTopicNeeds({ topic: names.spansTopic, dlqTopic: names.spansDlqTopic }, numPartitions),
    rules: () =>
      workerTopicNeeds(
        { topic: names.spansTopic, dlqTopic: names.rulesDlqTopic, topics: ruleStageTopicNeeds({ signalsTopic: names.signalsTopic, rulesTopic: names.rulesTopic, checkpointTopic: names.rulesCheckpointTopic }, numPartitions) },
        numPartitions,
      ),
    signals: () => workerTopicNeeds({ topic: names.signalsTopic, dlqTopic: names.signalsDlqTopic }, numPartitions),
    archive: () => workerTopicNeeds({ topic: names.spansTopic, dlqTopic: names.archiveDlqTopic ?? archiveSettings.dlqTopic.default }, numPartitions),
  };
  const needs = new Map<string, TopicNeed>();
  for (const group of groups) for (const need of byGroup[group]()) if (!needs.has(need.topic)) needs.set(need.topic, need);
  return [...needs.values()];
}
