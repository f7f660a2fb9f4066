/**
 * Prometheus for the tests of deploy/prometheus and deploy/grafana.
 *
 * The default export is a vitest globalSetup: it runs the project's installer, scripts/prometheus.sh
 * (prometheus/promtool from PATH, else Debian's package through apt-get), once per run, and hands
 * the tests `inject('prometheusSkipReason')`: '' when both binaries are on PATH, else the one line
 * the run prints (`*** Prometheus tests skipped: … ***`).
 *
 * `startPrometheus()` runs a real server on a free loopback port (never 9090, which a packaged
 * service may hold) with its data in a temporary folder; stop() kills it and deletes the folder.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { TestProject } from 'vitest/node';
import { stopChild } from './child-process.js';
import { freePort } from './net.js';

declare module 'vitest' {
  export interface ProvidedContext {
    prometheusSkipReason: string;
  }
}

const ROOT = resolve(import.meta.dirname, '../..');
/** scripts/prometheus.sh's exit code for "could not install" (it printed why). */
const CANNOT_INSTALL = 3;
/** An apt-get install takes about 20 s here; past this the tests skip rather than hold up the run. */
const INSTALL_TIMEOUT_MS = 300_000;
const READY_TIMEOUT_MS = 20_000;

export default async function setup(project: TestProject): Promise<void> {
  const started = Date.now();
  const outcome = await new Promise<{ code: number | null; output: string }>((done) => {
    execFile('bash', [join(ROOT, 'scripts', 'prometheus.sh')], { timeout: INSTALL_TIMEOUT_MS }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      done({ code, output: `${stdout}${stderr}`.trim() });
    });
  });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  let reason = '';
  if (outcome.code === CANNOT_INSTALL) reason = outcome.output.split('\n').pop()!;
  else if (outcome.code !== 0) reason = `scripts/prometheus.sh failed or timed out after ${seconds} s (exit ${outcome.code ?? 'none'}): ${outcome.output.split('\n').pop() ?? ''}`;
  if (reason) console.log(`\n*** Prometheus tests skipped: ${reason} ***\n`);
  else console.log(`[prometheus] ${outcome.output.split('\n').pop()} (${seconds} s)`);
  project.provide('prometheusSkipReason', reason);
}

export interface PrometheusServer {
  url: string;
  stop(): Promise<void>;
}

/** Starts `prometheus` with `config` (YAML text; relative paths in it resolve against its folder). */
export async function startPrometheus(config: string): Promise<PrometheusServer> {
  const dir = await mkdtemp(join(tmpdir(), 'spanledger-prometheus-'));
  const configFile = join(dir, 'prometheus.yml');
  await writeFile(configFile, config);
  let lastError: unknown;
  // A port found free may be taken before Prometheus binds it; then it exits and we try another.
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const output: string[] = [];
    const child = spawn(
      'prometheus',
      [`--config.file=${configFile}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout!.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    try {
      await waitUntilReady(url, child, output);
      return {
        url,
        stop: async () => {
          await stopChild(child);
          await rm(dir, { recursive: true, force: true });
        },
      };
    } catch (err) {
      lastError = err;
      await stopChild(child);
    }
  }
  await rm(dir, { recursive: true, force: true });
  throw lastError;
}

async function waitUntilReady(url: string, child: ChildProcess, output: string[]): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`prometheus exited (${child.exitCode ?? child.signalCode}):\n${output.join('').slice(-2000)}`);
    const ready = await fetch(`${url}/-/ready`).then((r) => r.ok, () => false);
    if (ready) return;
    if (Date.now() > deadline) throw new Error(`prometheus at ${url} not ready within ${READY_TIMEOUT_MS / 1000} s:\n${output.join('').slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The `data` of a Prometheus HTTP API answer; an error answer (bad query, unknown function) throws with Prometheus's message. */
export async function prometheusApi<T>(url: string, path: string, params: Record<string, string> = {}): Promise<T> {
  const res = await fetch(`${url}${path}?${new URLSearchParams(params).toString()}`);
  const body = (await res.json()) as { status: string; data: T; error?: string; errorType?: string };
  if (body.status !== 'success') throw new Error(`${path} ${JSON.stringify(params)}: ${body.errorType ?? res.status}: ${body.error ?? ''}`);
  return body.data;
}

export interface InstantVector {
  resultType: 'vector' | 'scalar' | 'matrix' | 'string';
  result: Array<{ metric: Record<string, string>; value: [number, string] }>;
}

export function instantQuery(url: string, query: string): Promise<InstantVector> {
  return prometheusApi<InstantVector>(url, '/api/v1/query', { query });
}
