#!/usr/bin/env node
// Entry point of the `spanledger` command: runs the compiled CLI in dist/.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// fdatasync of many segment files runs on libuv's thread pool: 4 threads (the default) serialise them.
process.env.UV_THREADPOOL_SIZE ??= '16';

const main = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
if (!existsSync(main)) {
  console.error('spanledger: not built yet: run `npm install` (or `npm run build`) in the project folder first');
  process.exit(2);
}
await import(main);
