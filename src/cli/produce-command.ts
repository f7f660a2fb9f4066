import { Option, type Command } from 'commander';
import { kafkaSettings, signalSettings, spanSettings, workerSettings } from '../config/settings.js';
import { createKafkaFacade } from '../kafka/client.js';
import { createLogger } from '../observability/logger.js';
import { addSettings, intArg, settingsOf } from './options.js';
import type { SpanEncoding } from '../model/otlp.js';
import { produce } from './produce.js';

interface ProduceFlags {
  count: number;
  tenants: number;
  rate: number;
  bad: number;
  batchSize: number;
  encoding?: SpanEncoding;
  spansPerMessage?: number;
  tenantHeader?: boolean;
}

const SPAN_ENCODINGS: SpanEncoding[] = ['json', 'otlp_proto', 'otlp_json'];

/**
 * The settings of `produce <kind>` that the workers share, from the same table: by default the
 * load goes to the topic the workers read (SPANS_TOPIC / SIGNALS_TOPIC), and the oversized
 * malformed record is sized from the workers' MAX_MESSAGE_BYTES.
 */
function produceSettings(kind: 'spans' | 'signals') {
  const topic = kind === 'spans' ? spanSettings.topic : signalSettings.topic;
  return {
    topic: { ...topic, description: `topic to produce to (${topic.description})` },
    maxMessageBytes: { ...workerSettings.maxMessageBytes, description: "the workers' MAX_MESSAGE_BYTES: the oversized malformed record is one byte larger" },
  };
}

/** `spanledger produce spans|signals`: the load generator, with a progress bar and a final rate. */
export function addProduceCommand(parent: Command, kind: 'spans' | 'signals'): void {
  const settings = produceSettings(kind);
  const cmd = parent
    .command(kind)
    .description(`produce sample ${kind}, keyed by tenant id`)
    .option('--count <n>', 'valid records to produce', intArg('--count', 0), 10000)
    .option('--tenants <n>', 'tenants to spread them over', intArg('--tenants', 1), 4)
    .option('--rate <n>', 'records per second (0 = as fast as possible)', intArg('--rate', 0), 0)
    .option('--bad <n>', 'malformed records to mix in (dead-letter demo)', intArg('--bad', 0), 0)
    .option('--batch-size <n>', 'messages per produce request', intArg('--batch-size', 1), 500);
  if (kind === 'spans') {
    cmd
      .addOption(
        new Option('--encoding <encoding>', 'json: one span per message (spanledger JSON); otlp_proto / otlp_json: OTLP ExportTraceServiceRequests as the Collector\'s Kafka exporter writes them, keyed by tenant id, tenant in the resource attribute tenant.id')
          .choices(SPAN_ENCODINGS)
          .default('json'),
      )
      .option('--spans-per-message <n>', 'OTLP encodings: spans per message (--count counts spans)', intArg('--spans-per-message', 1), 100)
      .option('--tenant-header', "OTLP encodings: also set the tenant-id header (every message holds one tenant's spans)", false);
  }
  addSettings(addSettings(cmd, settings), kafkaSettings).action(async (opts: ProduceFlags, command: Command) => {
    const kafka = settingsOf(command, kafkaSettings);
    const { topic, maxMessageBytes } = settingsOf(command, settings);
    const client = await createKafkaFacade({ client: kafka.client, brokers: kafka.brokers, clientId: kafka.clientId, logger: createLogger('warn') });
    const result = await produce(client, { kind, ...opts, topic, maxMessageBytes, topicPartitions: kafka.topicPartitions, progress: true });
    const inMessages = opts.encoding === undefined || opts.encoding === 'json' ? '' : ` in ${result.messages} ${opts.encoding} messages`;
    console.log(`produced ${result.produced} ${kind}${inMessages} (+${result.bad} malformed) for ${opts.tenants} tenants to ${topic} in ${result.seconds.toFixed(2)} s: ${result.rate} records/s`);
  });
}
