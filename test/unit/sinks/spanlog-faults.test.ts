import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RetriableError } from '../../../src/errors.js';
import { tenantIdFor } from '../../../src/model/generate.js';
import { listSegments } from '../../../src/sinks/spanlog/layout.js';
import { SpanLogSink } from '../../../src/sinks/spanlog/spanlog-sink.js';
import { FaultyFiles, type Fault } from './spanlog-faulty-files.js';
import { expectExactlyOnce, flushOf, readSpanLog, runStage } from './spanlog-stage.js';

const A = tenantIdFor(0);
const B = tenantIdFor(1);

describe('SpanLogSink under disk faults', () => {
  let dir: string;
  let files: FaultyFiles;
  const sinks: SpanLogSink[] = [];
  const make = (maxOpenFiles?: number) => {
    const sink = new SpanLogSink({ dir, lockStaleMs: 2000, files, maxOpenFiles }, { logger: pino({ level: 'silent' }), registry: new Registry() });
    sinks.push(sink);
    return sink;
  };
  /** Where the runner would commit: a power loss now must not take anything away. */
  const nothingUnsynced = () => expect(files.unsyncedProblems()).toEqual([]);

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spanlog-faults-'));
    files = new FaultyFiles(dir);
  });
  afterEach(async () => {
    for (const s of sinks.splice(0)) await s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const how of ['short', 'enospc-after-partial', 'enospc'] as const) {
    it(`cuts a failed append (${how}) back to its last complete line and writes it again`, async () => {
      const sink = make();
      await runStage(sink, flushOf(0, 9, 1), nothingUnsynced);
      const file = (await listSegments(dir))[0]!.file;
      const before = fs.statSync(file).size;
      files.fail({ op: 'write', how });
      const failed = await sink.write(flushOf(10, 19, 1)).catch((e: unknown) => e);
      expect(failed).toBeInstanceOf(RetriableError);
      expect(fs.statSync(file).size).toBe(before); // no torn line left behind
      expect(await runStage(sink, flushOf(10, 19, 1), nothingUnsynced)).toBe(1);
      expect(files.injected).toBe(1);
      await expectExactlyOnce(dir, 0, 19, 1);
    });
  }

  it('never commits a torn line even when cutting back fails too: the next write cuts back first', async () => {
    const sink = make();
    await runStage(sink, flushOf(0, 9, 1), nothingUnsynced);
    files.fail({ op: 'write', how: 'enospc-after-partial' });
    files.fail({ op: 'truncate', how: 'eio' }, { times: 2 });
    expect(await runStage(sink, flushOf(10, 19, 1), nothingUnsynced)).toBe(1);
    expect(files.injected).toBe(3);
    await expectExactlyOnce(dir, 0, 19, 1);
  });

  it('after a failed fdatasync, cuts the flush back and writes it again instead of trusting the page cache', async () => {
    const sink = make();
    await runStage(sink, flushOf(0, 99, 4), nothingUnsynced);
    files.fail({ op: 'datasync', how: 'eio' }, { file: A });
    expect(await runStage(sink, flushOf(100, 199, 4), nothingUnsynced)).toBe(2);
    expect(files.injected).toBe(1);
    expect(files.falseSyncs).toBe(0);
    await expectExactlyOnce(dir, 0, 199, 4);
  });

  it('keeps failing, without committing, while fdatasync keeps failing; then recovers', async () => {
    const sink = make();
    files.fail({ op: 'datasync', how: 'eio' }, { times: 7 });
    expect(await runStage(sink, flushOf(0, 99, 4), nothingUnsynced)).toBeGreaterThan(2);
    expect(files.injected).toBe(7);
    expect(files.falseSyncs).toBe(0);
    await expectExactlyOnce(dir, 0, 99, 4);
  });

  it('does not commit while a failed flush cannot even be cut back', async () => {
    const sink = make();
    await runStage(sink, flushOf(0, 49, 2), nothingUnsynced);
    files.fail({ op: 'datasync', how: 'eio' }, { file: B });
    files.fail({ op: 'truncate', how: 'eio' }, { file: B, times: 3 });
    files.fail({ op: 'sync', how: 'eio' }, { file: B, times: 2 });
    let syncs = 0;
    expect(await runStage(sink, flushOf(50, 99, 2), () => {
      syncs += 1;
      nothingUnsynced();
    })).toBeGreaterThan(1);
    expect(syncs).toBe(1);
    expect(files.falseSyncs).toBe(0);
    await expectExactlyOnce(dir, 0, 99, 2);
  });

  it("one tenant's failing file never leaves another tenant's bytes unsynced at a commit", async () => {
    // Two open files at most: A's handle is evicted while B's writes fail, A must still be synced.
    const sink = make(2);
    await runStage(sink, flushOf(0, 29, 3), nothingUnsynced);
    files.fail({ op: 'write', how: 'enospc' }, { file: B, times: 4 });
    files.fail({ op: 'datasync', how: 'eio' }, { file: B });
    await runStage(sink, flushOf(30, 89, 3), nothingUnsynced);
    expect(files.injected).toBe(5);
    expect(files.falseSyncs).toBe(0);
    await expectExactlyOnce(dir, 0, 89, 3);
  });

  it('survives a random mix of faults over many flushes: every span exactly once, no false sync', async () => {
    const sink = make(4);
    let seed = 42;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const kinds: Fault[] = [
      { op: 'write', how: 'short' },
      { op: 'write', how: 'enospc-after-partial' },
      { op: 'write', how: 'enospc' },
      { op: 'datasync', how: 'eio' },
      { op: 'truncate', how: 'eio' },
      { op: 'sync', how: 'eio' },
      { op: 'open', how: 'eio' },
    ];
    const tenants = 6;
    for (let f = 0; f < 40; f += 1) {
      const faults = Math.floor(random() * 3);
      for (let i = 0; i < faults; i += 1) files.fail(kinds[Math.floor(random() * kinds.length)]!, { file: tenantIdFor(Math.floor(random() * tenants)) });
      await runStage(sink, flushOf(f * 50, f * 50 + 49, tenants, 3), nothingUnsynced);
    }
    expect(files.injected).toBeGreaterThan(20);
    expect(files.falseSyncs).toBe(0);
    await expectExactlyOnce(dir, 0, 40 * 50 - 1, tenants);
  });

  it('bounds open files: 200 tenant-days in one flush with at most 8 descriptors', async () => {
    const sink = make(8);
    await runStage(sink, flushOf(0, 1999, 50, 4), nothingUnsynced);
    expect((await listSegments(dir)).length).toBe(200);
    // Evicted dirty handles are fdatasynced before they close; one of those failing is handled too.
    files.fail({ op: 'datasync', how: 'eio' }, { times: 1 });
    await runStage(sink, flushOf(2000, 3999, 50, 4), nothingUnsynced);
    expect(files.maxOpen).toBeLessThanOrEqual(8);
    expect(files.falseSyncs).toBe(0);
    await expectExactlyOnce(dir, 0, 3999, 50);
  });

  it('fsyncs what it inherits from a crashed writer (segments and folder entries) before trusting it', async () => {
    // A previous owner wrote offsets 0..19 and died before any fsync: all of it is in the page cache only.
    const crashed = make();
    await runStage(crashed, flushOf(0, 19, 2), () => undefined);
    await crashed.releasePartition('spans', 0);
    for (const segment of await listSegments(dir)) files.inherit(segment.file);
    expect(files.unsyncedProblems().length).toBeGreaterThan(0);
    // The new owner gets 10..29 again (uncommitted): 10..19 are skipped as present, so it may only
    // commit once what it skips is durable.
    const next = make();
    await runStage(next, flushOf(10, 29, 2), nothingUnsynced);
    await expectExactlyOnce(dir, 0, 29, 2);
    expect([...(await readSpanLog(dir)).keys()]).toHaveLength(30);
  });
});
