/**
 * A TigerBeetle cluster for integration tests. `startTigerBeetle()` uses, in this order:
 *
 * 1. TB_ADDRESS (e.g. 127.0.0.1:3000; cluster id from TB_CLUSTER_ID, default 0): a cluster that is
 *    already running. Nothing is started or stopped; tests must not assume an empty cluster.
 * 2. TIGERBEETLE_BIN (path to a `tigerbeetle` server binary of the same release as the pinned
 *    tigerbeetle-node): formats a data file in a temporary folder, starts one replica on a free
 *    loopback port, waits until it answers a request; stop() kills it and deletes the folder.
 * 3. testcontainers, if a Docker engine answers within a second: the image
 *    ghcr.io/tigerbeetle/tigerbeetle:<tigerbeetle-node version> (override with TB_IMAGE).
 * 4. Otherwise `{ skipped }` with a one-line reason.
 *
 * Replicas are started with `--development` (no Direct IO needed, small caches) plus
 * `--experimental --limit-request=1MiB`: `--development` alone caps a request at 32 KiB, i.e. 253
 * transfers, and the sink's tests need the production batch size of 8189.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createClient } from 'tigerbeetle-node';
import { stopChild } from './child-process.js';
import { dockerAnswers } from './docker.js';
import { freePort } from './net.js';

const execFileAsync = promisify(execFile);

export interface TigerBeetleInstance {
  /** host:port of the single replica (or the first of TB_ADDRESS's list). */
  address: string;
  /** All replica addresses, for createClient. */
  addresses: string[];
  clusterId: bigint;
  source: 'TB_ADDRESS' | 'TIGERBEETLE_BIN' | 'testcontainers';
  stop(): Promise<void>;
  /**
   * TIGERBEETLE_BIN only: stop the replica (SIGKILL, like a crash) and start it again on the same
   * data file and address, for outage tests.
   */
  replica?: { kill(): Promise<void>; restart(): Promise<void> };
}

export type StartTigerBeetleResult = TigerBeetleInstance | { skipped: string };

export const SKIP_REASON =
  'TigerBeetle tests skipped: set TB_ADDRESS (a running cluster) or TIGERBEETLE_BIN (a tigerbeetle server binary), or run a Docker engine';

/** Extra `start` flags: development mode, but with the production request size (8189 transfers). */
export const START_FLAGS = ['--development', '--experimental', '--limit-request=1MiB'];

const READY_TIMEOUT_MS = 60_000;

export function tigerbeetleNodeVersion(): string {
  const require = createRequire(import.meta.url);
  return (require('tigerbeetle-node/package.json') as { version: string }).version;
}

/** Why the TigerBeetle tests will be skipped, or null when a cluster is available (same order as below). */
export async function tigerBeetleSkipReason(): Promise<string | null> {
  if (process.env.TB_ADDRESS || process.env.TIGERBEETLE_BIN) return null;
  return (await dockerAnswers(1_000)) ? null : SKIP_REASON;
}

export async function startTigerBeetle(): Promise<StartTigerBeetleResult> {
  const clusterId = BigInt(process.env.TB_CLUSTER_ID ?? '0');
  if (process.env.TB_ADDRESS) {
    const addresses = process.env.TB_ADDRESS.split(',').map((a) => a.trim()).filter(Boolean);
    await waitUntilAnswers(addresses, clusterId, READY_TIMEOUT_MS, () => null);
    return { address: addresses[0]!, addresses, clusterId, source: 'TB_ADDRESS', stop: async () => {} };
  }
  if (process.env.TIGERBEETLE_BIN) {
    return startBinary(process.env.TIGERBEETLE_BIN, clusterId);
  }
  if (await dockerAnswers(1_000)) {
    return startContainer(clusterId);
  }
  return { skipped: SKIP_REASON };
}

