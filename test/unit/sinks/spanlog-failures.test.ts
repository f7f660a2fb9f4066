import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FatalStoreError, InvariantError, LocalWaitError, RetriableError, dispositionOf, type Disposition } from '../../../src/errors.js';
import { SpanLogCondition, spanLogCondition, spanLogFailure } from '../../../src/sinks/spanlog/failures.js';
import { nodeFiles, type SpanLogFiles } from '../../../src/sinks/spanlog/files.js';
import { SpanLogSink } from '../../../src/sinks/spanlog/spanlog-sink.js';
import { tenantIdFor } from '../../../src/model/generate.js';
import { flushOf } from './spanlog-stage.js';

/** A raw failure as node:fs (or proper-lockfile) throws it. */
function errno(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: from the file system`), { code });
}

type ErrorClass = abstract new (...args: never[]) => Error;

/** One row per mapping: what the file system (or the lock) said, what the pipeline is told. */
const TABLE: Array<{ failure: string; raw: unknown; type: ErrorClass; disposition: Disposition }> = [
  { failure: 'partition lock held by another live owner (ELOCKED)', raw: errno('ELOCKED'), type: LocalWaitError, disposition: 'local_wait' },
  { failure: 'our stale lock taken over by a peer (ECOMPROMISED)', raw: spanLogCondition(SpanLogCondition.lockLost, 'lock compromised'), type: LocalWaitError, disposition: 'local_wait' },
  { failure: 'segment created by a peer meanwhile (EEXIST)', raw: errno('EEXIST'), type: LocalWaitError, disposition: 'local_wait' },
  { failure: 'process out of file descriptors (EMFILE)', raw: errno('EMFILE'), type: LocalWaitError, disposition: 'local_wait' },
  { failure: 'system file table full (ENFILE)', raw: errno('ENFILE'), type: LocalWaitError, disposition: 'local_wait' },
  { failure: 'disk full (ENOSPC)', raw: errno('ENOSPC'), type: RetriableError, disposition: 'retry' },
  { failure: 'quota exceeded (EDQUOT)', raw: errno('EDQUOT'), type: RetriableError, disposition: 'retry' },
  { failure: 'I/O error (EIO)', raw: errno('EIO'), type: RetriableError, disposition: 'retry' },
  { failure: 'short write', raw: spanLogCondition(SpanLogCondition.shortWrite, 'short write: 1 of 2 bytes'), type: RetriableError, disposition: 'retry' },
  { failure: 'segment with untrusted bytes not cut back yet', raw: spanLogCondition(SpanLogCondition.untrustedBytes, 'must be cut back'), type: RetriableError, disposition: 'retry' },
  { failure: 'any other errno code (ESTALE)', raw: errno('ESTALE'), type: RetriableError, disposition: 'retry' },
  { failure: 'permission denied (EACCES)', raw: errno('EACCES'), type: FatalStoreError, disposition: 'fatal' },
  { failure: 'operation not permitted (EPERM)', raw: errno('EPERM'), type: FatalStoreError, disposition: 'fatal' },
  { failure: 'read-only file system (EROFS)', raw: errno('EROFS'), type: FatalStoreError, disposition: 'fatal' },
  { failure: 'a file where a folder belongs (ENOTDIR)', raw: errno('ENOTDIR'), type: FatalStoreError, disposition: 'fatal' },
  { failure: 'a folder where a file belongs (EISDIR)', raw: errno('EISDIR'), type: FatalStoreError, disposition: 'fatal' },
  { failure: 'name too long (ENAMETOOLONG)', raw: errno('ENAMETOOLONG'), type: FatalStoreError, disposition: 'fatal' },
  { failure: 'a closed descriptor used (EBADF)', raw: errno('EBADF'), type: InvariantError, disposition: 'fatal' },
  { failure: 'node refusing an argument (ERR_INVALID_ARG_TYPE)', raw: errno('ERR_INVALID_ARG_TYPE'), type: InvariantError, disposition: 'fatal' },
];

describe('spanLogFailure: the span log error classifier', () => {
  for (const row of TABLE) {
    it(`${row.failure} → ${row.type.name} (${row.disposition})`, () => {
      const typed = spanLogFailure('appending to a segment failed', row.raw);
      expect(typed.constructor).toBe(row.type);
      expect(dispositionOf(typed)).toBe(row.disposition);
      expect(typed.message).toMatch(/appending to a segment failed$/);
      expect(typed.cause).toBe(row.raw);
    });
  }

  it('keeps a failure that is already typed', () => {
    const typed = new RetriableError('already typed');
    expect(spanLogFailure('appending failed', typed)).toBe(typed);
  });

  it('leaves a failure without a code (a bug, not the file system) untyped: retried a bounded number of times, then surfaced', () => {
    const bug = new TypeError('cannot read properties of undefined');
    const typed = spanLogFailure('cannot recover span log folder x', bug);
    expect(dispositionOf(typed)).toBe('unknown');
    expect(typed.message).toBe('cannot recover span log folder x');
    expect(typed.cause).toBe(bug);
  });
});

describe('SpanLogSink reports its failures typed', () => {
  let dir: string;
  const sinks: SpanLogSink[] = [];
  const make = (files: SpanLogFiles = nodeFiles) => {
    const sink = new SpanLogSink({ dir, lockStaleMs: 2000, files }, { logger: pino({ level: 'silent' }), registry: new Registry() });
    sinks.push(sink);
    return sink;
  };

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spanlog-failures-'));
  });
  afterEach(async () => {
    for (const s of sinks.splice(0)) await s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a read-only file system stops the worker (FatalStoreError) instead of retrying forever', async () => {
    const readOnly: SpanLogFiles = { ...nodeFiles, open: (file, flags) => (flags === 'wx' ? Promise.reject(errno('EROFS')) : nodeFiles.open(file, flags)) };
    const failed = await make(readOnly).write(flushOf(0, 3, 1)).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(FatalStoreError);
    expect((failed as Error).message).toMatch(/^spanlog: cannot create .*spans\+0\+0\.jsonl: EROFS/);
  });

  it('a span whose day folder is not a day is a caller bug (InvariantError), and nothing is written', async () => {
    const flush = flushOf(0, 0, 1);
    const [item] = flush.tenants.get(tenantIdFor(0))!;
    const failed = await make()
      .write({ ...flush, tenants: new Map([[tenantIdFor(0), [{ ...item!, value: { ...item!.value, day: '../x' } }]]]) })
      .catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(InvariantError);
    expect((failed as Error).message).toMatch(/invalid day folder/);
    expect(fs.readdirSync(dir).filter((f) => f !== '.locks')).toEqual([]);
  });

  it('when tenants of one flush fail differently, the failure that decides most is reported', async () => {
    // Tenant 0's write runs into a full disk (listed first), tenant 1's segment cannot be created (read-only).
    const files: SpanLogFiles = {
      ...nodeFiles,
      open: async (file, flags) => {
        if (flags === 'wx' && file.includes(tenantIdFor(1))) throw errno('EROFS');
        const h = await nodeFiles.open(file, flags);
        if (!file.includes(tenantIdFor(0))) return h;
        return { write: () => Promise.reject(errno('ENOSPC')), read: (...a) => h.read(...a), stat: () => h.stat(), truncate: (n) => h.truncate(n), datasync: () => h.datasync(), sync: () => h.sync(), close: () => h.close() };
      },
    };
    const failed = await make(files).write(flushOf(0, 3, 2)).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(FatalStoreError);
  });
});
