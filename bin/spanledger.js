#!/usr/bin/env node
// Entry point of the `spanledger` command: runs the compiled CLI in dist/.
import { spawnSync } from 'node:child_process';
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
  const run = spawnSync(local, [...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(run.status ?? 1);
}

// fdatasync of many segment files runs on libuv's thread pool: 4 threads (the default) serialise them.
process.env.UV_THREADPOOL_SIZE ??= '16';

const main = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
if (!existsSync(main)) {
  console.error('spanledger: not built yet: run `npm install` (or `npm run build`) in the project folder first');
  process.exit(2);
}
await import(main);
