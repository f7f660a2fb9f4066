import { tigerBeetleSkipReason } from './tigerbeetle.js';

/** vitest globalSetup: one clear line, once per run, when the TigerBeetle tests will be skipped. */
export default async function setup(): Promise<void> {
  const reason = await tigerBeetleSkipReason();
  if (reason) console.log(`\n*** ${reason} ***\n`);
}
