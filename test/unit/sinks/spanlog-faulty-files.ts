import fs from 'node:fs';
import path from 'node:path';
import { nodeFiles, type FileHandleLike, type SpanLogFiles } from '../../../src/sinks/spanlog/files.js';

/**
 * A file layer for the span log sink that injects disk faults into real files and keeps a model
 * of what a power loss would leave: per file the bytes of its last successful fsync ("disk"),
 * and per path whether its folder entry was fsynced. A failed fsync behaves as Linux does
 * ("fsyncgate"): the dirty pages are dropped from the writeback and marked clean, so a later
 * fsync succeeds without them unless they are written again. `unsyncedProblems()` lists every
 * byte and folder entry that a power loss right now would take away.
 */
export type Fault =
  | { op: 'write'; how: 'short' | 'enospc-after-partial' | 'enospc' }
  | { op: 'datasync' | 'sync' | 'truncate' | 'open'; how: 'eio' };

interface FaultRule {
  fault: Fault;
  matches: (file: string) => boolean;
  times: number;
}

interface Tracked {
  /** What survives a power loss: the bytes as of the last fsync that really wrote them. */
  disk: Buffer;
  /** Byte ranges dropped by a failed fsync and not written since: a later fsync skips them. */
  dropped: Array<[number, number]>;
}

export class FaultyFiles implements SpanLogFiles {
  private readonly rules: FaultRule[] = [];
  private readonly files = new Map<string, Tracked>();
  /** Paths (files and folders) whose entry in their parent folder is not fsynced yet. */
  private readonly volatileEntries = new Set<string>();
  private openNow = 0;
  /** Most file descriptors open at the same time. */
  maxOpen = 0;
  injected = 0;
  /** fsyncs that succeeded although bytes they should have written had been dropped. */
  falseSyncs = 0;

  constructor(private readonly root: string) {}

  /** The next `times` matching operations fail as described. */
  fail(fault: Fault, options: { file?: string | RegExp; times?: number } = {}): void {
    const { file } = options;
    const matches = file === undefined ? () => true : typeof file === 'string' ? (f: string) => f.includes(file) : (f: string) => file.test(f);
    this.rules.push({ fault, matches, times: options.times ?? 1 });
  }

  /** A file a crashed writer left: nothing of it (nor its folders' entries) was fsynced. */
  inherit(file: string): void {
    this.files.set(file, { disk: Buffer.alloc(0), dropped: [] });
    for (let p = file; p.length > this.root.length; p = path.dirname(p)) this.volatileEntries.add(p);
  }

  /** Everything a power loss right now would lose, under `under` (default: all of it). */
  unsyncedProblems(under = this.root): string[] {
    const problems: string[] = [];
    for (const [file, tracked] of this.files) {
      if (!file.startsWith(under)) continue;
      const now = fs.readFileSync(file);
      if (!now.equals(tracked.disk)) problems.push(`${path.relative(this.root, file)}: ${now.length} bytes in the file, ${tracked.disk.length} as fsynced`);
    }
    for (const entry of this.volatileEntries) if (entry.startsWith(under)) problems.push(`${path.relative(this.root, entry)}: folder entry not fsynced`);
    return problems;
  }

  async open(file: string, flags: 'wx' | 'r+' | 'r'): Promise<FileHandleLike> {
    this.take('open', file);
    const handle = await nodeFiles.open(file, flags);
    if (flags === 'wx') {
      this.files.set(file, { disk: Buffer.alloc(0), dropped: [] });
      this.volatileEntries.add(file);
    }
    this.openNow += 1;
    this.maxOpen = Math.max(this.maxOpen, this.openNow);
    return this.wrap(file, handle);
  }

  async mkdir(dir: string): Promise<string | undefined> {
    const created = await nodeFiles.mkdir(dir);
    if (created !== undefined) for (let p = dir; p.length >= created.length; p = path.dirname(p)) this.volatileEntries.add(p);
    return created;
  }

