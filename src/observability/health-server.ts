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
  /** The JSON of /status (WorkerStatus); without it /status is 404. */
  status?(): unknown;
}

/** Serves /metrics (Prometheus text), /healthz, /readyz and /status (JSON) on one port. */
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
      const details = this.health.details?.() ?? [];
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end([ok ? 'ready' : 'not ready', ...problems, ...details].join('\n') + '\n');
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
