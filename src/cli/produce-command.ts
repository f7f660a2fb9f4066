import { Option, type Command } from 'commander';
import { kafkaSettings } from '../config/settings.js';
import { createKafka } from '../kafka/client.js';
import { createLogger } from '../observability/logger.js';
import { addSettings, intArg, settingsOf } from './options.js';
import { produce } from './produce.js';

interface ProduceFlags {
  count: number;
  tenants: number;
  rate: number;
  bad: number;
  batchSize: number;
  topic: string;
  maxMessageBytes: number;
}

/** `spanledger produce spans|signals`: the load generator, with a progress bar and a final rate. */
export function addProduceCommand(parent: Command, kind: 'spans' | 'signals'): void {
  const cmd = parent
    .command(kind)
    .description(`produce sample ${kind}, keyed by tenant id`)
    .option('--count <n>', 'valid records to produce', intArg('--count', 0), 10000)
    .option('--tenants <n>', 'tenants to spread them over', intArg('--tenants', 1), 4)
    .option('--rate <n>', 'records per second (0 = as fast as possible)', intArg('--rate', 0), 0)
    .option('--bad <n>', 'malformed records to mix in (dead-letter demo)', intArg('--bad', 0), 0)
    .option('--batch-size <n>', 'records per produce request', intArg('--batch-size', 1), 500)
    .option('--topic <name>', 'topic to produce to', kind)
    .addOption(new Option('--max-message-bytes <n>', "the worker's MAX_MESSAGE_BYTES: the oversized malformed record is one byte larger").argParser(intArg('--max-message-bytes', 1)).default(1000000));
  addSettings(cmd, kafkaSettings).action(async (opts: ProduceFlags, command: Command) => {
    const kafka = settingsOf(command, kafkaSettings);
    const client = createKafka({ brokers: kafka.brokers, clientId: kafka.clientId, logger: createLogger('warn') });
    const result = await produce(client, { kind, ...opts, topicPartitions: kafka.topicPartitions, progress: true });
    console.log(`produced ${result.produced} ${kind} (+${result.bad} malformed) for ${opts.tenants} tenants to ${opts.topic} in ${result.seconds.toFixed(2)} s: ${result.rate} records/s`);
  });
}
