import type { Logger } from 'pino';
import type { RuleRecordFeed } from '../rules/rule-book.js';
import { CompactedTable } from './compacted-table.js';
import type { KafkaFacade } from './facade.js';

/** How `rules put` and a rule worker create the rules topic: compacted, one partition (see README, "Managing rules"). */
export const RULES_TOPIC_CONFIG = { numPartitions: 1, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] };

export interface RulesFeedOptions {
  /** The rules topic (RULES_TOPIC). */
  topic: string;
  logger: Logger;
  /** start() fails if the topic cannot be read to its end within this time (ms). Default 30 s. */
  startTimeoutMs?: number;
  /** Create the topic (compacted, one partition) when it does not exist, instead of failing. */
  createTopic?: boolean;
}

/** The rules topic as a RuleBook reads it: a CompactedTable of a throwaway group `spanledger-rules-<uuid>`. */
export function rulesTopicFeed(kafka: KafkaFacade, options: RulesFeedOptions): RuleRecordFeed {
  return {
    topic: options.topic,
    open: (onRecord) =>
      new CompactedTable({
        kafka,
        topic: options.topic,
        logger: options.logger,
        groupPrefix: 'spanledger-rules',
        onRecord,
        ...(options.startTimeoutMs === undefined ? {} : { startTimeoutMs: options.startTimeoutMs }),
        ...(options.createTopic ? { create: RULES_TOPIC_CONFIG } : {}),
      }),
  };
}
