import { existsSync } from 'node:fs';
import { request as httpRequest } from 'node:http';

/**
 * True when a Docker engine answers within `timeoutMs`: a ping on the engine's socket, so that a
 * machine without an engine falls through at once instead of waiting for testcontainers' own
 * discovery. For a tcp:// or ssh:// DOCKER_HOST, testcontainers is asked, but not for long.
 */
export function dockerAnswers(timeoutMs: number): Promise<boolean> {
  const host = process.env.DOCKER_HOST;
  if (host && !host.startsWith('unix://')) {
    // tcp:// or ssh://: ask testcontainers, but not for long.
    return withTimeout(
      import('testcontainers').then(({ getContainerRuntimeClient }) => getContainerRuntimeClient()).then(() => true),
      timeoutMs * 5,
    ).catch(() => false);
  }
  const socketPath = host ? host.slice('unix://'.length) : '/var/run/docker.sock';
  if (!existsSync(socketPath)) return Promise.resolve(false);
  return new Promise((resolvePing) => {
    const req = httpRequest({ socketPath, path: '/_ping', method: 'GET', timeout: timeoutMs }, (res) => {
      res.resume();
      resolvePing(res.statusCode === 200);
    });
    req.on('timeout', () => {
      req.destroy();
      resolvePing(false);
    });
    req.on('error', () => resolvePing(false));
    req.end();
  });
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
