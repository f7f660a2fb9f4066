/**
 * The dashboard and the alerts against running workers: a span worker, a rule worker (with rules,
 * so signals flow), a signal worker and, where a versitygw can be had, an archive worker, under load, scraped by a real Prometheus that also loads
 * deploy/prometheus/alerts.yml. Every panel query (template variables filled in) and every alert
 * expression must evaluate, refer only to metrics the workers expose, and the throughput panels
 * must show every kind of worker that runs.
 *
 * The signal worker uses the real TigerBeetle when TB_ADDRESS or TIGERBEETLE_BIN is set; otherwise
 * it runs in a child process with the test stand-in as its TigerBeetle client
 * (signal-worker-standin.child.ts): the same worker, sinks and metrics, minus the real cluster.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Kafka } from 'kafkajs';
import { pino } from 'pino';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { parse } from 'yaml';
import { putRules } from '../../src/cli/rules-topic.js';
import { corpus, produceCorpus, RULES_A, RULES_B, spansInTimeOrder, type CorpusTenant } from '../../src/devtools/trace-corpus.js';
import { tenantIdFor } from '../../src/model/generate.js';
import { ROOT, createTopic, kafkaClient, killWorkers, tempDir, uniqueName, waitForCommitted, WorkerProcess, sleep, kafkaFacade } from '../support/harness.js';
import { instantQuery, prometheusApi, startPrometheus, type PrometheusServer } from '../support/prometheus.js';
import { startTigerBeetle, type StartTigerBeetleResult } from '../support/tigerbeetle.js';
import { startS3, type S3Server } from '../support/s3.js';

const DASHBOARD = path.join(ROOT, 'deploy', 'grafana', 'spanledger.json');
const ALERTS = path.join(ROOT, 'deploy', 'prometheus', 'alerts.yml');
const VITE_NODE = path.join(ROOT, 'node_modules', '.bin', 'vite-node');
const SIGNAL_WORKER_STANDIN = path.join(import.meta.dirname, 'signal-worker-standin.child.ts');
/** Scrape and rule evaluation interval of the test's Prometheus: short, so the test is. */
const SCRAPE_SECONDS = 1;
/** What $__rate_interval becomes: several scrapes, and the test's whole load fits in it. */
const RATE_INTERVAL = '30s';
const JOBS = { spans: 'spanledger-spans', rules: 'spanledger-rules', signals: 'spanledger-signals', archive: 'spanledger-archive' } as const;
type Kind = keyof typeof JOBS;
/** Panels that must show data for every kind of worker (the others may be empty when nothing happened, e.g. no retries). */
const THROUGHPUT_PANELS = ['Records consumed / s', 'Records written / s'];
const TENANTS: CorpusTenant[] = [
  { tenantId: tenantIdFor(0xd1), rules: 'A' },
  { tenantId: tenantIdFor(0xd2), rules: 'B' },
];

const brokers = inject('kafkaBrokers');
// The suite prints one line when Prometheus could not be installed (test/support/prometheus.ts).
const prometheusSkipped = inject('prometheusSkipReason') !== '';
const realTigerBeetle = Boolean(process.env.TB_ADDRESS || process.env.TIGERBEETLE_BIN);

const workers: WorkerProcess[] = [];
const dirs: string[] = [];
let prometheus: PrometheusServer | undefined;
let tb: StartTigerBeetleResult | undefined;
let s3: S3Server | undefined;
/** Why no archive worker runs here (no versitygw can be had: test/support/s3-setup.ts), or null when one does. */
const archiveSkipped = inject('s3SkipReason') || null;

