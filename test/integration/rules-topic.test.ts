import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Kafka, Message } from 'kafkajs';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { CompactedTable, TopicNotFoundError, type RecordMeta } from '../../src/kafka/compacted-table.js';
import { rulesTopicFeed } from '../../src/kafka/rules-feed.js';
import { RuleBook, type RuleChange } from '../../src/rules/rule-book.js';
import { CLI, ROOT, createTopic, kafkaClient, sleep, tempDir, uniqueName, kafkaFacade } from '../support/harness.js';

const run = promisify(execFile);
const brokers = inject('kafkaBrokers');
const kafka: Kafka = kafkaClient(brokers);
const quiet = pino({ level: 'silent' });
const TENANT = '6f9619ff-8b86-d011-b42d-00c04fc964ff';
const OTHER = '0b7d4c2e-1a3f-4e5d-9c8b-7a6f5e4d3c2b';
const dir = tempDir('rules-topic');
const topics: string[] = [];

afterAll(async () => {
  fs.rmSync(dir, { recursive: true, force: true });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    await admin.deleteTopics({ topics: topics.filter((t) => existing.has(t)) }).catch(() => undefined);
  } finally {
    await admin.disconnect();
  }
});

function rulesTopic(): string {
  const topic = uniqueName('rules-test');
  topics.push(topic);
  return topic;
}

/** `spanledger <args>` as a child process: its exit code and output, never a rejection. */
async function cli(args: string[], topic: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env, KAFKA_BROKERS: brokers, RULES_TOPIC: topic } });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const failed = e as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

function ruleFile(name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

async function send(topic: string, messages: Message[]): Promise<void> {
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  try {
    await producer.send({ topic, acks: -1, messages });
  } finally {
    await producer.disconnect();
  }
}

async function endOffsets(topic: string): Promise<string[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return (await admin.fetchTopicOffsets(topic)).sort((a, b) => a.partition - b.partition).map((o) => o.high);
  } finally {
    await admin.disconnect();
  }
}

async function topicConfig(topic: string, name: string): Promise<string | undefined> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const described = await admin.describeConfigs({ resources: [{ type: 2 /* TOPIC */, name: topic, configNames: [name] }], includeSynonyms: false });
    return described.resources[0]?.configEntries.find((c) => c.configName === name)?.configValue;
  } finally {
    await admin.disconnect();
  }
}

async function metric(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const m = await registry.getSingleMetric(name)!.get();
  return m.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value;
}

const TWO_RULES = `rules:
  - id: big-payment
    name: Big payment
    severity: high
    condition: payment.charge.where(amount > 1000)
  - id: retries
    severity: medium
    version: 7
    condition: |
      count(http.retry) > 3
      and not http.ok`;

describe('CompactedTable', () => {
  it('reads every partition to its end at start, then follows live; catchUp sees a record just written; close deletes its group', async () => {
    const topic = rulesTopic();
    await createTopic(kafka, topic, 3);
    await send(topic, [
      { key: 'a', value: '1', partition: 0 },
      { key: 'b', value: '1', partition: 1 },
      { key: 'a', value: '2', partition: 0 },
      { key: 'c', value: null, partition: 2 },
      { key: null, value: 'no key', partition: 2 },
    ]);
    const seen: Array<[string, string | null, number]> = [];
    const table = new CompactedTable({ kafka: kafkaFacade(brokers), topic, logger: quiet, onRecord: (key: string, value: Buffer | null, meta: RecordMeta) => seen.push([key, value?.toString() ?? null, meta.partition]) });
    await table.start();
    try {
      // start() resolved: everything written before it is handed over, in order per partition.
      expect(seen.filter((s) => s[2] === 0)).toEqual([
        ['a', '1', 0],
        ['a', '2', 0],
      ]);
      expect(seen.filter((s) => s[2] !== 0).sort()).toEqual([
        ['', 'no key', 2],
        ['b', '1', 1],
        ['c', null, 2],
      ]);
      await send(topic, [{ key: 'd', value: 'live', partition: 1 }]);
      await table.catchUp(30_000);
      expect(seen.at(-1)).toEqual(['d', 'live', 1]);
      expect(seen).toHaveLength(6);
      await table.catchUp(5_000); // nothing new: resolves at once
    } finally {
      await table.close();
    }
    const admin = kafka.admin();
    await admin.connect();
    try {
      expect((await admin.listGroups()).groups.map((g) => g.groupId)).not.toContain(table.groupId);
    } finally {
      await admin.disconnect();
    }
    await expect(table.catchUp(1000)).rejects.toThrow(/not running/);
  });

  it('fails at start, naming the topic, when it cannot read it in time, and lets go of what it connected', async () => {
    const topic = rulesTopic();
    await createTopic(kafka, topic, 1);
    const table = new CompactedTable({ kafka: kafkaFacade(brokers), topic, logger: quiet, onRecord: () => undefined, startTimeoutMs: 1 });
    await expect(table.start()).rejects.toThrow(`cannot connect to read topic ${topic} within 1 ms`);
    // The connection under way when start() gave up is closed once it completes: no group is left behind.
    const admin = kafka.admin();
    await admin.connect();
    try {
      await sleep(3_000);
      expect((await admin.listGroups()).groups.map((g) => g.groupId)).not.toContain(table.groupId);
    } finally {
      await admin.disconnect();
    }
  });

  it('fails at start, naming the topic, when the topic does not exist', async () => {
    const topic = uniqueName('rules-missing');
    const table = new CompactedTable({ kafka: kafkaFacade(brokers), topic, logger: quiet, onRecord: () => undefined, startTimeoutMs: 20_000 });
    const error = await table.start().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TopicNotFoundError);
    expect((error as Error).message).toBe(`topic ${topic} does not exist`);
  });
});

