#!/usr/bin/env node
// Write-path benchmark for the DuckDB signal sink: rows/s per strategy, side by side.
//
//   npm run build            # or any tsc build that puts the sink in dist/
//   node bench/duckdb-sink.mjs [--rows 100000] [--flush 10000] [--only sink]
//   node bench/duckdb-sink.mjs --only tenants [--tenants 8,500] [--tenant-rows 50000] [--tenant-flush 4000] [--sink-config JSON]
//   node bench/duckdb-sink.mjs --only costs [--tenants 1,500]
//
// The costs case: what one tenant costs DuckDB whatever its rows, the floor under a signal worker
// with many tenants. Per tenant: ATTACH of a new file + CREATE TABLE, DETACH (which checkpoints),
// ATTACH of an existing file; per transaction of 8 rows through an appender (BEGIN, append,
// close, COMMIT, as the sink's fast path) with 1 and with 500 databases attached, round robin.
// Wall and CPU milliseconds of this process (DuckDB runs in it), threads=1, 16 KiB blocks.
//
// The tenants case (also run at the end of a full run): the same --tenant-rows signals spread
// round-robin over each count of --tenants tenants, written in flush-shaped rounds: every round
// takes the next --tenant-flush rows (4,000: PARTITIONS_CONCURRENCY 4 × BATCH_MAX_RECORDS 1,000)
// and writes each tenant's share of them concurrently (one write() per tenant, as a worker's
// flushes do), through DuckDbSignalSink with its default config (or --sink-config). Each count runs
// in a child process of its own so that its peak RSS (VmHWM) is its own; it prints rows/s, peak
// RSS, RSS before the sink started (generated signals, node), open file descriptors at the end
// of the writes and the DuckDB files open.
//
// SPANLEDGER_DIST=/some/dist points at another build output (e.g. a partial build of the sink).
// Every strategy writes the same generated signals for one tenant into a fresh database file
// (threads=1, memory_limit=256MB, like the sink's defaults), in flushes of --flush rows. Only
// the write is timed, not generating the signals. The row-at-a-time baseline writes 5,000 rows.
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { BIGINT, DuckDBDataChunk, DuckDBInstance, INTEGER, VARCHAR } from '@duckdb/node-api';
import { pino } from 'pino';
import { Registry } from 'prom-client';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = process.env.SPANLEDGER_DIST ?? path.join(here, '..', 'dist');
const sinkModule = path.join(dist, 'sinks', 'duckdb', 'duckdb-sink.js');
if (!fs.existsSync(sinkModule)) {
  console.error(`${sinkModule} not found: run \`npm run build\` first (or set SPANLEDGER_DIST).`);
  process.exit(1);
}
const { DuckDbSignalSink } = await import(pathToFileURL(sinkModule).href);
// Builds since issue 18: the sink takes its whole config (the settings table's defaults) and
// write(flush) (one partition's items by tenant, bigint offsets). Older builds (SPANLEDGER_DIST,
// for before/after runs) fill in their own defaults and take write(tenantId, records).
const configModule = path.join(dist, 'sinks', 'duckdb', 'config.js');
const flushApi = fs.existsSync(configModule);
let sinkConfig = (overrides) => overrides;
if (flushApi) {
  const { duckDbSinkConfig } = await import(pathToFileURL(configModule).href);
  const { envValues, resolveSettings } = await import(pathToFileURL(path.join(dist, 'config', 'load.js')).href);
  const { signalSettings } = await import(pathToFileURL(path.join(dist, 'config', 'settings.js')).href);
  const defaults = duckDbSinkConfig(resolveSettings(signalSettings, envValues(signalSettings, {}), {}));
  sinkConfig = (overrides) => ({ ...defaults, ...overrides });
}

/** One write of one tenant's records (all from one partition, as generated); the number rejected. */
async function writeTenant(sink, tenantId, recs) {
  if (!flushApi) return (await sink.write(tenantId, recs)).rejected.size;
  const items = recs.map((r) => ({ value: r.value, offset: BigInt(r.source.offset), index: 0 }));
  const { rejected } = await sink.write({ topic: 'signals', partition: recs[0].source.partition, tenants: new Map([[tenantId, items]]) });
  return rejected.size;
}

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : fallback;
};
const ROWS = Number(opt('rows', '100000'));
const FLUSH = Number(opt('flush', '10000'));
const ONLY = opt('only', '');
const TENANT_COUNTS = opt('tenants', '8,500').split(',').map(Number);
const TENANT_ROWS = Number(opt('tenant-rows', '50000'));
const TENANT_FLUSH = Number(opt('tenant-flush', '4000'));
const SINK_CONFIG = JSON.parse(opt('sink-config', '{}'));
const TENANT_CASE = opt('tenant-case', '');
const BASELINE_ROWS = Math.min(ROWS, 5000);
const TARGET = 50_000;

