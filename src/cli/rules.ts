import fs from 'node:fs';
import readline from 'node:readline';
import { InvalidArgumentError, type Command } from 'commander';
import pino from 'pino';
import { kafkaSettings, ruleSettings } from '../config/settings.js';
import { createKafkaFacade } from '../kafka/client.js';
import { describeErrors } from '../model/json-schema.js';
import { validateSpan, type Span } from '../model/span.js';
import { canonicalTenantId } from '../model/tenant.js';
import { loadRuleFile, RuleSetCache, TraceEvaluation, type RuleHit } from '../rules/index.js';
import { EXAMPLE_RULE_FILE, RULE_LANGUAGE } from '../rules/example-rule-file.js';
import { addSettings, settingsOf } from './options.js';
import { deleteRule, listRules, putRules, renderPutPlan, renderRuleTable, ruleJson, tenantArg, type RulesTopic } from './rules-topic.js';

export interface TraceResult {
  tenantId: string;
  traceId: string;
  spanCount: number;
  hits: RuleHit[];
}

/**
 * Offline evaluation: spans (spanledger JSON lines, any order) grouped by tenant and trace, each
 * trace evaluated incrementally against the file's rules. Only one trace state per trace is held,
 * never the spans. A line that is not a valid span stops the run, naming the line.
 */
export async function testRules(rulesFile: string, spansFile: string): Promise<{ traces: TraceResult[]; spans: number; rules: number }> {
  const rules = await loadRuleFile(rulesFile);
  const cache = new RuleSetCache();
  const traces = new Map<string, { tenantId: string; traceId: string; evaluation: TraceEvaluation }>();
  const lines = readline.createInterface({ input: fs.createReadStream(spansFile), crlfDelay: Infinity });
  let lineNumber = 0;
  let spans = 0;
  for await (const line of lines) {
    lineNumber++;
    if (line.trim() === '') continue;
    const { tenantId, span } = spanOfLine(line, `${spansFile}:${lineNumber}`);
    const key = `${tenantId}/${span.traceId}`;
    let trace = traces.get(key);
    if (!trace) {
      trace = { tenantId, traceId: span.traceId, evaluation: new TraceEvaluation(cache.get(tenantId, rules)) };
      traces.set(key, trace);
    }
    trace.evaluation.add(span);
    spans++;
  }
  const results = [...traces.values()].map((t) => ({ tenantId: t.tenantId, traceId: t.traceId, spanCount: t.evaluation.state.spanCount, hits: t.evaluation.hits() }));
  return { traces: results, spans, rules: rules.filter((r) => r.enabled).length };
}

function spanOfLine(line: string, where: string): { tenantId: string; span: Span } {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    throw new Error(`${where}: not JSON: ${(e as Error).message}`);
  }
  if (!validateSpan(value)) throw new Error(`${where}: ${describeErrors(validateSpan.errors)}`);
  const tenantId = value.tenantId === undefined ? undefined : canonicalTenantId(value.tenantId);
  if (tenantId === undefined) throw new Error(`${where}: tenantId: is required (a span log line carries its tenant)`);
  return { tenantId, span: value };
}

/** One JSON object per rule that fired on a trace. */
export function hitLines(traces: TraceResult[]): string[] {
  return traces.flatMap((t) =>
    t.hits.map((h) => JSON.stringify({ tenantId: t.tenantId, traceId: t.traceId, ruleId: h.ruleId, ruleName: h.ruleName, severity: h.severity, message: h.message, evidence: h.evidence })),
  );
}

export function renderResults(result: { traces: TraceResult[]; spans: number; rules: number }): string {
  const out: string[] = [];
  for (const t of result.traces) {
    if (t.hits.length === 0) continue;
    out.push(`tenant ${t.tenantId} trace ${t.traceId} (${t.spanCount} spans)`);
    for (const h of t.hits) {
      out.push(`  ${h.severity} ${h.ruleId}: ${h.message}`);
      if (h.evidence.spanIds.length > 0) out.push(`    spans: ${h.evidence.spanIds.join(', ')}`);
    }
  }
  const signals = result.traces.reduce((n, t) => n + t.hits.length, 0);
  const fired = result.traces.filter((t) => t.hits.length > 0).length;
  out.push(`${result.spans} spans, ${result.traces.length} traces, ${result.rules} rules: ${signals} signal(s) on ${fired} trace(s)`);
  return out.join('\n');
}

/** The settings of `rules put|list|delete`: the rules topic and how to reach the broker. */
const rulesTopicSettings = { topic: ruleSettings.topic, brokers: kafkaSettings.brokers, clientId: kafkaSettings.clientId, client: kafkaSettings.client };

async function rulesTopicOf(cmd: Command, timeoutMs: number): Promise<RulesTopic> {
  const settings = settingsOf(cmd, rulesTopicSettings);
  // Warnings (bad rule records, the Kafka client's) go to stderr: stdout carries the result.
  const logger = pino({ level: 'warn', base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ fd: 2, sync: true }));
  // The client's own retried warnings (a coordinator still loading) are noise here: errors only.
  const kafka = await createKafkaFacade({ client: settings.client, brokers: settings.brokers, clientId: settings.clientId, logger: logger.child({}, { level: 'error' }) });
  return { kafka, topic: settings.topic, logger, timeoutMs };
}

