import { Command, Option } from 'commander';
import { ConfigError } from '../errors.js';
import { archiveSettings, archiveWorkerSettings, kafkaSettings, ruleSettings, ruleWorkerSettings, signalSettings, spanSettings, workerSettingsByRole } from '../config/settings.js';
import { createLogger } from '../observability/logger.js';
import { createRegistry } from '../observability/metrics.js';
import { runWorker } from './run-worker.js';
import { addDlqCommands } from './dlq-command.js';
import { addStatusCommand } from './status-command.js';
import { addTopicsCommand } from './topics-command.js';
import { addArchiveCommands } from './archive-command.js';
import { addSettings, intArg, settingsOf } from './options.js';
import { addProduceCommand } from './produce-command.js';
import { summarizeSpanLog } from '../sinks/spanlog/summary.js';
import { renderSpanLogSummary } from './spanlog.js';
import { registerSignalCommands } from './signals.js';
import { registerRuleCommands } from './rules.js';

process.env.KAFKAJS_NO_PARTITIONER_WARNING ??= '1';

export function buildProgram(): Command {
  const program = new Command('spanledger')
    .description('Move spans and signals from Kafka into durable stores, effectively once.')
    .addOption(new Option('--config <file>', 'JSON config file; keys are the environment variable names (e.g. {"KAFKA_BROKERS": "..."})').env('SPANLEDGER_CONFIG'))
    .showHelpAfterError()
    .configureHelp({ sortOptions: false });

  const worker = program.command('worker').description('run a consumer worker (one member of a consumer group)');
  addSettings(addSettings(addSettings(worker.command('spans').description('span worker: spans topic → per-tenant, per-day JSONL span log'), spanSettings), kafkaSettings), workerSettingsByRole.spans).action(
    async (_opts, cmd: Command) => {
      const config = { spans: settingsOf(cmd, spanSettings), kafka: settingsOf(cmd, kafkaSettings), worker: settingsOf(cmd, workerSettingsByRole.spans) };
      const logger = createLogger(config.worker.logLevel, { worker: config.worker.workerId, role: 'spans' });
      // Each worker's module is loaded by its command only: a span worker never loads DuckDB or the AWS SDK.
      const { createSpanWorker } = await import('../workers/span-worker.js');
      await runWorker(createSpanWorker(config, logger, createRegistry()), logger);
    },
  );

  // The spans it reads are decoded as the span worker decodes them; signals go to SIGNALS_TOPIC.
  const ruleSpanSettings = { topic: spanSettings.topic, encoding: spanSettings.encoding, tenantAttribute: spanSettings.tenantAttribute };
  const ruleSignalSettings = { topic: { ...signalSettings.topic, flag: 'signals-topic', description: 'topic the rule workers produce signals to (the signal workers read it)' } };
  const rulesCmd = worker.command('rules').description('rule worker: spans topic (own group) → traces → tenant rules → signals topic');
  for (const group of [ruleSpanSettings, ruleSettings, ruleWorkerSettings, ruleSignalSettings, kafkaSettings, workerSettingsByRole.rules]) addSettings(rulesCmd, group);
  rulesCmd.action(async (_opts, cmd: Command) => {
    const config = {
      spans: settingsOf(cmd, ruleSpanSettings),
      rules: settingsOf(cmd, ruleSettings),
      ruleWorker: settingsOf(cmd, ruleWorkerSettings),
      signals: settingsOf(cmd, ruleSignalSettings),
      kafka: settingsOf(cmd, kafkaSettings),
      worker: settingsOf(cmd, workerSettingsByRole.rules),
    };
    const logger = createLogger(config.worker.logLevel, { worker: config.worker.workerId, role: 'rules' });
    const { createRuleWorker } = await import('../workers/rule-worker.js');
    await runWorker(createRuleWorker(config, logger, createRegistry()), logger);
  });

  // Reads the spans as the span workers decode them; writes Parquet objects to an S3-compatible bucket.
  const archiveSpanSettings = { topic: spanSettings.topic, encoding: spanSettings.encoding, tenantAttribute: spanSettings.tenantAttribute };
  const archiveCmd = worker.command('archive').description('archive worker: spans topic (own group) → per-tenant, per-day Parquet objects in an S3-compatible bucket, exactly once (docs/archive.md)');
  for (const group of [archiveSpanSettings, archiveSettings, kafkaSettings, archiveWorkerSettings]) addSettings(archiveCmd, group);
  archiveCmd.action(async (_opts, cmd: Command) => {
    const config = { spans: settingsOf(cmd, archiveSpanSettings), archive: settingsOf(cmd, archiveSettings), kafka: settingsOf(cmd, kafkaSettings), worker: settingsOf(cmd, archiveWorkerSettings) };
    const logger = createLogger(config.worker.logLevel, { worker: config.worker.workerId, role: 'archive' });
    const { createArchiveWorker } = await import('../workers/archive-worker.js');
    await runWorker(createArchiveWorker(config, logger, createRegistry()), logger);
  });

  const produceCmd = program.command('produce').description('load generator: produce sample records (progress bar, final rate)');
  addProduceCommand(produceCmd, 'spans');

  addDlqCommands(program);

  addStatusCommand(program);

  addTopicsCommand(program);

  addArchiveCommands(program);

  registerSignalCommands(program);

  registerRuleCommands(program);

  program
    .command('spanlog')
    .description('span log tools')
    .command('summary')
    .description('spans per tenant and day in a span log folder')
    .addOption(new Option(`--${spanSettings.spanlogDir.flag} <dir>`, spanSettings.spanlogDir.description).env(spanSettings.spanlogDir.env).default(spanSettings.spanlogDir.default))
    .option('--json', 'JSON instead of a table', false)
    .action(async (opts: { spanlogDir: string; json: boolean }) => {
      const rows = await summarizeSpanLog(opts.spanlogDir);
      console.log(opts.json ? JSON.stringify(rows) : renderSpanLogSummary(opts.spanlogDir, rows));
    });

  addSettings(
    program
      .command('demo')
      .description('end to end on a running broker: workers, a sample load with a few malformed records, then a summary of what was written where')
      .option('--count <n>', 'valid spans (and signals) to produce', intArg('--count', 1), 20000)
      .option('--tenants <n>', 'tenants', intArg('--tenants', 1), 4)
      .option('--bad <n>', 'malformed records to mix in', intArg('--bad', 0), 5)
      .option('--data-dir <dir>', 'where the demo writes (span log, DuckDB)', './data/demo'),
    kafkaSettings,
  ).action(async (opts: { count: number; tenants: number; bad: number; dataDir: string }, cmd: Command) => {
    const { runDemo } = await import('./demo.js');
    const code = await runDemo({ ...opts, kafka: settingsOf(cmd, kafkaSettings) });
    process.exit(code);
  });

  return program;
}

/**
 * How long a command that finished waits for what it left pending before its process exits. Its
 * Kafka clients are disconnected by then, but a step given up on after its bound (the compacted
 * table's release, kafka/compacted-table.ts) can go on and reconnect, and kafkajs drops brokers from
 * its pool without closing them: seen as a `rules put` that had done its work and then waited on
 * one open broker socket (kafkajs polling its request queue every millisecond) for minutes, once
 * 45 min. A worker command never finishes (runWorker), so this never cuts a worker short.
 */
const FINISHED_COMMAND_GRACE_MS = 2_000;

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
    // Unref'd: a process with nothing left pending exits at once, as before.
    setTimeout(() => process.exit(), FINISHED_COMMAND_GRACE_MS).unref();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`spanledger: ${e.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`spanledger: ${(e as Error).message}\n`);
    process.exit(1);
  }
}

await main(process.argv);