const TENANT = '0b7d1b5e-3c1a-4f7e-9d7a-2f1e6b9c8a11';
const SEVERITIES = ['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'];

function generate(n) {
  const t0 = Date.UTC(2026, 10, 24, 10);
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = {
      value: {
        id: randomUUID(),
        tenantId: TENANT,
        ruleId: `rule-${i % 50}`,
        traceId: randomBytes(16).toString('hex'),
        timestamp: new Date(t0 + i * 37).toISOString(),
        severity: SEVERITIES[i % 4],
        message: `Suspicious span pattern in service checkout-${i % 7} for user ${i}`,
        metadata: { service: 'checkout', span: i, tags: ['pii', 'auth'], score: i / 3 },
      },
      source: { topic: 'signals', partition: 3, offset: String(i) },
    };
  }
  return out;
}

// The table the sink created before 2026-12-02 (with the primary key; src/sinks/duckdb/sql.ts has today's).
const SCHEMA = `CREATE TABLE signals (id UUID PRIMARY KEY, tenant_id UUID NOT NULL, rule_id VARCHAR NOT NULL,
  trace_id VARCHAR NOT NULL, ts TIMESTAMPTZ NOT NULL, severity VARCHAR NOT NULL, message VARCHAR NOT NULL,
  metadata JSON NOT NULL, kafka_partition INTEGER NOT NULL, kafka_offset BIGINT NOT NULL, ingested_at TIMESTAMP NOT NULL)`;
const STAGING = `CREATE TEMP TABLE staging (idx INTEGER, id VARCHAR, rule_id VARCHAR, trace_id VARCHAR, ts VARCHAR,
  severity VARCHAR, message VARCHAR, metadata VARCHAR, kafka_partition INTEGER, kafka_offset BIGINT)`;
const STAGING_TYPES = [INTEGER, VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, INTEGER, BIGINT];
const insertFromStaging = (lo, hi) => `INSERT OR IGNORE INTO signals SELECT id::UUID, '${TENANT}'::UUID, rule_id, trace_id,
  ts::TIMESTAMPTZ, severity, message, metadata::JSON, kafka_partition, kafka_offset, now() AT TIME ZONE 'UTC'
  FROM staging WHERE idx BETWEEN ${lo} AND ${hi - 1}`;

const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'spanledger-bench-duckdb-'));

async function rawDatabase(name, memoryLimit = '256MB') {
  const instance = await DuckDBInstance.create(path.join(workDir, `${name}.duckdb`), { threads: '1', memory_limit: memoryLimit });
  const conn = await instance.connect();
  await conn.run(`SET TimeZone = 'UTC'`);
  await conn.run(SCHEMA);
  await conn.run(STAGING);
  return { conn, close: () => { conn.disconnectSync(); instance.closeSync(); } };
}

async function inTransactions(conn, n, perTxn, body) {
  let inserted = 0;
  for (let lo = 0; lo < n; lo += perTxn) {
    await conn.run('BEGIN TRANSACTION');
    inserted += await body(lo, Math.min(n, lo + perTxn));
    await conn.run('COMMIT');
  }
  return inserted;
}