afterAll(async () => {
  await prometheus?.stop();
  await killWorkers(workers);
  if (tb && !('skipped' in tb)) await tb.stop();
  await s3?.destroy();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** The last log lines of each worker, for a failure's message. */
function workerLogTails(): string {
  return workers.map((w) => `--- ${w.child.spawnargs.slice(1).join(' ')} (exit ${w.child.exitCode ?? 'none'}):\n${w.lines.slice(-15).join('\n')}`).join('\n');
}

interface Query {
  /** Where it comes from: a panel title, a template variable or an alert name. */
  source: string;
  expr: string;
}

interface DashboardPanel {
  title: string;
  targets?: Array<{ expr: string }>;
}

/** What Grafana sends for "All" of every variable, and a fixed $__rate_interval. */
function fillTemplate(expr: string): string {
  return expr.replace(/\$__rate_interval/g, RATE_INTERVAL).replace(/\$(job|instance|topic)\b/g, '.*');
}

function dashboardQueries(): Query[] {
  const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')) as {
    panels: DashboardPanel[];
    templating: { list: Array<{ name: string; type: string; query?: { query: string } }> };
  };
  const panels = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ source: `panel "${p.title}"`, expr: fillTemplate(t.expr) })));
  // label_values(selector, label) is Grafana's; Prometheus answers the same question as group by.
  const variables = dashboard.templating.list
    .filter((v) => v.type === 'query')
    .map((v) => {
      const m = /^label_values\((.+),\s*(\w+)\)$/.exec(v.query!.query);
      if (!m) throw new Error(`variable $${v.name}: not label_values(selector, label): ${v.query!.query}`);
      return { source: `variable $${v.name}`, expr: fillTemplate(`group by (${m[2]}) (${m[1]})`) };
    });
  return [...panels, ...variables];
}

function alertQueries(): Query[] {
  const doc = parse(fs.readFileSync(ALERTS, 'utf8')) as { groups: Array<{ rules: Array<{ alert: string; expr: string }> }> };
  return doc.groups.flatMap((g) => g.rules.map((r) => ({ source: `alert ${r.alert}`, expr: r.expr })));
}

/** Metric names an expression refers to: ours all start with spanledger_; `up` is Prometheus's own. */
function metricNames(expr: string): string[] {
  return [...new Set([...expr.matchAll(/\b(spanledger_[a-z0-9_]+|up(?=\{))/g)].map((m) => m[1]!))];
}

/**
 * Every series name a worker declares on /metrics (`# TYPE`), samples or not: a labelled metric
 * has no sample until its first event (a retry, a quarantined dead letter), so Prometheus cannot
 * know its name yet, but the worker does expose it.
 */
async function declaredNames(metricsPorts: number[]): Promise<Set<string>> {
  const names = new Set<string>();
  for (const port of metricsPorts) {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      names.add(name!);
      if (type === 'histogram') for (const suffix of ['_bucket', '_count', '_sum']) names.add(`${name}${suffix}`);
      if (type === 'summary') for (const suffix of ['_count', '_sum']) names.add(`${name}${suffix}`);
    }
  }
  return names;
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await sleep(250);
  }
}