async function startBinary(bin: string, clusterId: bigint): Promise<TigerBeetleInstance> {
  if (!existsSync(bin)) throw new Error(`TIGERBEETLE_BIN=${bin}: no such file`);
  const dir = await mkdtemp(join(tmpdir(), 'spanledger-tb-'));
  const dataFile = join(dir, '0_0.tigerbeetle');
  try {
    await execFileAsync(bin, [
      'format',
      `--cluster=${clusterId}`,
      '--replica=0',
      '--replica-count=1',
      '--development',
      dataFile,
    ]);
    // The port is free when probed; another process could take it before the replica binds it,
    // in which case the replica exits and we try another port.
    let lastError: unknown;
    for (let attempt = 0; attempt < 3; attempt += 1) {
      const address = `127.0.0.1:${await freePort()}`;
      try {
        let child = await startReplica(bin, address, dataFile, clusterId);
        return {
          address,
          addresses: [address],
          clusterId,
          source: 'TIGERBEETLE_BIN',
          stop: async () => {
            await stopChild(child);
            await rm(dir, { recursive: true, force: true });
          },
          replica: {
            kill: async () => {
              child.kill('SIGKILL');
              await stopChild(child);
            },
            restart: async () => {
              child = await startReplica(bin, address, dataFile, clusterId);
            },
          },
        };
      } catch (err) {
        lastError = err;
      }
    }
    throw lastError;
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Starts one replica on `address` and waits until it answers; kills it if it does not. */
async function startReplica(bin: string, address: string, dataFile: string, clusterId: bigint): Promise<ChildProcess> {
  const output: string[] = [];
  const child = spawn(bin, ['start', `--addresses=${address}`, ...START_FLAGS, dataFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let listening = false;
  const keep = (chunk: Buffer) => {
    const text = chunk.toString();
    if (text.includes('listening on')) listening = true;
    output.push(text);
    if (output.length > 200) output.splice(0, output.length - 200);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let exited: string | null = null;
  child.on('exit', (code, signal) => {
    exited = `exited with ${code ?? signal}`;
  });
  try {
    // Wait for the replica's "listening on" line first (fewer client connect warnings), then
    // for an answer to a request.
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!listening && !exited && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await waitUntilAnswers([address], clusterId, Math.max(1_000, deadline - Date.now()), () =>
      exited ? `tigerbeetle ${exited}:\n${output.join('').slice(-2000)}` : null,
    );
    return child;
  } catch (err) {
    await stopChild(child);
    throw err;
  }
}

async function startContainer(clusterId: bigint): Promise<TigerBeetleInstance> {
  const { GenericContainer, Wait } = await import('testcontainers');
  const image = process.env.TB_IMAGE ?? `ghcr.io/tigerbeetle/tigerbeetle:${tigerbeetleNodeVersion()}`;
  const script =
    `/tigerbeetle format --cluster=${clusterId} --replica=0 --replica-count=1 --development /tmp/0_0.tigerbeetle && ` +
    `exec /tigerbeetle start --addresses=0.0.0.0:3000 ${START_FLAGS.join(' ')} /tmp/0_0.tigerbeetle`;
  const container = await new GenericContainer(image)
    .withSecurityOpt('seccomp=unconfined') // io_uring, as TigerBeetle's Docker docs say
    .withEntrypoint(['/sbin/tini', '--', '/bin/sh', '-c'])
    .withCommand([script])
    .withExposedPorts(3000)
    .withWaitStrategy(Wait.forLogMessage(/listening on/))
    .start();
  const host = container.getHost();
  const address = `${/^[\d.]+$/.test(host) ? host : '127.0.0.1'}:${container.getMappedPort(3000)}`;
  await waitUntilAnswers([address], clusterId, READY_TIMEOUT_MS, () => null);
  return {
    address,
    addresses: [address],
    clusterId,
    source: 'testcontainers',
    stop: async () => {
      await container.stop();
    },
  };
}

/**
 * One lookup request: tigerbeetle-node keeps retrying the connection by itself, so the request
 * answers as soon as the replica is up. `failed()` is polled to stop early (replica exited).
 */
async function waitUntilAnswers(
  addresses: string[],
  clusterId: bigint,
  timeoutMs: number,
  failed: () => string | null,
): Promise<void> {
  const client = createClient({ cluster_id: clusterId, replica_addresses: addresses });
  let poll: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      const deadline = Date.now() + timeoutMs;
      client.lookupAccounts([1n]).then(() => resolve(), reject);
      poll = setInterval(() => {
        const reason = failed();
        if (reason) reject(new Error(reason));
        else if (Date.now() > deadline) {
          reject(new Error(`TigerBeetle at ${addresses.join(',')} did not answer within ${timeoutMs} ms`));
        }
      }, 100);
    });
  } finally {
    clearInterval(poll);
    client.destroy();
  }
}


/** GET /_ping on the Docker socket (DOCKER_HOST unix:// or /var/run/docker.sock), quickly. */
