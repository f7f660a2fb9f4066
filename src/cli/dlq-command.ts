import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { kafkaSettings, spanSettings } from '../config/settings.js';
import { createKafkaFacade } from '../kafka/client.js';
import { createLogger } from '../observability/logger.js';
import { deadLetterJson, readDeadLetters, renderDeadLetterTable, replayDeadLetters } from './dlq.js';
import { addSettings, intArg, settingsOf } from './options.js';

/**
 * Progress of a long read or send on stderr (stdout carries the result): a bar on a terminal, a
 * line every 2 s otherwise. Started on the first update, since the total is known only then.
 */
export class Progress {
  private bar: cliProgress.SingleBar | undefined;

  constructor(private readonly label: string) {}

  update(done: number, total: number): void {
    if (!this.bar) {
      this.bar = new cliProgress.SingleBar(
        { format: `${this.label} [{bar}] {value}/{total}`, stream: process.stderr, noTTYOutput: true, notTTYSchedule: 2000, hideCursor: true },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(total, 0);
    }
    this.bar.update(done);
  }

  stop(): void {
    this.bar?.stop();
  }
}

/**
 * `--topic` of the dlq commands: a setting of its own whose default, environment variable and
 * check are the span workers' dead-letter topic (SPANS_DLQ_TOPIC), so that a fleet configured
 * with other topic names finds its dead letters without the flag (config file included).
 */
export const dlqCommandSettings = {
  topic: {
    ...spanSettings.dlqTopic,
    flag: 'topic',
    description: "dead-letter topic to read (the span workers'; signal workers dead-letter to SIGNALS_DLQ_TOPIC, rule workers to RULES_DLQ_TOPIC)",
  },
};

/** `spanledger dlq inspect|replay`. */
export function addDlqCommands(program: Command): void {
  const dlq = program.command('dlq').description('dead-letter topics');
  addSettings(
    addSettings(dlq.command('inspect').description('print the dead-lettered records and why (a table, or JSON lines with --json)'), dlqCommandSettings)
      .option('--json', 'one JSON object per line instead of a table, with key, value and headers ([name, value] pairs): UTF-8 text as a string, other bytes as {"base64": "..."}', false)
      .option('--limit <n>', 'at most this many records (0 = all)', intArg('--limit', 0), 0),
    kafkaSettings,
  ).action(async (flags: { json: boolean; limit: number }, cmd: Command) => {
    const opts = { ...flags, ...settingsOf(cmd, dlqCommandSettings) };
    const kafka = settingsOf(cmd, kafkaSettings);
    const client = await createKafkaFacade({ client: kafka.client, brokers: kafka.brokers, clientId: kafka.clientId, logger: createLogger('error') });
    const progress = new Progress(`reading ${opts.topic}`);
    let records;
    try {
      records = await readDeadLetters(client, opts.topic, opts.limit, (read, total) => progress.update(read, total));
    } finally {
      progress.stop();
    }
    if (opts.json) {
      for (const r of records) process.stdout.write(`${JSON.stringify(deadLetterJson(r))}\n`);
    } else {
      console.log(renderDeadLetterTable(records));
      console.log(`${records.length} dead-lettered record(s) in ${opts.topic}`);
    }
  });

  addSettings(
    addSettings(
      dlq.command('replay').description('send dead-lettered records back to their source topic, byte for byte (original key, value and headers), to be processed again'),
      dlqCommandSettings,
    )
      .option('--reason <class>', 'only records with this reason, e.g. InvalidTenantId (default: all)')
      .option('--to <topic>', "produce here instead of each record's source topic (default: the source topic in each record's __connect.errors.topic header)")
      .option('--limit <n>', 'at most this many records (0 = all)', intArg('--limit', 0), 0)
      .option('--dry-run', 'list what would be replayed, send nothing', false),
    kafkaSettings,
  ).action(async (flags: { reason?: string; to?: string; limit: number; dryRun: boolean }, cmd: Command) => {
    const opts = { ...flags, ...settingsOf(cmd, dlqCommandSettings) };
    const kafka = settingsOf(cmd, kafkaSettings);
    const client = await createKafkaFacade({ client: kafka.client, brokers: kafka.brokers, clientId: kafka.clientId, logger: createLogger('error') });
    const reading = new Progress(`reading ${opts.topic}`);
    const sending = new Progress('replaying');
    let result;
    try {
      result = await replayDeadLetters(client, opts, {
        onRead: (read, total) => reading.update(read, total),
        onSent: (sent, total) => {
          reading.stop();
          sending.update(sent, total);
        },
      });
    } finally {
      reading.stop();
      sending.stop();
    }
    if (opts.dryRun) {
      console.log(renderDeadLetterTable(result.selected));
      console.log(`${result.selected.length} record(s) would be replayed (dry run: nothing sent)`);
    } else {
      console.log(`replayed ${result.sent} record(s) from ${opts.topic}${opts.reason ? ` with reason ${opts.reason}` : ''}`);
    }
  });
}
