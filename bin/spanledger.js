#!/usr/bin/env node
// Entry point of the `spanledger` command: runs the compiled CLI in dist/.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
if (!existsSync(main)) {
  console.error('spanledger: not built yet: run `npm install` (or `npm run build`) in the project folder first');
  process.exit(2);
}
await import(main);
