import { describe, expect, it } from 'vitest';
import { archiveSettings, ruleSettings, ruleWorkerSettings, signalSettings, spanSettings } from '../../../src/config/settings.js';
import { groupTopicNeeds, type GroupTopicNames } from '../../../src/workers/topic-needs.js';

const DEFAULT_NAMES: GroupTopicNames = {
  spansTopic: spanSettings.topic.default,
  spansDlqTopic: spanSettings.dlqTopic.default,
  rulesTopic: ruleSettings.topic.default,
  rulesDlqTopic: ruleWorkerSettings.dlqTopic.default,
  rulesCheckpointTopic: ruleWorkerSettings.checkpointTopic.default,
  signalsTopic: signalSettings.topic.default,
  signalsDlqTopic: signalSettings.dlqTopic.default,
  archiveDlqTopic: archiveSettings.dlqTopic.default,
};

describe('the topics of the worker groups', () => {
  it('are each group\'s source and dead-letter topics, plus the rule stage\'s topics, each once', () => {
    const needs = groupTopicNeeds(['spans', 'rules', 'signals'], DEFAULT_NAMES, 6);
    expect(needs.map((n) => n.topic)).toEqual(['spans', 'spans.dlq', 'spans.rules.dlq', 'signals', 'rules', 'rules.checkpoints', 'signals.dlq']);
    expect(needs.filter((n) => n.deadLettersOf !== undefined).map((n) => [n.topic, n.deadLettersOf])).toEqual([
      ['spans.dlq', 'spans'],
      ['spans.rules.dlq', 'spans'],
      ['signals.dlq', 'signals'],
    ]);
  });

  it('take TOPIC_PARTITIONS partitions, except the rules topic (one partition, compacted); compacted topics say so', () => {
    const needs = new Map(groupTopicNeeds(['rules'], DEFAULT_NAMES, 12).map((n) => [n.topic, n]));
    expect(needs.get('spans')!.numPartitions).toBe(12);
    expect(needs.get('signals')!.numPartitions).toBe(12);
    expect(needs.get('rules')).toMatchObject({ numPartitions: 1, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] });
    expect(needs.get('rules.checkpoints')!.configEntries).toContainEqual({ name: 'cleanup.policy', value: 'compact' });
  });

  it('of the archive group are the spans topic and its own dead-letter topic', () => {
    expect(groupTopicNeeds(['archive'], DEFAULT_NAMES, 6)).toEqual([
      { topic: 'spans', numPartitions: 6 },
      { topic: 'spans.archive.dlq', numPartitions: 6, deadLettersOf: 'spans' },
    ]);
  });

  it('of one group are only that group\'s', () => {
    expect(groupTopicNeeds(['signals'], DEFAULT_NAMES, 3)).toEqual([
      { topic: 'signals', numPartitions: 3 },
      { topic: 'signals.dlq', numPartitions: 3, deadLettersOf: 'signals' },
    ]);
  });
});