describe('spanledger rules put|list|delete', () => {
  it('puts a file\'s rules once, keeps unchanged ones, prunes, lists and deletes', async () => {
    const topic = rulesTopic();
    const examples = path.join(ROOT, 'examples', 'rules.yaml');

    const first = await cli(['rules', 'put', '--tenant', TENANT.toUpperCase(), '--file', examples], topic);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain(`tenant ${TENANT} in topic ${topic}: put 6, unchanged 0, deleted 0`);
    expect(await topicConfig(topic, 'cleanup.policy')).toBe('compact');
    expect(await endOffsets(topic)).toEqual(['6']);

    const again = await cli(['rules', 'put', '--tenant', TENANT, '--file', examples], topic);
    expect(again.stdout).toContain('put 0, unchanged 6, deleted 0');
    expect(await endOffsets(topic)).toEqual(['6']);

    expect((await cli(['rules', 'put', '--tenant', OTHER, '--file', ruleFile('two.yaml', TWO_RULES)], topic)).stdout).toContain('put 2, unchanged 0, deleted 0');
    // The example file minus five rules, one of them changed: put 1, delete 5 with --prune.
    const pruned = ruleFile(
      'one.yaml',
      `rules:
  - id: too-many-retries
    name: More than 5 retries
    severity: medium
    condition: count(http.retry) > 5`,
    );
    const prune = await cli(['rules', 'put', '--tenant', TENANT, '--file', pruned, '--prune'], topic);
    expect(prune.code, prune.stderr).toBe(0);
    expect(prune.stdout).toContain('put 1, unchanged 0, deleted 5');
    expect(prune.stdout).toMatch(/deleted +high-value-payment-controls/);

    const json = await cli(['rules', 'list', '--json'], topic);
    expect(json.code, json.stderr).toBe(0);
    const listed = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(listed.map((r) => `${r.tenantId} ${r.id} ${r.severity} ${r.version}`)).toEqual([
      `${OTHER} big-payment HIGH ${listed[0]!.version}`,
      `${OTHER} retries MEDIUM 7`,
      `${TENANT} too-many-retries MEDIUM ${listed[2]!.version}`,
    ]);
    expect(listed[0]!.version).toMatch(/^sha256:[0-9a-f]{16}$/);
    expect(listed[2]).toMatchObject({ name: 'More than 5 retries', condition: 'count(http.retry) > 5', enabled: true });

    const table = await cli(['rules', 'list', '--tenant', OTHER], topic);
    expect(table.stdout).toMatch(/retries .*MEDIUM .*yes .*7 .*count\(http\.retry\) > 3 …/);
    expect(table.stdout).not.toContain(TENANT);
    expect(table.stdout).toContain(`2 rule(s) of 1 tenant(s) in topic ${topic}`);

    const deleted = await cli(['rules', 'delete', '--tenant', OTHER, '--id', 'retries'], topic);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(deleted.stdout).toContain(`deleted retries of tenant ${OTHER}`);
    const gone = await cli(['rules', 'delete', '--tenant', OTHER, '--id', 'retries'], topic);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain(`spanledger: rule retries of tenant ${OTHER} does not exist in topic ${topic}`);
    expect((await cli(['rules', 'list', '--json', '--tenant', OTHER], topic)).stdout.trim().split('\n')).toHaveLength(1);
  });

  it('refuses a file with errors whole: every problem printed, exit 1, nothing produced', async () => {
    const topic = rulesTopic();
    expect((await cli(['rules', 'put', '--tenant', TENANT, '--file', ruleFile('ok.yaml', TWO_RULES)], topic)).code).toBe(0);
    const bad = ruleFile(
      'bad.yaml',
      `rules:
  - id: fine
    severity: low
    condition: payment.charge
  - id: broken
    severity: low
    condition: payment.charge.where(amount >
  - id: worse
    severity: urgent
    condition: x.where(a matches "(?=lookahead)")`,
    );
    const result = await cli(['rules', 'put', '--tenant', TENANT, '--file', bad, '--prune'], topic);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('3 errors');
    expect(result.stderr).toMatch(/rule broken: 1:\d+: /);
    expect(result.stderr).toContain('rules[2] (worse): severity: must be one of');
    expect(result.stderr).toMatch(/rule worse: 1:\d+: /);
    expect(await endOffsets(topic)).toEqual(['2']);

    // A file version kept while the rule changed is refused too.
    const sameVersion = ruleFile('same-version.yaml', TWO_RULES.replace('count(http.retry) > 3', 'count(http.retry) > 4'));
    const conflict = await cli(['rules', 'put', '--tenant', TENANT, '--file', sameVersion], topic);
    expect(conflict.code).toBe(1);
    expect(conflict.stderr).toContain('rule retries: changed, but its version 7 is the one already in the topic');
    expect(await endOffsets(topic)).toEqual(['2']);

    // A file with errors is refused before the topic is touched: a new topic is not even created.
    const fresh = rulesTopic();
    expect((await cli(['rules', 'put', '--tenant', TENANT, '--file', bad], fresh)).code).toBe(1);
    const admin = kafka.admin();
    await admin.connect();
    try {
      expect(await admin.listTopics()).not.toContain(fresh);
    } finally {
      await admin.disconnect();
    }
  });

  it('exits 2 with one line on invalid arguments', async () => {
    const topic = rulesTopic();
    const notUuid = await cli(['rules', 'put', '--tenant', 'acme', '--file', ruleFile('ok2.yaml', TWO_RULES)], topic);
    expect([notUuid.code, notUuid.stderr.trim()]).toEqual([2, 'spanledger: --tenant must be a tenant UUID (got "acme")']);
    const noFile = await cli(['rules', 'put', '--tenant', TENANT, '--file', path.join(dir, 'nope.yaml')], topic);
    expect([noFile.code, noFile.stderr.trim()]).toEqual([2, `spanledger: --file ${path.join(dir, 'nope.yaml')}: no such file`]);
    expect((await cli(['rules', 'delete', '--tenant', TENANT], topic)).code).toBe(2);
    expect((await cli(['rules', 'list', '--tenant', 'x'], topic)).code).toBe(2);
  });
});