async function startWorkers(kafka: Kafka) {
  const spansTopic = uniqueName('dash-spans');
  const signalsTopic = `${spansTopic}.signals`;
  const groups = { spans: `${spansTopic}-spans`, rules: `${spansTopic}-rules`, signals: `${spansTopic}-signals`, archive: `${spansTopic}-archive` };
  const dir = tempDir('dashboard-live');
  dirs.push(dir);
  await createTopic(kafka, spansTopic, 3);
  await createTopic(kafka, signalsTopic, 3);
  const env: Record<string, string> = {
    KAFKA_BROKERS: brokers,
    SPANS_TOPIC: spansTopic,
    SPANS_GROUP: groups.spans,
    SPANS_DLQ_TOPIC: `${spansTopic}.dlq`,
    SPANLOG_DIR: path.join(dir, 'spanlog'),
    RULES_TOPIC: `${spansTopic}.rules`,
    RULES_GROUP: groups.rules,
    RULES_DLQ_TOPIC: `${spansTopic}.rules-dlq`,
    RULES_CHECKPOINT_TOPIC: `${spansTopic}.checkpoints`,
    TRACE_IDLE_MS: '1000',
    RULES_CHECKPOINT_INTERVAL_MS: '200',
    SIGNALS_TOPIC: signalsTopic,
    SIGNALS_GROUP: groups.signals,
    SIGNALS_DLQ_TOPIC: `${signalsTopic}.dlq`,
    DUCKDB_DIR: path.join(dir, 'duckdb'),
    QUARANTINE_DIR: path.join(dir, 'quarantine'),
    BATCH_MAX_AGE_MS: '200',
    KAFKA_SESSION_TIMEOUT_MS: '8000',
    KAFKA_REBALANCE_TIMEOUT_MS: '10000',
    KAFKA_HEARTBEAT_INTERVAL_MS: '1000',
  };
  const logger = pino({ level: 'silent' });
  for (const t of TENANTS) {
    const file = path.join(dir, `rules-${t.rules}.yaml`);
    fs.writeFileSync(file, t.rules === 'A' ? RULES_A : RULES_B);
    await putRules({ kafka: kafkaFacade(brokers), topic: env.RULES_TOPIC!, logger, timeoutMs: 30_000 }, t.tenantId, file, false);
  }

  let signalWorker: WorkerProcess;
  if (realTigerBeetle) {
    tb = await startTigerBeetle();
    if ('skipped' in tb) throw new Error(tb.skipped);
    signalWorker = new WorkerProcess('signals', { ...env, TB_ADDRESS: tb.addresses.join(','), TB_CLUSTER_ID: String(tb.clusterId) });
  } else {
    signalWorker = new WorkerProcess('signals', env, { file: VITE_NODE, args: [SIGNAL_WORKER_STANDIN] });
  }
  const started: Partial<Record<Kind, WorkerProcess>> = { spans: new WorkerProcess('spans', env), rules: new WorkerProcess('rules', env), signals: signalWorker };
  if (archiveSkipped === null) {
    s3 = await startS3();
    started.archive = new WorkerProcess('archive', { ...env, ...s3.env, ARCHIVE_GROUP: groups.archive, ARCHIVE_DLQ_TOPIC: `${spansTopic}.archive-dlq`, ARCHIVE_PREFIX: spansTopic, ARCHIVE_CYCLE_MAX_AGE_MS: '1000' });
  }
  workers.push(...Object.values(started));
  const ports: Partial<Record<Kind, number>> = {};
  for (const [kind, w] of Object.entries(started) as Array<[Kind, WorkerProcess]>) ports[kind] = (await w.waitForLog('worker started', 60_000)).metricsPort as number;
  return { spansTopic, signalsTopic, groups, ports };
}

function scrapeConfig(ports: Partial<Record<Kind, number>>): string {
  const jobs = (Object.keys(ports) as Kind[])
    .map((kind) => `  - job_name: ${JOBS[kind]}\n    static_configs:\n      - targets: ['127.0.0.1:${ports[kind]}']`)
    .join('\n');
  return `global:\n  scrape_interval: ${SCRAPE_SECONDS}s\n  evaluation_interval: ${SCRAPE_SECONDS}s\nrule_files:\n  - ${JSON.stringify(ALERTS)}\nscrape_configs:\n${jobs}\n`;
}

