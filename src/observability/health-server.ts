import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface HealthSource {
  /** Alive: the worker has not crashed. */
  healthy(): boolean;
  /** Ready: joined the consumer group and consuming. */
  ready(): boolean;
  /** Lines /readyz shows after its verdict: conditions to look at (quarantined dead letters, stuck partitions). */
  details?(): string[];
  /** Problems that make a running worker not ready, one line each (e.g. a stuck partition). */
  problems?(): string[];
  /**
   * Why a ready worker is degraded, one line each (e.g. a store's circuit breaker is open): it
   * answers `degraded` with HTTP 200, see `HealthServer`.
   */
  degraded?(): string[];
  /** The JSON of /status (WorkerStatus); without it /status is 404. */
  status?(): unknown;
}

/**
 * Serves /metrics (Prometheus text), /healthz, /readyz and /status (JSON) on one port.
 *
 * /readyz answers 503 `not ready` before the worker joined its group and while a partition is
 * stuck (only another deployment can read it), 200 `ready`, or 200 `degraded` with one line per
 * reason while a store's circuit breaker is open. Degraded is 200 on purpose: a consumer gets no
 * Service traffic, so a 503 would only make Kubernetes mark the pod unready, which stalls a
 * rolling update (possibly the one that fixes the store) and restarts nothing; the worker itself
 * already does what helps (its partitions for that store wait, the rest go on). Kafka Connect
 * reports a task whose sink is failing as a state in a 200 answer of its REST API, not as an
 * unhealthy worker; alerts belong on spanledger_breaker_state.
 */
export class HealthServer {
  private server: http.Server | undefined;

  constructor(
    private readonly port: number,
    private readonly registry: Registry,
    private readonly health: HealthSource,
  ) {}

  async start(): Promise<number> {
    const server = http.createServer((req, res) => {
      void this.handle(req.url ?? '/', res);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '0.0.0.0', () => resolve());
    });
    return (server.address() as AddressInfo).port;
  }

  private async handle(url: string, res: http.ServerResponse): Promise<void> {
    const path = url.split('?')[0];
    if (path === '/metrics') {
      const body = await this.registry.metrics();
      res.writeHead(200, { 'content-type': this.registry.contentType }).end(body);
    } else if (path === '/healthz') {
      const ok = this.health.healthy();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok\n' : 'unhealthy\n');
    } else if (path === '/readyz') {
      const problems = this.health.problems?.() ?? [];
      const ok = this.health.ready() && problems.length === 0;
      const degraded = ok ? (this.health.degraded?.() ?? []) : [];
      const details = this.health.details?.() ?? [];
      const verdict = !ok ? 'not ready' : degraded.length > 0 ? 'degraded' : 'ready';
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end([verdict, ...problems, ...degraded, ...details].join('\n') + '\n');
    } else if (path === '/status' && this.health.status !== undefined) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(`${JSON.stringify(this.health.status())}\n`);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics, /healthz, /readyz or /status\n');
    }
  }

  async close(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
