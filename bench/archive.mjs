#!/usr/bin/env node
// Archive drain beside the span worker's drain, in the same run (issue 20): one backlog of spans,
// drained once by a span worker (JSONL span log) and once by an archive worker (zstd Parquet in a
// real S3-compatible server, versitygw started here by scripts/s3.sh), each in a fresh group:
// spans/s, worker CPU µs per span, peak RSS (VmHWM), and bytes stored per span. Goal: the archive
// at least at the span worker's rate, its bytes per span at least 5× smaller than the JSONL.
//
//   node bench/archive.mjs [--spans N] [--encoding json|otlp_proto] [--tenants N] [--archive-env K=V,…] [--span-env K=V,…] [--cpu-prof DIR]
//
// --cpu-prof DIR: both workers run under `node --cpu-prof`, their profiles in DIR/spans and
// DIR/archive (slower; for where the time goes, not for the table's numbers).
//
// Broker: KAFKA_BROKERS, or a local broker started with scripts/kafka.sh. Without a versitygw
// binary and without Go it says so in one line and exits 0 (nothing measured).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, benchKafka, brokerFromEnv, drain, fmt, freePort, machineCpuSeconds, mib, noopConsumer, parseArgs, pidFromFile, preload, procCpuByThread, procCpuSeconds, say, startWorker, stopWorker } from './lib.mjs';

const args = parseArgs(process.argv.slice(2));
const SPANS = Number(args.spans ?? 1_000_000);
const ENCODING = args.encoding ?? 'json';
const TENANTS = Number(args.tenants ?? 20);
const PROFILE_DIR = typeof args['cpu-prof'] === 'string' ? path.resolve(args['cpu-prof']) : undefined;
const envArg = (name) => (typeof args[name] === 'string' ? Object.fromEntries(args[name].split(',').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])) : {});

const S3_SCRIPT = path.join(ROOT, 'scripts/s3.sh');
try {
  execFileSync('bash', [S3_SCRIPT, 'bin'], { stdio: ['ignore', 'ignore', 'inherit'] });
} catch (e) {
  if (e.status === 3) {
    say('archive bench skipped: no versitygw binary and no Go to build one (scripts/s3.sh)');
    process.exit(0);
  }
  throw e;
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'spanledger-archive-bench-'));
const s3Env = { ...process.env, S3_DIR: path.join(tmp, 's3'), S3_PORT: String(await freePort()), ARCHIVE_BUCKET: 'bench', AWS_ACCESS_KEY_ID: 'bench', AWS_SECRET_ACCESS_KEY: 'bench-secret', AWS_REGION: 'us-east-1' };
execFileSync('bash', [S3_SCRIPT, 'up'], { env: s3Env, stdio: ['ignore', 'inherit', 'inherit'] });
const broker = brokerFromEnv({ env: {}, stopOnExit: false });
const kafka = benchKafka(broker.brokers);
const admin = kafka.admin();
await admin.connect();

/** Bytes of every file under `dir`. */
function bytesUnder(dir) {
  if (!fs.existsSync(dir)) return 0;
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).reduce((n, e) => n + fs.statSync(path.join(e.parentPath, e.name)).size, 0);
}

/**
 * One drain by a fresh worker of `kind` in a fresh group: spans/s and CPU per span over the
 * worker's whole life, from its start to the last commit (start-up included: an archive worker
 * commits only at the end of its first cycle, so timing from the first commit, as bench/run.mjs
 * does for span workers, would leave its first cycle out), and its peak RSS.
 */
