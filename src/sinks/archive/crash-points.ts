/**
 * Crash points for the integration tests (like SPANLEDGER_TEST_DISABLE_CODECS): with
 * SPANLEDGER_TEST_ARCHIVE_KILL=<point>:<n>, the process SIGKILLs itself at that point of its n-th
 * cycle (counted over all partitions, from 1), so that a test can crash a worker exactly
 * before, during or after a cycle's uploads, before its commit. Unset in production: no effect.
 */
export type CrashPoint = 'before-upload' | 'mid-upload' | 'after-upload';

const POINTS: readonly CrashPoint[] = ['before-upload', 'mid-upload', 'after-upload'];

export class CrashPoints {
  private readonly at: { point: CrashPoint; cycle: number } | undefined;
  private cycles = 0;

  constructor(spec = process.env.SPANLEDGER_TEST_ARCHIVE_KILL) {
    const m = /^([a-z-]+):(\d+)$/.exec(spec ?? '');
    this.at = m !== null && (POINTS as readonly string[]).includes(m[1]!) ? { point: m[1] as CrashPoint, cycle: Number(m[2]) } : undefined;
  }

  /** A cycle begins its uploads; returns its number. */
  nextCycle(): number {
    this.cycles += 1;
    return this.cycles;
  }

  reached(point: CrashPoint, cycle: number): void {
    if (this.at?.point === point && this.at.cycle === cycle) process.kill(process.pid, 'SIGKILL');
  }
}