  readdir(dir: string): Promise<string[]> {
    return nodeFiles.readdir(dir);
  }

  async rm(file: string): Promise<void> {
    await nodeFiles.rm(file);
    this.files.delete(file);
    this.volatileEntries.delete(file);
  }

  private wrap(file: string, handle: FileHandleLike): FileHandleLike {
    let closed = false;
    return {
      write: async (buffer, offset, length, position) => {
        const fault = this.take('write', file);
        if (fault?.how === 'enospc') throw enospc();
        if (fault?.how === 'short' || fault?.how === 'enospc-after-partial') {
          const part = Math.max(1, Math.floor(length / 2));
          await handle.write(buffer, offset, part, position);
          this.rewritten(file, position, part);
          if (fault.how === 'short') return { bytesWritten: part };
          throw enospc();
        }
        const result = await handle.write(buffer, offset, length, position);
        this.rewritten(file, position, result.bytesWritten);
        return result;
      },
      read: (buffer, offset, length, position) => handle.read(buffer, offset, length, position),
      stat: () => handle.stat(),
      truncate: async (length) => {
        if (this.take('truncate', file)) throw eio('ftruncate');
        await handle.truncate(length);
        const tracked = this.files.get(file);
        if (tracked) tracked.dropped = tracked.dropped.flatMap(([a, b]) => (a < length ? [[a, Math.min(b, length)] as [number, number]] : []));
      },
      datasync: async () => {
        if (this.take('datasync', file)) return this.fsyncFailed(file);
        await handle.datasync();
        this.fsynced(file);
      },
      sync: async () => {
        if (this.take('sync', file)) return this.fsyncFailed(file);
        await handle.sync();
        this.fsynced(file);
      },
      close: async () => {
        if (!closed) this.openNow -= 1;
        closed = true;
        await handle.close();
      },
    };
  }

  private take(op: Fault['op'], file: string): Fault | undefined {
    const rule = this.rules.find((r) => r.fault.op === op && r.times > 0 && r.matches(file));
    if (rule === undefined) return undefined;
    rule.times -= 1;
    this.injected += 1;
    return rule.fault;
  }

  private rewritten(file: string, position: number, length: number): void {
    const tracked = this.files.get(file);
    if (tracked === undefined) return;
    const end = position + length;
    tracked.dropped = tracked.dropped.flatMap(([a, b]): Array<[number, number]> => {
      if (b <= position || a >= end) return [[a, b]];
      const kept: Array<[number, number]> = [];
      if (a < position) kept.push([a, position]);
      if (b > end) kept.push([end, b]);
      return kept;
    });
  }

  private fsyncFailed(file: string): never {
    const tracked = this.files.get(file);
    if (tracked !== undefined) {
      // The kernel drops the pages it could not write (every byte that differs from the disk).
      const now = fs.readFileSync(file);
      let same = 0;
      while (same < now.length && same < tracked.disk.length && now[same] === tracked.disk[same]) same += 1;
      if (same < now.length) tracked.dropped.push([same, now.length]);
    }
    throw eio('fsync');
  }

  private fsynced(target: string): void {
    const tracked = this.files.get(target);
    if (tracked !== undefined) {
      const now = fs.readFileSync(target);
      const live = tracked.dropped.filter(([a]) => a < now.length);
      if (live.length > 0) this.falseSyncs += 1;
      // Dropped pages are clean as far as the kernel knows: the disk keeps its old bytes there.
      for (const [a, b] of live) {
        const old = Buffer.alloc(Math.min(b, now.length) - a);
        tracked.disk.copy(old, 0, a, Math.min(b, now.length));
        old.copy(now, a);
      }
      tracked.disk = now;
    }
    // An fsynced folder makes the entries in it durable.
    for (const entry of this.volatileEntries) if (path.dirname(entry) === target) this.volatileEntries.delete(entry);
  }
}

function enospc(): NodeJS.ErrnoException {
  return Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28 });
}

function eio(what: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`EIO: i/o error, ${what}`), { code: 'EIO', errno: -5 });
}