/** Each strategy: (flushRecords, state) => rows inserted. */
const strategies = [
  {
    name: 'prepared INSERT OR IGNORE, row at a time',
    perTxn: 1000,
    rows: BASELINE_ROWS,
    async setup() {
      // Each INSERT OR IGNORE statement pins ~300 KB of transaction-local memory until COMMIT
      // (DuckDB 1.5.x, measured with duckdb_memory()): 1,000 of them need more than 256MB.
      const db = await rawDatabase('prepared', '2GB');
      db.stmt = await db.conn.prepare(`INSERT OR IGNORE INTO signals VALUES ($1::UUID, $2::UUID, $3, $4, $5::TIMESTAMPTZ,
        $6, $7, $8::JSON, $9, $10, now() AT TIME ZONE 'UTC')`);
      return db;
    },
    async flush(db, recs) {
      return inTransactions(db.conn, recs.length, this.perTxn, async (lo, hi) => {
        let n = 0;
        for (let i = lo; i < hi; i++) {
          const { value: s, source } = recs[i];
          db.stmt.bindVarchar(1, s.id);
          db.stmt.bindVarchar(2, s.tenantId);
          db.stmt.bindVarchar(3, s.ruleId);
          db.stmt.bindVarchar(4, s.traceId);
          db.stmt.bindVarchar(5, s.timestamp);
          db.stmt.bindVarchar(6, s.severity);
          db.stmt.bindVarchar(7, s.message);
          db.stmt.bindVarchar(8, JSON.stringify(s.metadata));
          db.stmt.bindInteger(9, source.partition);
          db.stmt.bindBigInt(10, BigInt(source.offset));
          n += (await db.stmt.run()).rowsChanged;
        }
        return n;
      });
    },
  },
  ...[1000, 10_000].map((perTxn) => ({
    name: 'appender row API → TEMP staging → INSERT OR IGNORE',
    perTxn,
    setup: () => rawDatabase(`rows-${perTxn}`),
    async flush(db, recs) {
      await db.conn.run('TRUNCATE staging');
      const ap = await db.conn.createAppender('staging');
      recs.forEach(({ value: s, source }, i) => {
        ap.appendInteger(i);
        ap.appendVarchar(s.id);
        ap.appendVarchar(s.ruleId);
        ap.appendVarchar(s.traceId);
        ap.appendVarchar(s.timestamp);
        ap.appendVarchar(s.severity);
        ap.appendVarchar(s.message);
        ap.appendVarchar(JSON.stringify(s.metadata));
        ap.appendInteger(source.partition);
        ap.appendBigInt(BigInt(source.offset));
        ap.endRow();
      });
      ap.closeSync();
      return inTransactions(db.conn, recs.length, perTxn, async (lo, hi) => (await db.conn.run(insertFromStaging(lo, hi))).rowsChanged);
    },
  })),
  ...[1000, 10_000].map((perTxn) => ({
    name: 'appender DataChunk (column-wise) → TEMP staging → INSERT OR IGNORE',
    perTxn,
    setup: () => rawDatabase(`chunk-${perTxn}`),
    async flush(db, recs) {
      await db.conn.run('TRUNCATE staging');
      const ap = await db.conn.createAppender('staging');
      for (let start = 0; start < recs.length; start += 2048) {
        const part = recs.slice(start, start + 2048);
        const chunk = DuckDBDataChunk.create(STAGING_TYPES, part.length);
        chunk.setColumns([
          part.map((_, i) => start + i),
          part.map((r) => r.value.id),
          part.map((r) => r.value.ruleId),
          part.map((r) => r.value.traceId),
          part.map((r) => r.value.timestamp),
          part.map((r) => r.value.severity),
          part.map((r) => r.value.message),
          part.map((r) => JSON.stringify(r.value.metadata)),
          part.map((r) => r.source.partition),
          part.map((r) => BigInt(r.source.offset)),
        ]);
        ap.appendDataChunk(chunk);
      }
      ap.closeSync();
      return inTransactions(db.conn, recs.length, perTxn, async (lo, hi) => (await db.conn.run(insertFromStaging(lo, hi))).rowsChanged);
    },
  })),
  {
    name: 'NDJSON temp file → read_json → INSERT OR IGNORE',
    perTxn: 10_000,
    setup: () => rawDatabase('readjson'),
    async flush(db, recs) {
      const file = path.join(workDir, 'batch.ndjson');
      return inTransactions(db.conn, recs.length, this.perTxn, async (lo, hi) => {
        fs.writeFileSync(file, recs.slice(lo, hi).map(({ value: s, source }) => JSON.stringify({
          id: s.id, rule_id: s.ruleId, trace_id: s.traceId, ts: s.timestamp, severity: s.severity, message: s.message,
          metadata: JSON.stringify(s.metadata), kafka_partition: source.partition, kafka_offset: source.offset,
        })).join('\n'));
        const r = await db.conn.run(`INSERT OR IGNORE INTO signals SELECT id::UUID, '${TENANT}'::UUID, rule_id, trace_id,
          ts::TIMESTAMPTZ, severity, message, metadata::JSON, kafka_partition, kafka_offset::BIGINT, now() AT TIME ZONE 'UTC'
          FROM read_json('${file}', format = 'newline_delimited', columns = {id: 'VARCHAR', rule_id: 'VARCHAR',
            trace_id: 'VARCHAR', ts: 'VARCHAR', severity: 'VARCHAR', message: 'VARCHAR', metadata: 'VARCHAR',
            kafka_partition: 'INTEGER', kafka_offset: 'VARCHAR'})`);
        return r.rowsChanged;
      });
    },
  },
  ...[1000, 2000, 5000, 10_000].map((perTxn) => ({
    name: 'DuckDbSignalSink.write (DataChunk → staging → INSERT OR IGNORE)',
    perTxn,
    replay: perTxn === 10_000,
    async setup() {
      const dir = path.join(workDir, `sink-${perTxn}`);
      const sink = new DuckDbSignalSink(
        sinkConfig({ dir, maxRowsPerTransaction: perTxn }),
        { logger: pino({ level: 'silent' }), registry: new Registry() },
      );
      await sink.start();
      return { sink, close: () => sink.close() };
    },
    async flush(db, recs) {
      const rejected = await writeTenant(db.sink, TENANT, recs);
      if (rejected > 0) throw new Error(`${rejected} rows rejected`);
      return recs.length;
    },
  })),
];