describe.skipIf(prometheusSkipped)(`dashboard and alerts on running workers (signal worker with ${realTigerBeetle ? 'TigerBeetle' : 'the TigerBeetle stand-in'})`, () => {
  it('every panel query and alert expression evaluates, names only exposed metrics, and throughput shows every worker kind', async () => {
    const kafka = kafkaClient(brokers);
    const { spansTopic, signalsTopic, groups, ports } = await startWorkers(kafka);
    prometheus = await startPrometheus(scrapeConfig(ports));
    const url = prometheus.url;

    // Load: traces that break the tenants' rules (so the rule worker produces signals for the
    // signal worker), in two bursts a few scrapes apart, and a few records no worker can decode.
    const traces = corpus({ tenants: TENANTS, traces: 300, fillerSpans: 4, startMs: Date.now() - 60_000, traceGapMs: 20, spanGapMs: 20, seed: spansTopic });
    const spans = spansInTimeOrder(traces);
    const half = Math.floor(spans.length / 2);
    await produceCorpus(kafkaFacade(brokers), spansTopic, spans.slice(0, half), { chunk: 500 });
    await sleep(2 * SCRAPE_SECONDS * 1000);
    await produceCorpus(kafkaFacade(brokers), spansTopic, spans.slice(half), { chunk: 500 });
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic: spansTopic, messages: ['not json', '{"spanId":1}', '[]'].map((value) => ({ key: 'malformed', value })) });
    await producer.disconnect();
    await Promise.all([
      waitForCommitted(kafka, groups.spans, spansTopic, 60_000),
      ...(ports.archive === undefined ? [] : [waitForCommitted(kafka, groups.archive, spansTopic, 60_000)]),
      waitForCommitted(kafka, groups.rules, spansTopic, 60_000).then(() => waitForCommitted(kafka, groups.signals, signalsTopic, 60_000)),
    ]).catch((e: unknown) => {
      throw new Error(`${String(e)}\n${workerLogTails()}`);
    });

    const queries = [...dashboardQueries(), ...alertQueries()];
    const panelTargets = (title: string) => queries.filter((q) => q.source === `panel "${title}"`);
    // Counters appear with their first records; rate() needs two scrapes of them.
    await until('throughput panels show every worker kind', 20_000, async () => {
      for (const title of THROUGHPUT_PANELS) {
        for (const q of panelTargets(title)) {
          const jobs = new Set((await instantQuery(url, q.expr)).result.map((r) => r.metric.job));
          if (!(Object.keys(ports) as Kind[]).every((kind) => jobs.has(JOBS[kind]))) return undefined;
        }
      }
      return true;
    });

    const inPrometheus = new Set(await prometheusApi<string[]>(url, '/api/v1/label/__name__/values'));
    const declared = await declaredNames(Object.values(ports));
    if (archiveSkipped !== null) console.log(`[dashboard-live] no archive worker (${archiveSkipped}): the archive panels' metrics are not checked`);
    const failures: string[] = [];
    const declaredOnly = new Set<string>();
    for (const q of queries) {
      const evaluated = await instantQuery(url, q.expr).catch((e: unknown) => e as Error);
      if (evaluated instanceof Error) failures.push(`${q.source}: ${evaluated.message}`);
      for (const name of metricNames(q.expr)) {
        if (inPrometheus.has(name)) continue;
        if (declared.has(name)) declaredOnly.add(name);
        else if (archiveSkipped !== null && name.startsWith('spanledger_archive_')) continue;
        else failures.push(`${q.source}: ${name} is exposed by no running worker`);
      }
    }
    // What had no sample in this run: for the log.
    console.log(`[dashboard-live] declared by the workers but no sample in this run: ${[...declaredOnly].sort().join(', ')}`);
    expect(failures).toEqual([]);

    // The core of each row has data (a query that is valid but names the wrong label would be empty).
    const archivePanels = ports.archive === undefined ? [] : ['Archive lag', 'Archive uploads and failures / s', 'Archive cycle upload time', 'Archive breaker'];
    for (const title of ['Consumer lag per partition', 'Flush duration', 'End-to-end latency', 'Rule evaluation latency', 'Open traces', 'Resident memory', 'Event-loop delay', 'Dead letters / s by reason', ...archivePanels]) {
      const targets = panelTargets(title);
      expect(targets.length, title).toBeGreaterThan(0);
      const results = await Promise.all(targets.map((q) => instantQuery(url, q.expr)));
      expect(results.some((r) => r.result.length > 0), `panel "${title}" shows nothing`).toBe(true);
    }

    // Every alert loaded from alerts.yml and evaluated without error.
    const alerts = alertQueries().map((q) => q.source.slice('alert '.length));
    const rules = await until('every alert rule evaluated', 15_000, async () => {
      const data = await prometheusApi<{ groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string; lastEvaluation: string }> }> }>(url, '/api/v1/rules');
      const all = data.groups.flatMap((g) => g.rules);
      return all.length === alerts.length && all.every((r) => !r.lastEvaluation.startsWith('0001-')) ? all : undefined;
    });
    expect(rules.map((r) => r.name).sort()).toEqual([...alerts].sort());
    expect(rules.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.health} ${r.lastError ?? ''}`)).toEqual([]);
  });
});
