import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RetriableError } from '../../../src/errors.js';
import { SpanLogSink } from '../../../src/sinks/spanlog/spanlog-sink.js';
import { expectExactlyOnce, flushOf, runStage, type Flush } from './spanlog-stage.js';

/**
 * A real file system that fills up: a 512 KiB tmpfs. Writes run into ENOSPC (tmpfs gives short
 * writes when a buffer only partly fits), then the tmpfs grows and the failed flush is retried.
 * Needs root (mount); otherwise it is skipped with one line saying why.
 */
const TENANTS = 8;
const FLUSH = 200;

function run(command: string, args: string[]): void {
  execFileSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** ENOSPC, or a write the kernel cut short because the buffer only partly fitted. */
function isDiskFull(error: unknown): boolean {
  for (let e = error; e instanceof Error; e = e.cause) if ((e as NodeJS.ErrnoException).code === 'ENOSPC' || /ENOSPC|short write/.test(e.message)) return true;
  return false;
}

/** One try of a stage (no retries): the sink settles every tenant's write before it reports a failure. */
async function attemptStage(sink: SpanLogSink, flush: Flush): Promise<void> {
  await sink.write(flush);
  await sink.sync('spans', 0);
}

describe('SpanLogSink on a tmpfs that fills up', () => {
  let mountPoint: string | undefined;
  let skipReason: string | undefined;
  let sink: SpanLogSink | undefined;

  beforeAll(() => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spanlog-tmpfs-'));
    if (process.getuid?.() !== 0) skipReason = 'not running as root';
    else {
      try {
        run('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', dir]);
        mountPoint = dir;
      } catch (e) {
        skipReason = `mount -t tmpfs failed: ${String((e as { stderr?: Buffer }).stderr ?? (e as Error).message).trim()}`;
      }
    }
    if (mountPoint === undefined) {
      fs.rmSync(dir, { recursive: true, force: true });
      console.log(`*** tmpfs disk-full test skipped: ${skipReason} ***`);
    }
  });

  afterAll(async () => {
    await sink?.close();
    if (mountPoint !== undefined) {
      run('umount', [mountPoint]);
      fs.rmSync(mountPoint, { recursive: true, force: true });
    }
  });

  it('writes until ENOSPC, then, with space freed, keeps every span exactly once and no torn line', async (ctx) => {
    if (mountPoint === undefined) return ctx.skip();
    const dir = mountPoint;
    sink = new SpanLogSink({ dir, lockStaleMs: 10_000 }, { logger: pino({ level: 'silent' }), registry: new Registry() });
    await sink.start();

    let next = 0;
    let failedFlush: Flush | undefined;
    const failures: string[] = [];
    while (failedFlush === undefined) {
      expect(next, 'the 512 KiB tmpfs fills up within 4 MiB of spans').toBeLessThan(8000);
      const flush = flushOf(next, next + FLUSH - 1, TENANTS, 2);
      try {
        await attemptStage(sink, flush);
        next += FLUSH;
      } catch (e) {
        if (!isDiskFull(e)) throw e;
        expect(e).toBeInstanceOf(RetriableError);
        failedFlush = flush;
        failures.push((e as Error).message);
      }
    }
    // Still full: retrying fails again and commits nothing.
    await attemptStage(sink, failedFlush).then(
      () => expect.fail('a flush that did not fit cannot fit on the same full disk'),
      (e: unknown) => {
        expect(isDiskFull(e)).toBe(true);
        failures.push((e as Error).message);
      },
    );
    console.log(`tmpfs full after ${next} spans: ${failures.join(' | ')}`);
    // Space comes back: the retried flush and the ones after it go through.
    run('mount', ['-o', 'remount,size=4m', dir]);
    await runStage(sink, failedFlush, () => undefined);
    next += FLUSH;
    for (let i = 0; i < 3; i += 1, next += FLUSH) await runStage(sink, flushOf(next, next + FLUSH - 1, TENANTS, 2), () => undefined);
    await expectExactlyOnce(dir, 0, next - 1, TENANTS);
  });
});
