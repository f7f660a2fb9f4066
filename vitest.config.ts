import os from 'node:os';
import { defineConfig } from 'vitest/config';

// Two projects: unit tests (pure logic, real DuckDB, temp folders) and integration tests on a
// real Kafka broker, which test/support/kafka.ts picks or starts once for the whole run
// (test/support/prometheus.ts installs Prometheus once for the deploy/ tests, or says why not).
export default defineConfig({
  test: {
    // Vitest leaves a core free by default: on the 2-core development machine that is one test
    // file at a time (unit tests 46 s instead of 30 s). One more worker than cores: the DuckDB
    // tests wait on fsyncs and child processes much of their time (2 workers: 40 s, 3: 37 s).
    // The integration project runs after the unit project (groupOrder), and one file at a time:
    // `make test` and `make test-integration` run it alone with --no-file-parallelism. Vitest
    // schedules workers for all projects from the root options and ignores a project's own
    // fileParallelism (vitest-dev/vitest#5933), so with one run for both, integration files ran
    // three at a time beside each other's brokers and worker processes on two cores.
    maxWorkers: Math.max(3, os.availableParallelism()),
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          testTimeout: 30_000,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          sequence: { groupOrder: 1 },
          globalSetup: ['test/support/kafka.ts', 'test/support/tigerbeetle-notice.ts', 'test/support/prometheus.ts', 'test/support/s3-setup.ts'],
          testTimeout: 180_000,
          hookTimeout: 180_000,
          // Workers are real processes and the broker is shared: one file at a time (see above:
          // this line documents the intent; the Makefile's --no-file-parallelism enforces it).
          fileParallelism: false,
        },
      },
    ],
  },
});
