import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { HealthServer } from '../../../src/observability/health-server.js';

describe('/readyz', () => {
  it('answers ready, degraded (200, with the reasons) or not ready (503)', async () => {
    const state = { ready: true, problems: [] as string[], degraded: [] as string[] };
    const server = new HealthServer(0, new Registry(), {
      healthy: () => true,
      ready: () => state.ready,
      problems: () => state.problems,
      degraded: () => state.degraded,
      details: () => ['1 dead letter(s) quarantined under /q'],
    });
    const port = await server.start();
    const readyz = async () => {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      return [res.status, await res.text()];
    };
    try {
      expect(await readyz()).toEqual([200, 'ready\n1 dead letter(s) quarantined under /q\n']);
      state.degraded = ['breaker open: tigerbeetle since 2026-12-01T18:00:00.000Z, next probe in 12 s'];
      expect(await readyz()).toEqual([200, 'degraded\nbreaker open: tigerbeetle since 2026-12-01T18:00:00.000Z, next probe in 12 s\n1 dead letter(s) quarantined under /q\n']);
      state.problems = ['partition t/0 stuck: zstd'];
      expect(await readyz()).toEqual([503, 'not ready\npartition t/0 stuck: zstd\n1 dead letter(s) quarantined under /q\n']);
    } finally {
      await server.close();
    }
  });
});
