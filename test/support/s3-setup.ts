import type { TestProject } from 'vitest/node';
import { s3SkipReason } from './s3.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Why the archive (S3) tests skip ('' when a versitygw binary is at hand). */
    s3SkipReason: string;
  }
}

/**
 * vitest globalSetup: finds a versitygw binary for the archive tests once per run (scripts/s3.sh
 * builds it once per clone with Go, about six minutes), before any test file is collected; says
 * in one line when the archive tests will be skipped.
 */
export default async function setup(project: TestProject): Promise<void> {
  const started = Date.now();
  const reason = (await s3SkipReason()) ?? '';
  if (reason) console.log(`\n*** ${reason} ***\n`);
  else console.log(`[s3] versitygw at hand (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  project.provide('s3SkipReason', reason);
}
