#!/usr/bin/env node
// Entry point of the `spanledger` command: runs the compiled CLI in dist/.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// spanledger runs on Node 24 LTS. On an older Node, run on the project-local Node 24 that `make`
// fetched from the npm registry (scripts/node.sh), or say in one line how to get one.
const NODE_MAJOR = 24;
if (Number(process.versions.node.split('.')[0]) < NODE_MAJOR) {
  const local = fileURLToPath(new URL(`../.cache/node${NODE_MAJOR}/bin/node`, import.meta.url));
  if (!existsSync(local)) {
    console.error(`spanledger: needs Node ${NODE_MAJOR} or newer (this is ${process.version}): run \`make install\` in the project folder (it fetches Node ${NODE_MAJOR} from the npm registry into .cache/node${NODE_MAJOR}) or install Node ${NODE_MAJOR}`);
    process.exit(2);
  }
  // The command runs as a child in the foreground: the signals a worker stops on go to it, and this
  // process ends the way it ended, so a worker never outlives the process its supervisor knows.
  // (Run workers on Node 24 directly where you can: a SIGKILL of this process does not reach it.)
  const child = spawn(local, [...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => {
    if (signal === null) process.exit(code ?? 1);
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
  });
} else {
  await run();
}

async function run() {
  // fdatasync of many segment files runs on libuv's thread pool: 4 threads (the default) serialise them.
  process.env.UV_THREADPOOL_SIZE ??= '16';
  const main = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
  if (!existsSync(main)) {
    console.error('spanledger: not built yet: run `make install` (or `npm install`) in the project folder first');
    process.exit(2);
  }
  await import(main);
}
