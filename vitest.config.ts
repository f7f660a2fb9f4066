import { defineConfig } from 'vitest/config';

// Two projects: unit tests (pure logic, real DuckDB, temp folders) and integration tests on a
// real Kafka broker, which test/support/kafka.ts picks or starts once for the whole run.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          globalSetup: ['test/support/kafka.ts', 'test/support/tigerbeetle-notice.ts'],
          testTimeout: 180_000,
          hookTimeout: 180_000,
          // Workers are real processes and the broker is shared: one file at a time.
          fileParallelism: false,
        },
      },
    ],
  },
});
