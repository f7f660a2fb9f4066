#!/usr/bin/env node
// A consumer that does nothing with the records but count them: the ceiling a worker on the same
// client could reach here. Run by bench/run.mjs as a child process of its own, so that its CPU is
// its own, as the workers' is. Prints one JSON line on stdout:
//   { client, form, records, seconds, rate, cpuMicrosPerRecord, peakRssBytes }
//
//   KAFKA_BROKERS=… node bench/noop-consumer.mjs --client platformatic|kafkajs --form library|adapter --topic T --count N [--role spans|rules|signals]
//
// --form library: the client library's own consumer in its simplest fast form, its defaults
//   otherwise: kafkajs `consumer.run({ eachBatch })` (autoCommit off, 6 partitions at once);
//   @platformatic/kafka `consumer.consume()`'s MessagesStream (autocommit off, mode earliest),
//   read in flowing mode ('data').
// --form adapter: spanledger's own group consumer on that client (src/kafka/<client>), through the
//   facade, with the worker role's default settings (`--role`, spans unless told): each batch is
//   counted and resolved, nothing else (the ceiling of the adapter, without the pipeline).
//
// Measured from the moment the member has joined the group (partitions assigned; before the first
// fetch) to the moment the count is reached: rate = records / seconds, and the process's CPU
// (process.cpuUsage, user + system, every thread) over the same span per record. The window starts
// before the first fetch because one fetch may hold a whole small backlog (@platformatic/kafka's
// default fetch is up to 50 MB): timing from the first record would leave out its transfer.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

// Not lib.mjs: it loads half of dist/ (and kafkajs) whatever the client, which would count in this process's memory.
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({ options: { client: { type: 'string' }, form: { type: 'string' }, topic: { type: 'string' }, count: { type: 'string' }, role: { type: 'string' } } });
const client = String(args.client);
const form = String(args.form ?? 'library');
const topic = String(args.topic);
const total = Number(args.count);
const role = String(args.role ?? 'spans');
const brokers = (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',');
const group = `bench-noop-${client}-${form}-${Date.now().toString(36)}-${process.pid}`;
if (!['platformatic', 'kafkajs'].includes(client) || !['library', 'adapter'].includes(form) || !(total > 0) || args.topic === undefined) {
  process.stderr.write('usage: noop-consumer.mjs --client platformatic|kafkajs --form library|adapter --topic T --count N [--role spans|rules|signals]\n');
  process.exit(2);
}

let start;
let n = 0;
let finish;
const done = new Promise((resolve) => (finish = resolve));
const joined = () => (start ??= { t: performance.now(), cpu: process.cpuUsage() });
const count = (records) => {
  n += records;
  if (n >= total && finish) {
    const cpu = process.cpuUsage(start.cpu);
    finish({ seconds: (performance.now() - start.t) / 1000, cpuMicros: cpu.user + cpu.system });
    finish = undefined;
  }
};

let stop;
if (form === 'library' && client === 'kafkajs') {
  const { Kafka, logLevel } = await import('kafkajs');
  const consumer = new Kafka({ clientId: 'spanledger-bench-noop', brokers, logLevel: logLevel.NOTHING }).consumer({ groupId: group });
  consumer.on(consumer.events.GROUP_JOIN, joined);
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  void consumer.run({ autoCommit: false, partitionsConsumedConcurrently: 6, eachBatch: async ({ batch }) => count(batch.messages.length) });
  stop = () => consumer.disconnect();
} else if (form === 'library') {
  const { Consumer, MessagesStreamModes } = await import('@platformatic/kafka');
  const consumer = new Consumer({ clientId: 'spanledger-bench-noop', bootstrapBrokers: brokers, groupId: group });
  // consume() resolves once the member has joined the group and the stream exists (nothing fetched yet).
  const stream = await consumer.consume({ topics: [topic], autocommit: false, mode: MessagesStreamModes.EARLIEST });
  joined();
  stream.on('data', () => count(1));
  stream.on('error', (e) => {
    process.stderr.write(`noop-consumer: ${e.stack ?? e}\n`);
    process.exit(1);
  });
  stop = () => consumer.close(true);
} else {
  const { createKafkaFacade } = await import(path.join(ROOT, 'dist/kafka/client.js'));
  const { groupConsumerOptions } = await import(path.join(ROOT, 'dist/workers/worker.js'));
  const { workerSettingsFor } = await import(path.join(ROOT, 'dist/config/settings.js'));
  const { resolveSettings, envValues } = await import(path.join(ROOT, 'dist/config/load.js'));
  const { pino } = await import('pino');
  // The role's defaults, as a worker started with no settings has them (no environment, no file).
  const settings = workerSettingsFor(role);
  const worker = resolveSettings(settings, envValues(settings, {}), {});
  const kafka = await createKafkaFacade({ client, clientId: 'spanledger-bench-noop', brokers, logger: pino({ level: 'silent' }) });
  const consumer = kafka.groupConsumer(groupConsumerOptions(group, worker));
  consumer.onGroupJoin(joined);
  await consumer.connect();
  await consumer.subscribe(topic, true);
  void consumer.run(async (batch) => {
    const last = batch.messages.at(-1);
    if (last !== undefined) batch.resolveOffset(last.offset);
    count(batch.messages.length);
  });
  stop = () => consumer.disconnect();
}

const { seconds, cpuMicros } = await done;
await stop();
const result = { client, form, records: n, seconds, rate: n / seconds, cpuMicrosPerRecord: cpuMicros / n, peakRssBytes: process.resourceUsage().maxRSS * 1024 };
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