async function drainWith(kind, env, group, records, spans) {
  const servers = { broker: pidFromFile(path.join(ROOT, '.kafka/kafka.pid')), s3: pidFromFile(path.join(s3Env.S3_DIR, 'versitygw.pid')) };
  const serversBefore = Object.fromEntries(Object.entries(servers).map(([k, pid]) => [k, pid === undefined ? NaN : procCpuSeconds(pid)]));
  const machineBefore = machineCpuSeconds();
  const started = performance.now();
  const profile = PROFILE_DIR === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${path.join(PROFILE_DIR, kind)}`];
  const w = startWorker(broker.brokers, kind, { METRICS_PORT: '0', ...env }, profile);
  await drain(admin, group, topic, records, w);
  const seconds = (performance.now() - started) / 1000;
  const cpuMicros = (procCpuSeconds(w.pid) * 1e6) / spans;
  const threads = procCpuByThread(w.pid);
  const machineAfter = machineCpuSeconds();
  say(`${kind} worker CPU per span by thread (µs): ${Object.entries(threads).map(([k, s]) => `${k} ${((s * 1e6) / spans).toFixed(1)}`).join(', ')}`);
  // The rest of the machine during the drain: where the cores shared with the broker (and the S3
  // server) went, and how much was left idle (a drain with idle cores is not bound by CPU).
  const perSpan = (s) => ((s * 1e6) / spans).toFixed(1);
  const serverLines = Object.entries(servers).filter(([, pid]) => pid !== undefined).map(([k, pid]) => `${k} ${perSpan(procCpuSeconds(pid) - serversBefore[k])}`);
  say(`${kind} drain, machine CPU per span (µs): busy ${perSpan(machineAfter.busy - machineBefore.busy)}, idle ${perSpan(machineAfter.idle - machineBefore.idle)}${serverLines.length > 0 ? `; of which ${serverLines.join(', ')}` : ''}`);
  const peak = await stopWorker(w);
  return { rate: spans / seconds, cpuMicros, peak };
}

const run = Date.now().toString(36);
const topic = `bench-archive-${run}`;
let exitCode = 0;
try {
  const perMessage = ENCODING === 'json' ? 1 : 100;
  const produced = await preload(kafka, admin, 'spans', topic, SPANS, TENANTS, ENCODING === 'json' ? {} : { encoding: ENCODING, spansPerMessage: perMessage });
  const records = produced.messages ?? produced.produced;
  const spans = produced.produced;

  // The ceiling: spanledger's adapter of the default client, only counting the records, in the same run.
  const noop = await noopConsumer(broker.brokers, { client: process.env.KAFKA_CLIENT ?? 'platformatic', form: 'adapter', topic, count: records });
  say(`no-op consumer: ${fmt(noop.rate)} records/s, ${noop.cpuMicrosPerRecord.toFixed(1)} µs CPU per record`);

  const spanlogDir = path.join(tmp, 'spanlog');
  say(`span worker draining ${fmt(spans)} spans (${fmt(records)} records)`);
  const spanDrain = await drainWith('spans', { SPANS_TOPIC: topic, SPANS_GROUP: `${topic}-spans`, SPANS_DLQ_TOPIC: `${topic}.dlq`, SPANLOG_DIR: spanlogDir, QUARANTINE_DIR: path.join(tmp, 'q1'), ...envArg('span-env') }, `${topic}-spans`, records, spans);
  const spanBytes = bytesUnder(spanlogDir);

  const objectsDir = path.join(tmp, 's3', 'data', 'bench');
  say(`archive worker draining the same ${fmt(spans)} spans`);
  const archiveEnv = {
    SPANS_TOPIC: topic,
    ARCHIVE_GROUP: `${topic}-archive`,
    ARCHIVE_DLQ_TOPIC: `${topic}.archive.dlq`,
    ARCHIVE_ENDPOINT: `http://127.0.0.1:${s3Env.S3_PORT}`,
    ARCHIVE_BUCKET: 'bench',
    ARCHIVE_PREFIX: 'spans',
    ARCHIVE_FORCE_PATH_STYLE: 'true',
    ARCHIVE_SCRATCH_DIR: path.join(tmp, 'scratch'),
    AWS_ACCESS_KEY_ID: s3Env.AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY: s3Env.AWS_SECRET_ACCESS_KEY,
    AWS_REGION: s3Env.AWS_REGION,
    QUARANTINE_DIR: path.join(tmp, 'q2'),
    ...envArg('archive-env'),
  };
  const archiveDrain = await drainWith('archive', archiveEnv, `${topic}-archive`, records, spans);
  // versitygw's posix backend keeps each object as a file under <data>/<bucket>/<key>.
  const archiveBytes = bytesUnder(path.join(objectsDir, 'spans'));

  const rows = [
    ['', 'no-op consumer', 'span worker (JSONL span log)', 'archive worker (Parquet, zstd, S3)', 'archive / span log'],
    ['spans/s', fmt((noop.rate * spans) / records), fmt(spanDrain.rate), fmt(archiveDrain.rate), (archiveDrain.rate / spanDrain.rate).toFixed(2)],
    ['worker CPU per span (µs)', ((noop.cpuMicrosPerRecord * records) / spans).toFixed(1), spanDrain.cpuMicros.toFixed(1), archiveDrain.cpuMicros.toFixed(1), (archiveDrain.cpuMicros / spanDrain.cpuMicros).toFixed(2)],
    ['peak RSS (MiB, VmHWM)', noop.peakRssBytes === undefined ? '' : mib(noop.peakRssBytes), mib(spanDrain.peak), mib(archiveDrain.peak), ''],
    ['bytes stored per span', '', (spanBytes / spans).toFixed(1), (archiveBytes / spans).toFixed(1), `1/${(spanBytes / archiveBytes).toFixed(1)}`],
  ];
  const width = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  console.log(`\narchive drain vs span drain: ${fmt(spans)} spans as ${ENCODING}, ${TENANTS} tenants, ${os.cpus().length} cores, ${new Date().toISOString().slice(0, 10)}`);
  for (const r of rows) console.log(r.map((c, i) => String(c).padEnd(width[i])).join('  '));
  console.log(`goals: archive rate ≥ span worker's (${archiveDrain.rate >= spanDrain.rate ? 'met' : 'NOT met'}); bytes per span ≥ 5× smaller (${spanBytes >= 5 * archiveBytes ? 'met' : 'NOT met'})`);
} catch (e) {
  console.error(e);
  exitCode = 1;
} finally {
  await admin.disconnect();
  execFileSync('bash', [S3_SCRIPT, 'down'], { env: s3Env, stdio: 'ignore' });
  await broker.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
}
process.exit(exitCode);
