import { Option, type Command } from 'commander';
import { kafkaSettings, ruleWorkerSettings, signalSettings, spanSettings } from '../config/settings.js';
import { createKafkaFacade } from '../kafka/client.js';
import type { KafkaClientKind } from '../kafka/facade.js';
import { createLogger } from '../observability/logger.js';
import { FleetStatusReader, renderFleetStatus, type FleetStatus, type GroupSpec, type StatusFetcher } from './fleet-status.js';
import { addSettings, intArg, settingsOf } from './options.js';
import type { Parsed } from '../config/settings.js';

/** The three spanledger groups and their topics, under flags of their own (each worker command calls its group --group). */
export const fleetSettings = {
  spansGroup: { ...spanSettings.group, flag: 'spans-group' },
  rulesGroup: { ...ruleWorkerSettings.group, flag: 'rules-group' },
  signalsGroup: { ...signalSettings.group, flag: 'signals-group' },
  spansTopic: { ...spanSettings.topic, flag: 'spans-topic', description: 'topic the span and rule workers read' },
  signalsTopic: { ...signalSettings.topic, flag: 'signals-topic' },
};

/** The groups to show: the one asked for, or all three spanledger groups with their topics. */
export function groupSpecs(fleet: Parsed<typeof fleetSettings>, only: string | undefined): GroupSpec[] {
  const all: GroupSpec[] = [
    { group: fleet.spansGroup, topics: [fleet.spansTopic] },
    { group: fleet.rulesGroup, topics: [fleet.spansTopic] },
    { group: fleet.signalsGroup, topics: [fleet.signalsTopic] },
  ];
  if (only === undefined) return all;
  // Another group: its topics come from its commits and assignments.
  return [all.find((s) => s.group === only) ?? { group: only, topics: [] }];
}

export interface StatusOptions {
  client: KafkaClientKind;
  brokers: string[];
  clientId: string;
  groups: GroupSpec[];
  timeoutMs: number;
  fetchStatus?: StatusFetcher;
  onProgress?: (line: string) => void;
}

/** What `spanledger status` shows, as data (the command prints it as tables or JSON). */
export async function fleetStatus(options: StatusOptions): Promise<FleetStatus> {
  const client = await createKafkaFacade({ client: options.client, brokers: options.brokers, clientId: options.clientId, logger: createLogger('error') });
  const admin = client.admin();
  await admin.connect();
  try {
    return await new FleetStatusReader(admin, options).read(options.groups);
  } finally {
    await admin.disconnect();
  }
}

/** `spanledger status [--group G] [--json]`. */
export function addStatusCommand(program: Command): void {
  const cmd = program
    .command('status')
    .description("the fleet at a glance: per partition its owner, committed offset, end offset and lag; per worker its state from its /status (found through the group's member client ids)")
    .option('--group <name>', 'only this consumer group (default: the spans, rules and signals groups below)')
    .option('--json', 'JSON instead of tables', false)
    .addOption(new Option('--timeout-ms <ms>', "how long one worker's /status may take before it shows as unreachable").argParser(intArg('--timeout-ms', 1)).default(2000));
  addSettings(addSettings(cmd, fleetSettings), kafkaSettings).action(async (opts: { group?: string; json: boolean; timeoutMs: number }, c: Command) => {
    const kafka = settingsOf(c, kafkaSettings);
    const fleet = settingsOf(c, fleetSettings);
    const result = await fleetStatus({
      client: kafka.client,
      brokers: kafka.brokers,
      clientId: kafka.clientId,
      groups: groupSpecs(fleet, opts.group),
      timeoutMs: opts.timeoutMs,
      // Progress goes to a terminal only: stdout carries the result.
      onProgress: process.stderr.isTTY ? (line) => process.stderr.write(`${line}…\n`) : undefined,
    });
    console.log(opts.json ? JSON.stringify(result, null, 2) : renderFleetStatus(result));
  });
}