function bar(rate, max) {
  const width = 30;
  const n = Math.max(1, Math.round((rate / max) * width));
  return '█'.repeat(Math.min(width, n));
}

async function measure(strategy, data, label) {
  const db = await strategy.setup();
  const total = data.length;
  let done = 0;
  const started = performance.now();
  try {
    for (let lo = 0; lo < total; lo += FLUSH) {
      await strategy.flush(db, data.slice(lo, Math.min(total, lo + FLUSH)));
      done = Math.min(total, lo + FLUSH);
      const secs = (performance.now() - started) / 1000;
      process.stderr.write(`\r  ${label}: ${done.toLocaleString('en-US')}/${total.toLocaleString('en-US')} rows, ${Math.round(done / secs).toLocaleString('en-US')} rows/s   `);
    }
  } finally {
    await db.close();
  }
  const seconds = (performance.now() - started) / 1000;
  process.stderr.write('\r' + ' '.repeat(110) + '\r');
  return { seconds, rate: total / seconds };
}

/** A deterministic tenant id per index (canonical UUID v4 form). */
function tenantUuid(i) {
  const hex = (0x7e000000 + i).toString(16).padStart(8, '0');
  return `${hex}-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
}

function procStatus(field) {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** Child process: one tenant count, flush-shaped concurrent writes; prints one JSON line. */
async function tenantCase(n) {
  const tenants = Array.from({ length: n }, (_, i) => tenantUuid(i));
  const data = generate(TENANT_ROWS).map((r, i) => {
    const t = i % n;
    return { value: { ...r.value, tenantId: tenants[t] }, source: { topic: 'signals', partition: t % 6, offset: String(i) } };
  });
  const rounds = [];
  for (let lo = 0; lo < data.length; lo += TENANT_FLUSH) {
    const byTenant = new Map();
    for (const r of data.slice(lo, lo + TENANT_FLUSH)) {
      const list = byTenant.get(r.value.tenantId) ?? [];
      list.push(r);
      byTenant.set(r.value.tenantId, list);
    }
    rounds.push([...byTenant]);
  }
  const rssBefore = procStatus('VmRSS');
  const sink = new DuckDbSignalSink(sinkConfig({ dir: path.join(workDir, `tenants-${n}`), ...SINK_CONFIG }), { logger: pino({ level: 'silent' }), registry: new Registry() });
  await sink.start();
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  let done = 0;
  for (const round of rounds) {
    const results = await Promise.all(round.map(([t, recs]) => writeTenant(sink, t, recs)));
    if (results.some((rejected) => rejected > 0)) throw new Error('rows rejected');
    done += round.reduce((k, [, recs]) => k + recs.length, 0);
    const secs = (performance.now() - started) / 1000;
    process.stderr.write(`\r  ${n} tenants: ${done.toLocaleString('en-US')}/${data.length.toLocaleString('en-US')} rows, ${Math.round(done / secs).toLocaleString('en-US')} rows/s   `);
  }
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  process.stderr.write('\r' + ' '.repeat(110) + '\r');
  const fds = fs.readdirSync('/proc/self/fd').length;
  const duckdbFiles = fs.readdirSync('/proc/self/fd').filter((fd) => {
    try { return /\.duckdb(\.wal)?$/.test(fs.readlinkSync(`/proc/self/fd/${fd}`)); } catch { return false; }
  }).length;
  const closeStarted = performance.now();
  await sink.close();
  const closeSeconds = (performance.now() - closeStarted) / 1000;
  console.log(JSON.stringify({ tenants: n, rows: data.length, seconds, rate: data.length / seconds, peak: procStatus('VmHWM'), rssBefore, fds, duckdbFiles, closeSeconds, cpu: (cpu.user + cpu.system) / 1e6 / seconds }));
}

/** Parent: each tenant count in a child process (own VmHWM), side by side. */
async function tenantCases() {
  const { execFileSync } = await import('node:child_process');
  const out = [];
  for (const n of TENANT_COUNTS) {
    const childArgs = [fileURLToPath(import.meta.url), '--tenant-case', String(n), '--tenant-rows', String(TENANT_ROWS), '--tenant-flush', String(TENANT_FLUSH), '--sink-config', JSON.stringify(SINK_CONFIG)];
    const stdout = execFileSync(process.execPath, childArgs, { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', maxBuffer: 1 << 20 });
    out.push(JSON.parse(stdout.trim().split('\n').pop()));
  }
  const mibs = (b) => (b / 2 ** 20).toFixed(0);
  console.log(`\nmany tenants: ${TENANT_ROWS.toLocaleString('en-US')} signals, rounds of ${TENANT_FLUSH.toLocaleString('en-US')} rows (each tenant's share written concurrently), sink config ${JSON.stringify(SINK_CONFIG)}`);
  console.log('tenants    rows/s   peak RSS MiB   RSS before sink MiB   open fds (DuckDB files)   close s   CPU (cores)');
  for (const r of out) {
    console.log(`${String(r.tenants).padStart(7)} ${Math.round(r.rate).toLocaleString('en-US').padStart(9)} ${mibs(r.peak).padStart(14)} ${mibs(r.rssBefore).padStart(21)} ${`${r.fds} (${r.duckdbFiles})`.padStart(25)} ${r.closeSeconds.toFixed(2).padStart(9)} ${r.cpu.toFixed(2).padStart(13)}`);
  }
  if (out.length >= 2) console.log(`ratio ${out.at(-1).tenants} / ${out[0].tenants} tenants: ${(out.at(-1).rate / out[0].rate).toFixed(2)}`);
}

/** The costs case: fixed DuckDB costs per tenant and per transaction (see the top of this file). */
async function costCases() {
  const counts = opt('tenants', '1,500').split(',').map(Number);
  console.log(`DuckDB costs per tenant and per transaction (threads=1, 16 KiB blocks), node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'})`);
  console.log(`${'what'.padEnd(72)}  wall ms   CPU ms`);
  const line = (what, n, t0, c0) => {
    const cpu = process.cpuUsage(c0);
    console.log(`${what.padEnd(72)} ${(Number(process.hrtime.bigint() - t0) / 1e6 / n).toFixed(2).padStart(8)} ${((cpu.user + cpu.system) / 1000 / n).toFixed(2).padStart(8)}`);
  };
  const timed = async (what, n, fn) => {
    const t0 = process.hrtime.bigint();
    const c0 = process.cpuUsage();
    for (let i = 0; i < n; i++) await fn(i);
    line(what, n, t0, c0);
  };
  const schema = (alias) => `CREATE TABLE IF NOT EXISTS ${alias}.main.signals (id UUID PRIMARY KEY, tenant_id UUID NOT NULL, rule_id VARCHAR NOT NULL, trace_id VARCHAR NOT NULL, ts TIMESTAMPTZ NOT NULL, severity VARCHAR NOT NULL, message VARCHAR NOT NULL, metadata JSON NOT NULL, kafka_partition INTEGER NOT NULL, kafka_offset BIGINT NOT NULL, ingested_at TIMESTAMP NOT NULL)`;
  for (const n of counts) {
    const dir = path.join(workDir, `costs-${n}`);
    fs.mkdirSync(dir, { recursive: true });
    const instance = await DuckDBInstance.create(':memory:', { memory_limit: '256MB', threads: '1', default_block_size: '16384', temp_directory: path.join(dir, '.tmp') });
    const conn = await instance.connect();
    await timed(`ATTACH a new file + CREATE TABLE (${n} tenants)`, n, async (i) => {
      await conn.run(`ATTACH '${dir}/t${i}.duckdb' AS t${i}`);
      await conn.run(schema(`t${i}`));
    });
    const transactions = Math.max(1000, 2 * n);
    const chunk = DuckDBDataChunk.create([VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, INTEGER, BIGINT, VARCHAR]);
    let k = 0;
    await timed(`transaction of 8 rows, ${n} attached, round robin`, transactions, async (t) => {
      await conn.run('BEGIN TRANSACTION');
      const appender = await conn.createAppender('signals', 'main', `t${t % n}`);
      const rows = [];
      for (let r = 0; r < 8; r++, k++) {
        rows.push([`00000000-0000-4000-8000-${String(k).padStart(12, '0')}`, TENANT, 'rule-1', 'trace', '2026-11-24 10:00:00+00', 'HIGH', 'message', '{}', 0, BigInt(k), '2026-11-24 10:00:00']);
      }
      chunk.setRows(rows);
      appender.appendDataChunk(chunk);
      appender.closeSync();
      await conn.run('COMMIT');
    });
    await timed(`DETACH (checkpoints the file) (${n} tenants)`, n, (i) => conn.run(`DETACH t${i}`));
    await timed(`ATTACH an existing file + CREATE TABLE IF NOT EXISTS (${n} tenants)`, n, async (i) => {
      await conn.run(`ATTACH '${dir}/t${i}.duckdb' AS t${i}`);
      await conn.run(schema(`t${i}`));
    });
    conn.closeSync();
    instance.closeSync();
  }
}

if (ONLY === 'costs') {
  try {
    await costCases();
  } finally {
    fs.rmSync(workDir, { recursive: true, force: true });
  }
  process.exit(0);
}
if (TENANT_CASE) {
  try {
    await tenantCase(Number(TENANT_CASE));
  } finally {
    fs.rmSync(workDir, { recursive: true, force: true });
  }
  process.exit(0);
}
if (ONLY === 'tenants') {
  try {
    await tenantCases();
  } finally {
    fs.rmSync(workDir, { recursive: true, force: true });
  }
  process.exit(0);
}

console.log(`DuckDB sink write benchmark: ${ROWS.toLocaleString('en-US')} signals, one tenant, flushes of ${FLUSH.toLocaleString('en-US')} rows`);
console.log(`node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), temp dir ${workDir}\n`);
const data = generate(ROWS);
const results = [];
try {
  for (const s of strategies) {
    const label = `${s.name}, ${s.perTxn.toLocaleString('en-US')}/txn`;
    if (ONLY && !label.toLowerCase().includes(ONLY.toLowerCase())) continue;
    const rows = s.rows ?? ROWS;
    const r = await measure(s, data.slice(0, rows), label);
    results.push({ label, rows, ...r });
    if (s.replay) {
      // Same rows again into the same database file: all duplicates, so the conflict check runs.
      const replayed = await measure(s, data.slice(0, rows), `${label} (replay)`);
      results.push({ label: `${label}, replay of the same rows (all duplicates)`, rows, ...replayed });
    }
    console.log(`  ${label.padEnd(90)} ${Math.round(r.rate).toLocaleString('en-US').padStart(8)} rows/s`);
  }
} finally {
  fs.rmSync(workDir, { recursive: true, force: true });
}

const max = Math.max(TARGET, ...results.map((r) => r.rate));
console.log('\nstrategy'.padEnd(99) + 'rows      secs     rows/s');
for (const r of results) {
  console.log(`${r.label.padEnd(98)}${String(r.rows).padStart(7)} ${r.seconds.toFixed(2).padStart(7)} ${Math.round(r.rate).toLocaleString('en-US').padStart(10)}  ${bar(r.rate, max)}`);
}
console.log(`${'target'.padEnd(98)}${''.padStart(7)} ${''.padStart(7)} ${TARGET.toLocaleString('en-US').padStart(10)}  ${bar(TARGET, max)}`);
if (!ONLY) await tenantCases();