describe('RuleBook on the rules topic', () => {
  it('follows rules live as they are put, changed and deleted; a bad record is counted and skipped, the previous version kept', async () => {
    const topic = rulesTopic();
    const registry = new Registry();
    const book = new RuleBook({ feed: rulesTopicFeed(kafkaFacade(brokers), { topic, logger: quiet, createTopic: true }), logger: quiet, registry });
    const changes: RuleChange[] = [];
    book.onChange((c) => changes.push(c));
    await book.start();
    try {
      expect(await topicConfig(topic, 'cleanup.policy')).toBe('compact');
      expect(book.rulesFor(TENANT)).toBeUndefined();

      expect((await cli(['rules', 'put', '--tenant', TENANT, '--file', ruleFile('live.yaml', TWO_RULES)], topic)).code).toBe(0);
      await book.catchUp(30_000);
      const first = book.rulesFor(TENANT)!;
      expect(first.rules.map((r) => r.definition.id)).toEqual(['big-payment', 'retries']);
      expect(book.tenants()).toEqual([TENANT]);

      // A new version: rulesFor compiles it on the next call.
      const v8 = TWO_RULES.replace('version: 7', 'version: 8').replace('count(http.retry) > 3', 'count(http.retry) > 9');
      expect((await cli(['rules', 'put', '--tenant', TENANT, '--file', ruleFile('live-v8.yaml', v8)], topic)).stdout).toContain('put 1, unchanged 1');
      await book.catchUp(30_000);
      const second = book.rulesFor(TENANT)!;
      expect(second).not.toBe(first);
      expect(second.rules.find((r) => r.definition.id === 'retries')?.definition).toMatchObject({ version: 8, condition: 'count(http.retry) > 9\nand not http.ok\n' });

      // Bad records straight to the topic: skipped and counted; the good version 8 stays.
      await send(topic, [
        { key: `${TENANT}/retries`, value: JSON.stringify({ id: 'retries', name: 'r', severity: 'MEDIUM', condition: 'count(http.retry) >', enabled: true, version: 9 }) },
        { key: `${TENANT}/retries`, value: 'not json' },
        { key: `${TENANT}/retries`, value: JSON.stringify({ id: 'other', severity: 'LOW', condition: 'x' }) },
        { key: 'not-a-tenant/retries', value: JSON.stringify({ id: 'retries', severity: 'LOW', condition: 'x' }) },
        { key: `${TENANT}/retries`, value: JSON.stringify({ id: 'retries', severity: 'LOW', condition: 'x', when: 'now' }) },
      ]);
      await book.catchUp(30_000);
      for (const reason of ['condition', 'json', 'id_mismatch', 'key', 'schema']) expect(await metric(registry, 'spanledger_rules_bad_total', { reason }), reason).toBe(1);
      expect(book.rulesFor(TENANT)).toBe(second);
      expect(book.list(TENANT).find((r) => r.id === 'retries')?.version).toBe(8);

      // Deleted through the CLI: gone from the book; the last rule deleted, no rule set at all.
      expect((await cli(['rules', 'delete', '--tenant', TENANT, '--id', 'retries'], topic)).code).toBe(0);
      await book.catchUp(30_000);
      expect(book.rulesFor(TENANT)!.rules.map((r) => r.definition.id)).toEqual(['big-payment']);
      expect((await cli(['rules', 'put', '--tenant', TENANT, '--file', ruleFile('empty.yaml', 'rules: []'), '--prune'], topic)).stdout).toContain('deleted 1');
      await book.catchUp(30_000);
      expect(book.rulesFor(TENANT)).toBeUndefined();
      expect(book.tenants()).toEqual([]);

      expect(changes.map((c) => `${c.ruleId} ${c.previous?.version ?? '-'} → ${c.rule?.version ?? '-'}`)).toEqual([
        `big-payment - → ${changes[0]!.rule!.version}`,
        'retries - → 7',
        'retries 7 → 8',
        'retries 8 → -',
        `big-payment ${changes[0]!.rule!.version} → -`,
      ]);
      expect(await metric(registry, 'spanledger_rules_cache_misses_total')).toBe(3);
    } finally {
      await book.close();
    }
  });

  it('a book started later reads the same rules from the topic, the bad records skipped again', async () => {
    const topic = rulesTopic();
    expect((await cli(['rules', 'put', '--tenant', TENANT, '--file', ruleFile('later.yaml', TWO_RULES)], topic)).code).toBe(0);
    await send(topic, [{ key: `${TENANT}/big-payment`, value: '{' }]);
    const registry = new Registry();
    const book = new RuleBook({ feed: rulesTopicFeed(kafkaFacade(brokers), { topic, logger: quiet }), logger: quiet, registry });
    await book.start();
    try {
      expect(book.list().map((r) => `${r.tenantId} ${r.id}`)).toEqual([`${TENANT} big-payment`, `${TENANT} retries`]);
      expect(await metric(registry, 'spanledger_rules_bad_total', { reason: 'json' })).toBe(1);
      expect(await metric(registry, 'spanledger_rules_loaded', { tenant: TENANT })).toBe(2);
    } finally {
      await book.close();
    }
  });
});
