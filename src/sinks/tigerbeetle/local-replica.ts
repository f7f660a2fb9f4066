import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface LocalReplica {
  address: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

async function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.end(() => resolve(true)));
    socket.on('error', () => resolve(false));
  });
}

/**
 * Runs a single TigerBeetle replica from an existing server binary (TIGERBEETLE_BIN), for the
 * demo: formats `<dir>/0_0.tigerbeetle` if missing and starts it on a free loopback port.
 * `--development` skips Direct IO; `--experimental --limit-request=1MiB` keeps the production
 * batch size of 8189 transfers.
 */
export async function startLocalReplica(bin: string, dir: string): Promise<LocalReplica> {
  if (!fs.existsSync(bin)) throw new Error(`TIGERBEETLE_BIN=${bin}: no such file`);
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, '0_0.tigerbeetle');
  if (!fs.existsSync(file)) await run(bin, ['format', '--cluster=0', '--replica=0', '--replica-count=1', '--development', file]);
  const port = await freePort();
  const child: ChildProcess = spawn(bin, ['start', `--addresses=127.0.0.1:${port}`, '--development', '--experimental', '--limit-request=1MiB', file], { stdio: 'ignore' });
  const deadline = Date.now() + 30_000;
  while (!(await listening(port))) {
    if (child.exitCode !== null) throw new Error(`tigerbeetle exited with ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error('tigerbeetle did not start listening within 30 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    address: `127.0.0.1:${port}`,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}
