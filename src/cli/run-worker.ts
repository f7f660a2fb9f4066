import type { Logger } from 'pino';
import type { Worker } from '../workers/worker.js';

/** Runs a worker until SIGTERM/SIGINT; exits 0 after a clean graceful stop, 1 otherwise. */
export async function runWorker<T>(worker: Worker<T>, logger: Logger): Promise<never> {
  let stopping: Promise<boolean> | undefined;
  const stop = (why: string, code?: number) => {
    if (stopping) {
      logger.warn({ why }, 'second stop request: exiting now');
      process.exit(1);
    }
    logger.info({ why }, 'stopping: flushing, committing, leaving the group');
    stopping = worker.stop();
    void stopping.then((clean) => {
      logger.info({ clean }, 'stopped');
      process.exit(code ?? (clean ? 0 : 1));
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  worker.onFatal((e) => {
    logger.fatal({ err: e }, 'worker cannot go on');
    stop('fatal error', 1);
  });
  try {
    await worker.start();
  } catch (e) {
    if (stopping !== undefined) {
      // Stopped while still starting (e.g. waiting to join its group after a kill -9 of the
      // previous member): the stop closed the connections the start was using, so the start's
      // error is the stop's doing, not a failed start. The stop decides the exit code.
      logger.info({ err: e }, 'start interrupted by the stop request');
      return new Promise<never>(() => undefined);
    }
    // The command prints only the message as it exits: the log keeps where it failed (the stack).
    logger.fatal({ err: e }, 'worker did not start');
    throw e;
  }
  return new Promise<never>(() => undefined);
}