function timeoutArg(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a whole number of milliseconds >= 1');
  return n;
}

/** `--timeout-ms` and the settings of a command reading the rules topic. */
function rulesTopicCommand(cmd: Command): Command {
  return addSettings(cmd.option('--timeout-ms <ms>', 'longest wait for the rules topic to be read to its end (ms)', timeoutArg, 30_000), rulesTopicSettings);
}

export function registerRuleCommands(program: Command): void {
  const rules = program
    .command('rules')
    .description('trace rules (BeTrace DSL): test a rule file offline, manage the tenants\' rules in the rules topic')
    // A usage error (missing or unknown option, invalid value) exits 2, as a bad --tenant or --file does.
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

  rules
    .command('test')
    .description('evaluate a rule file offline against spans (JSON lines, any order): per trace, the rules that fired and why')
    .requiredOption('--file <rules.yaml>', 'rule file (YAML or JSON), see the example below')
    .requiredOption('--spans <trace.jsonl>', 'spans, one spanledger JSON span per line (span log lines), in any order')
    .option('--json', 'one JSON object per rule that fired on a trace (tenantId, traceId, ruleId, severity, message, evidence)', false)
    .addHelpText('after', `\nThe rule language (BeTrace's; README "Trace rules"):\n\n${RULE_LANGUAGE}\n\nExample rule file (every form: examples/language.yaml):\n\n${EXAMPLE_RULE_FILE}\n`)
    .action(async (opts: { file: string; spans: string; json: boolean }) => {
      const result = await testRules(opts.file, opts.spans);
      if (opts.json) {
        for (const line of hitLines(result.traces)) console.log(line);
      } else {
        console.log(renderResults(result));
      }
    });

  rulesTopicCommand(
    rules
      .command('put')
      .description('check and compile every rule of a file, then write them to the rules topic as one tenant\'s rules (one record per new or changed rule); nothing is written if any rule is wrong')
      .requiredOption('--tenant <uuid>', 'the tenant whose rules these are')
      .requiredOption('--file <rules.yaml>', 'rule file (YAML or JSON), as for `rules test`')
      .option('--prune', 'also delete the tenant\'s rules that are not in the file', false)
      .addHelpText('after', '\nA rule\'s version is the file\'s `version` if given, else a hash of its content: a rule that did not change is not written again.\nThe topic is created, compacted, with one partition, if it does not exist.\n'),
  ).action(async (opts: { tenant: string; file: string; prune: boolean; timeoutMs: number }, cmd: Command) => {
    const tenantId = tenantArg(opts.tenant);
    const topic = await rulesTopicOf(cmd, opts.timeoutMs);
    console.log(renderPutPlan(await putRules(topic, tenantId, opts.file, opts.prune), topic.topic, tenantId));
  });

  rulesTopicCommand(
    rules
      .command('list')
      .description('read the rules topic to its end and print the rules (records that are not valid rules are skipped, with a warning on stderr)')
      .option('--tenant <uuid>', 'only this tenant\'s rules (default: every tenant\'s)')
      .option('--json', 'one JSON object per rule (tenantId, id, name, description, severity, condition, enabled, version) instead of a table', false),
  ).action(async (opts: { tenant?: string; json: boolean; timeoutMs: number }, cmd: Command) => {
    const tenantId = opts.tenant === undefined ? undefined : tenantArg(opts.tenant);
    const topic = await rulesTopicOf(cmd, opts.timeoutMs);
    const result = await listRules(topic, tenantId);
    if (opts.json) {
      for (const r of result.rules) process.stdout.write(`${ruleJson(r)}\n`);
      return;
    }
    if (result.rules.length > 0) console.log(renderRuleTable(result.rules));
    const tenants = new Set(result.rules.map((r) => r.tenantId)).size;
    console.log(`${result.rules.length} rule(s) of ${tenants} tenant(s) in topic ${topic.topic}${result.topicExists ? '' : ' (the topic does not exist yet)'}`);
  });

  rulesTopicCommand(
    rules
      .command('delete')
      .description('delete one rule of a tenant from the rules topic (a tombstone); exits 1 if the topic does not hold it')
      .requiredOption('--tenant <uuid>', 'the tenant whose rule it is')
      .requiredOption('--id <rule id>', 'the rule\'s id'),
  ).action(async (opts: { tenant: string; id: string; timeoutMs: number }, cmd: Command) => {
    const tenantId = tenantArg(opts.tenant);
    const topic = await rulesTopicOf(cmd, opts.timeoutMs);
    await deleteRule(topic, tenantId, opts.id);
    console.log(`deleted ${opts.id} of tenant ${tenantId} from topic ${topic.topic}`);
  });
}
