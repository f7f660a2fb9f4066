import fs from 'node:fs';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { ConfigError, RuleFileError, RuleSyntaxError } from '../errors.js';
import { TopicNotFoundError } from '../kafka/compacted-table.js';
import type { KafkaFacade, OutgoingRecord } from '../kafka/facade.js';
import { rulesTopicFeed } from '../kafka/rules-feed.js';
import { whileTopicIsNew } from '../kafka/topics.js';
import { canonicalTenantId } from '../model/tenant.js';
import { compileRuleSet } from '../rules/compile.js';
import { RuleBook, type TenantRule } from '../rules/rule-book.js';
import { loadRuleFile } from '../rules/rule-file.js';
import { encodeRuleValue, planPut, ruleRecordKey, type PutPlan } from '../rules/rule-record.js';
import { makeTable } from './table.js';

/** What `rules put|list|delete` need to reach the rules topic. */
export interface RulesTopic {
  kafka: KafkaFacade;
  topic: string;
  logger: Logger;
  /** Longest time to read the topic to its end (ms). */
  timeoutMs: number;
}

/** The tenant of --tenant, lower-cased; a ConfigError (exit 2) when it is not a UUID. */
export function tenantArg(value: string): string {
  const tenantId = canonicalTenantId(value);
  if (tenantId === undefined) throw new ConfigError(`--tenant must be a tenant UUID (got ${JSON.stringify(value)})`);
  return tenantId;
}

/** Reads the rules topic to its end into a RuleBook, runs `fn` with it, closes it. */
async function withRuleBook<T>(rules: RulesTopic, createTopic: boolean, fn: (book: RuleBook) => Promise<T>): Promise<T> {
  const feed = rulesTopicFeed(rules.kafka, { topic: rules.topic, logger: rules.logger, startTimeoutMs: rules.timeoutMs, createTopic });
  const book = new RuleBook({ feed, logger: rules.logger, registry: new Registry() });
  await book.start();
  try {
    return await fn(book);
  } finally {
    await book.close();
  }
}

async function produce(kafka: KafkaFacade, topic: string, records: OutgoingRecord[]): Promise<void> {
  if (records.length === 0) return;
  // Idempotent, one request in flight, every replica: the records land once, in this order
  // (an idempotent producer retrying for about 30 s, as dlq replay's does).
  const producer = kafka.producer({ delivery: 'idempotent' });
  await producer.connect();
  try {
    // The topic may have just been created (rules put): a broker may not know it yet.
    await whileTopicIsNew(() => producer.send(topic, records));
  } finally {
    await producer.disconnect();
  }
}

/**
 * `rules put`: every rule of the file is checked and compiled first (any problem: RuleFileError,
 * nothing produced); then the topic (created compacted if missing) is read to its end and one
 * record is produced per new or changed rule, plus a tombstone per rule of the tenant missing
 * from the file when `prune`.
 */
export async function putRules(rules: RulesTopic, tenantId: string, file: string, prune: boolean): Promise<PutPlan> {
  if (!fs.statSync(file, { throwIfNoEntry: false })?.isFile()) throw new ConfigError(`--file ${file}: no such file`);
  const fileRules = await loadRuleFile(file);
  try {
    compileRuleSet(fileRules.map((r) => ({ ...r, enabled: true })));
  } catch (e) {
    if (e instanceof RuleSyntaxError) throw new RuleFileError(file, [e.message]);
    throw e;
  }
  return withRuleBook(rules, true, async (book) => {
    const plan = planPut(fileRules, book.list(tenantId), prune);
    if (plan.conflicts.length > 0) throw new RuleFileError(file, plan.conflicts);
    await produce(rules.kafka, rules.topic, [
      ...plan.put.map((r) => ({ key: ruleRecordKey(tenantId, r.id), value: encodeRuleValue(r) })),
      ...plan.deleted.map((id) => ({ key: ruleRecordKey(tenantId, id), value: null })),
    ]);
    return plan;
  });
}

export function renderPutPlan(plan: PutPlan, topic: string, tenantId: string): string {
  const lines = [
    ...plan.put.map((r) => `put        ${r.id} (version ${r.version})`),
    ...plan.unchanged.map((r) => `unchanged  ${r.id} (version ${r.version})`),
    ...plan.deleted.map((id) => `deleted    ${id}`),
  ];
  lines.push(`tenant ${tenantId} in topic ${topic}: put ${plan.put.length}, unchanged ${plan.unchanged.length}, deleted ${plan.deleted.length}`);
  return lines.join('\n');
}

/** `rules list`: every rule of the topic (or of one tenant); none when the topic does not exist yet. */
export async function listRules(rules: RulesTopic, tenantId: string | undefined): Promise<{ rules: TenantRule[]; topicExists: boolean }> {
  try {
    return await withRuleBook(rules, false, async (book) => ({ rules: book.list(tenantId), topicExists: true }));
  } catch (e) {
    if (e instanceof TopicNotFoundError) return { rules: [], topicExists: false };
    throw e;
  }
}

export function renderRuleTable(rules: readonly TenantRule[]): string {
  const table = makeTable({ head: ['tenant', 'id', 'severity', 'enabled', 'version', 'condition'] });
  for (const r of rules) {
    const lines = r.condition.trim().split('\n');
    table.push([r.tenantId, r.id, r.severity, r.enabled ? 'yes' : 'no', String(r.version ?? ''), `${lines[0]}${lines.length > 1 ? ' …' : ''}`]);
  }
  return table.toString();
}

/** One JSON object per rule, as `rules list --json` prints it. */
export function ruleJson(r: TenantRule): string {
  const { tenantId, id, name, description, severity, condition, enabled, version } = r;
  return JSON.stringify({ tenantId, id, name, description, severity, condition, enabled, version });
}

/** `rules delete`: a tombstone for the rule; an error (exit 1) when the topic does not hold it. */
export async function deleteRule(rules: RulesTopic, tenantId: string, ruleId: string): Promise<void> {
  const missing = new Error(`rule ${ruleId} of tenant ${tenantId} does not exist in topic ${rules.topic}`);
  try {
    await withRuleBook(rules, false, async (book) => {
      if (!book.list(tenantId).some((r) => r.id === ruleId)) throw missing;
      await produce(rules.kafka, rules.topic, [{ key: ruleRecordKey(tenantId, ruleId), value: null }]);
    });
  } catch (e) {
    if (e instanceof TopicNotFoundError) throw missing;
    throw e;
  }
}
