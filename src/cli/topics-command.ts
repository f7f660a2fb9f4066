import { Option, type Command } from 'commander';
import { ConfigError } from '../errors.js';
import { archiveSettings, kafkaSettings, ruleSettings, ruleWorkerSettings, signalSettings, spanSettings } from '../config/settings.js';
import { createKafkaFacade } from '../kafka/client.js';
import { ensureTopics, type TopicNeed } from '../kafka/topics.js';
import { createLogger } from '../observability/logger.js';
import { groupSourceTopic, groupTopicNeeds, type TopicGroup } from '../workers/topic-needs.js';
import { addSettings, settingsOf } from './options.js';

/** Every topic of the three worker groups, under flags of their own (each worker command calls its own --topic and --dlq-topic). */
export const topicNameSettings = {
  spansTopic: { ...spanSettings.topic, flag: 'spans-topic', description: 'topic the span and rule workers read (and a Collector writes)' },
  spansDlqTopic: { ...spanSettings.dlqTopic, flag: 'spans-dlq-topic' },
  rulesTopic: ruleSettings.topic,
  rulesDlqTopic: { ...ruleWorkerSettings.dlqTopic, flag: 'rules-dlq-topic' },
  rulesCheckpointTopic: { ...ruleWorkerSettings.checkpointTopic, flag: 'rules-checkpoint-topic' },
  signalsTopic: { ...signalSettings.topic, flag: 'signals-topic', description: 'topic the rule workers write and the signal workers read' },
  signalsDlqTopic: { ...signalSettings.dlqTopic, flag: 'signals-dlq-topic' },
  archiveDlqTopic: { ...archiveSettings.dlqTopic, flag: 'archive-dlq-topic' },
};

const GROUPS: readonly TopicGroup[] = ['spans', 'rules', 'signals', 'archive'];
/** The archive workers are optional (they need a bucket): their topic only when asked for. */
const DEFAULT_GROUPS: readonly TopicGroup[] = ['spans', 'rules', 'signals'];

/** `--groups spans,rules` → the groups, in the order given; anything else is a ConfigError. */
export function parseGroups(value: string): TopicGroup[] {
  const groups = value.split(',').map((g) => g.trim()).filter((g) => g.length > 0);
  const unknown = groups.filter((g) => !GROUPS.includes(g as TopicGroup));
  if (groups.length === 0 || unknown.length > 0) throw new ConfigError(`--groups takes a comma-separated list of ${GROUPS.join(', ')} (got ${JSON.stringify(value)})`);
  return [...new Set(groups)] as TopicGroup[];
}

/**
 * One line per topic: created or found, with its partitions; a topic a group consumes (`consumed`)
 * found with fewer partitions than it would be created with says what that costs (a Collector
 * that wrote first got it from the broker's default, usually one partition).
 */
export function topicLines(needs: TopicNeed[], created: readonly string[], partitions: ReadonlyMap<string, number>, consumed: ReadonlySet<string>): string[] {
  const width = Math.max(...needs.map((n) => n.topic.length));
  return needs.map((need) => {
    const count = partitions.get(need.topic);
    const verb = created.includes(need.topic) ? 'created' : 'found  ';
    const shown = count === undefined ? 'partitions unknown' : `${count} partition${count === 1 ? '' : 's'}`;
    const short =
      consumed.has(need.topic) && count !== undefined && count < need.numPartitions
        ? `: fewer than the ${need.numPartitions} it would be created with; at most ${count} worker${count === 1 ? '' : 's'} of each group reading it get${count === 1 ? 's' : ''} records (add partitions: kafka-topics.sh --alter --topic ${need.topic} --partitions ${need.numPartitions})`
        : '';
    return `${verb} ${need.topic.padEnd(width)}  ${shown}${short}`;
  });
}

/** `spanledger topics create`: the topics of the worker groups, made before any worker or Collector runs. */
export function addTopicsCommand(program: Command): void {
  const cmd = program
    .command('topics')
    .description('Kafka topics of the worker groups')
    .command('create')
    .description(
      'create the topics the worker groups use (TOPIC_PARTITIONS partitions each, the rules topic 1, compacted topics compacted), leaving existing ones as they are; prints each with its partition count. Run it before a Collector first writes: the broker would create a missing topic with its default of one partition',
    )
    .addOption(new Option('--groups <list>', `worker groups whose topics to create, comma-separated, of ${GROUPS.join(', ')}`).default(DEFAULT_GROUPS.join(',')));
  addSettings(addSettings(cmd, topicNameSettings), kafkaSettings).action(async (opts: { groups: string }, c: Command) => {
    const groups = parseGroups(opts.groups);
    const kafka = settingsOf(c, kafkaSettings);
    const names = settingsOf(c, topicNameSettings);
    const needs = groupTopicNeeds(groups, names, kafka.topicPartitions);
    // Errors only: a retried metadata call while new topics get their leaders is no news here.
    const client = await createKafkaFacade({ client: kafka.client, brokers: kafka.brokers, clientId: kafka.clientId, logger: createLogger('error') });
    const { created } = await ensureTopics(client, needs);
    const admin = client.admin();
    await admin.connect();
    try {
      const described = await admin.topicPartitions(needs.map((n) => n.topic));
      const counts = new Map([...described].map(([topic, ps]) => [topic, ps.length]));
      console.log(topicLines(needs, created, counts, new Set(groups.map((g) => groupSourceTopic(g, names)))).join('\n'));
    } finally {
      await admin.disconnect();
    }
  });
}
