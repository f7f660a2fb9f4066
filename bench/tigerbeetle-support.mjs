// A TigerBeetle replica for the benchmark: TB_ADDRESS (already running), or TIGERBEETLE_BIN
// (formatted and started here on a free loopback port, stopped afterwards).
import { execFileSync, spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port, ms) {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => c.end(() => resolve(true)));
      c.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`TigerBeetle did not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function startTigerBeetle(tmp) {
  if (process.env.TB_ADDRESS) return { address: process.env.TB_ADDRESS, stop: async () => {} };
  const bin = process.env.TIGERBEETLE_BIN;
  const file = path.join(tmp, '0_0.tigerbeetle');
  execFileSync(bin, ['format', '--cluster=0', '--replica=0', '--replica-count=1', '--development', file], { stdio: 'ignore' });
  const port = await freePort();
  // --development skips Direct IO; --limit-request=1MiB keeps the production batch size (8189).
  const child = spawn(bin, ['start', `--addresses=127.0.0.1:${port}`, '--development', '--experimental', '--limit-request=1MiB', file], { stdio: 'ignore' });
  await waitForPort(port, 30_000);
  return {
    address: `127.0.0.1:${port}`,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}
