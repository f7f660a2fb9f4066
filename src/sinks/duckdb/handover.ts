import fsp from 'node:fs/promises';
import type { Logger } from 'pino';
import { causeKind, duckDbMessage } from './classify.js';
import type { DuckDbMetrics } from './metrics.js';

// Hand-over of a tenant file between processes (README, *Handover between processes*): DuckDB's
// file lock lets one process at a time have a file; a process that wants it waits beside it and
// says so with a marker file, and the holder closes it after maxHoldMs when it sees the marker.

/** Longest pause between two attempts to open a file another process holds (capped, jittered). */
const LOCK_RETRY_MAX_DELAY_MS = 100;
/** A waiter refreshes its wait marker this often; a marker older than WAIT_MARKER_FRESH_MS is stale. */
const WAIT_MARKER_REFRESH_MS = 250;
const WAIT_MARKER_FRESH_MS = 2_000;
/**
 * After a handover the holder waits this long (plus up to as much again, at random) before it
 * opens the file again: longer than a waiter's longest pause between attempts, so the waiter
 * gets the lock.
 */
export const HANDOVER_COOL_DOWN_MS = 250;

/** `<file>.wait`: a process waiting for the file lock keeps it fresh. */
export function waitMarker(file: string): string {
  return `${file}.wait`;
}

/** True when another process has waited for this file's lock in the last moments (since `openedAt`). */
export async function isWanted(file: string, openedAt: number): Promise<boolean> {
  try {
    const { mtimeMs } = await fsp.stat(waitMarker(file));
    return mtimeMs > openedAt && Date.now() - mtimeMs < WAIT_MARKER_FRESH_MS;
  } catch {
    return false; // no marker: nobody waits
  }
}

interface LockWaitOptions {
  tenantId: string;
  file: string;
  timeoutMs: number;
  /** The sink is closing: stop waiting. */
  stopped: () => boolean;
  logger: Logger;
  metrics: DuckDbMetrics;
}

/**
 * Runs `open` until it does not fail on the file lock another process holds: retries every few
 * tens of milliseconds (so it takes the lock as soon as the holder hands it over) and keeps the
 * wait marker fresh, which tells the holder someone waits. Gives up after timeoutMs with open's
 * error (a RetriableError naming the lock).
 */
export async function openWhenFree<T>(open: () => Promise<T>, o: LockWaitOptions): Promise<T> {
  const marker = waitMarker(o.file);
  let waitStarted: number | undefined;
  let markerTouched = 0;
  let delay = 10;
  for (;;) {
    try {
      const opened = await open();
      if (waitStarted !== undefined) {
        const waitedMs = Date.now() - waitStarted;
        o.metrics.lockWaitDuration.observe(waitedMs / 1000);
        o.logger.info({ tenantId: o.tenantId, waitedMs }, 'took over the tenant DuckDB database from another process');
        // Ours is no longer a reason to hand it back; other waiters refresh theirs at once.
        await fsp.rm(marker, { force: true }).catch(() => undefined);
      }
      return opened;
    } catch (err) {
      if (causeKind(err) !== 'lock_conflict' || o.stopped() || (waitStarted !== undefined && Date.now() - waitStarted >= o.timeoutMs)) {
        if (waitStarted !== undefined) {
          o.metrics.lockWaitDuration.observe((Date.now() - waitStarted) / 1000);
          o.logger.warn({ tenantId: o.tenantId, waitedMs: Date.now() - waitStarted, err: duckDbMessage(err) }, 'gave up waiting for the tenant DuckDB database held by another process');
        }
        throw err;
      }
      if (waitStarted === undefined) {
        waitStarted = Date.now();
        o.metrics.lockWaits.inc();
        o.logger.info({ tenantId: o.tenantId, holder: duckDbMessage((err as Error).cause) }, 'tenant DuckDB database is locked by another process; waiting for it to be handed over');
      }
      if (Date.now() - markerTouched >= WAIT_MARKER_REFRESH_MS) {
        markerTouched = Date.now();
        await fsp.writeFile(marker, `${process.pid}\n`).catch((e: unknown) => o.logger.warn({ err: e, marker }, 'cannot write the DuckDB wait marker'));
      }
      await sleep(Math.random() * delay);
      delay = Math.min(LOCK_RETRY_MAX_DELAY_MS, delay * 2);
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
