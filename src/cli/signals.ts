import { makeTable } from './table.js';
import { Option, type Command } from 'commander';
import pino from 'pino';
import { kafkaSettings, signalSettings, signalWorkerSettings, type Parsed } from '../config/settings.js';
import { SEVERITIES, type Severity } from '../model/signal.js';
import { createLogger } from '../observability/logger.js';
import { createRegistry } from '../observability/metrics.js';
import { addSettings, intArg, settingsOf } from './options.js';
import { addProduceCommand } from './produce-command.js';
import { runWorker } from './run-worker.js';

export interface TenantStats {
  tenantId: string;
  duckdb: (Record<Severity, number> & { total: number }) | { error: string };
  tigerbeetle: { tenantDebits: string; signalsCredits: string } | { error: string };
  agree: boolean;
}

/** DuckDB counts per severity next to the TigerBeetle balances, per tenant. */
export async function signalStats(signals: Parsed<typeof signalSettings>, tenant: string | undefined): Promise<TenantStats[]> {
  const logger = pino({ level: 'silent' });
  const registry = createRegistry(false);
  const { createDuckDbSink, createTigerBeetleSink } = await import('../workers/signal-worker.js');
  const duckdb = createDuckDbSink(signals, logger, registry);
  const tb = createTigerBeetleSink({ ...signals, tbRequestTimeoutMs: Math.min(signals.tbRequestTimeoutMs, 5000) }, logger, registry);
  const out: TenantStats[] = [];
  try {
    const tenants = tenant ? [tenant] : await duckdb.listTenants();
    for (const tenantId of tenants) {
      let counts: Record<Severity, number>;
      try {
        counts = await duckdb.countBySeverity(tenantId);
      } catch (e) {
        // Most likely a running worker holds the file open: say so rather than guess.
        out.push({ tenantId, duckdb: { error: (e as Error).message }, tigerbeetle: { error: 'not read' }, agree: false });
        continue;
      }
      const total = SEVERITIES.reduce((n, s) => n + counts[s], 0);
      let tigerbeetle: TenantStats['tigerbeetle'];
      try {
        const b = await tb.lookupTenantBalances(tenantId);
        tigerbeetle = { tenantDebits: String(b.tenant?.debitsPosted ?? 0n), signalsCredits: String(b.signals?.creditsPosted ?? 0n) };
      } catch (e) {
        tigerbeetle = { error: (e as Error).message };
      }
      const agree = 'tenantDebits' in tigerbeetle && tigerbeetle.tenantDebits === String(total) && tigerbeetle.signalsCredits === String(total);
      out.push({ tenantId, duckdb: { ...counts, total }, tigerbeetle, agree });
    }
  } finally {
    await duckdb.close();
    await tb.close();
  }
  return out;
}

export function renderSignalStats(rows: TenantStats[]): string {
  const table = makeTable({ head: ['tenant', ...SEVERITIES, 'DuckDB total', 'TB tenant debits', 'TB signals credits', 'agree'] });
  for (const r of rows) {
    const tb = 'error' in r.tigerbeetle ? [`unavailable: ${r.tigerbeetle.error.slice(0, 60)}`, ''] : [r.tigerbeetle.tenantDebits, r.tigerbeetle.signalsCredits];
    const db = 'error' in r.duckdb ? [`unavailable: ${r.duckdb.error.slice(0, 60)}`, '', '', '', ''] : [...SEVERITIES.map((s) => (r.duckdb as Record<Severity, number>)[s]), r.duckdb.total];
    table.push([r.tenantId, ...db, ...tb, r.agree ? 'yes' : 'NO']);
  }
  const disagree = rows.filter((r) => !r.agree).length;
  const verdict =
    rows.length === 0
      ? 'no tenants found'
      : disagree === 0
        ? `DuckDB and TigerBeetle agree for all ${rows.length} tenant(s)`
        : `DuckDB and TigerBeetle DISAGREE for ${disagree} of ${rows.length} tenant(s)`;
  return `${table.toString()}\n${verdict}`;
}

export function registerSignalCommands(program: Command): void {
  const worker = program.commands.find((c) => c.name() === 'worker')!;
  addSettings(
    addSettings(addSettings(worker.command('signals').description('signal worker: signals topic → per-tenant DuckDB row + TigerBeetle transfer'), signalSettings), kafkaSettings),
    signalWorkerSettings,
  ).action(async (_opts, cmd: Command) => {
    const config = { signals: settingsOf(cmd, signalSettings), kafka: settingsOf(cmd, kafkaSettings), worker: settingsOf(cmd, signalWorkerSettings) };
    const logger = createLogger(config.worker.logLevel, { worker: config.worker.workerId, role: 'signals' });
    const { createSignalWorker } = await import('../workers/signal-worker.js');
    await runWorker(createSignalWorker(config, logger, createRegistry()), logger);
  });

  addProduceCommand(program.commands.find((c) => c.name() === 'produce')!, 'signals');

  const signals = program.command('signals').description('signal stores');
  const statsSettings = { duckdbDir: signalSettings.duckdbDir, tbAddress: signalSettings.tbAddress, tbClusterId: signalSettings.tbClusterId, tbLedger: signalSettings.tbLedger };
  addSettings(
    signals
      .command('stats')
      .description('per tenant: signals per severity in DuckDB next to the TigerBeetle balances, and whether they agree')
      .addOption(new Option('--tenant <uuid>', 'only this tenant (default: every tenant with a DuckDB file)'))
      .option('--json', 'JSON instead of a table', false),
    statsSettings,
  ).action(async (opts: { tenant?: string; json: boolean }, cmd: Command) => {
    const resolved = settingsOf(cmd, statsSettings);
    const defaults = settingsOf(cmd, signalSettings);
    const rows = await signalStats({ ...defaults, ...resolved }, opts.tenant);
    if (opts.json) console.log(JSON.stringify(rows));
    else console.log(renderSignalStats(rows));
    if (rows.some((r) => !r.agree)) process.exitCode = 1;
  });
}
