import type { FileHandleLike, SpanLogFiles } from './files.js';
import type { SpanPosition } from './layout.js';

/** A point in a segment: its length (complete lines only) and the position of its last line. */
export interface Mark {
  length: number;
  lastPosition: SpanPosition;
}

/** One segment file this worker appends to, and what it knows about its bytes. */
export class Segment {
  /** Where the file ends as far as this worker wrote it. */
  end: Mark;
  /** Where it ended at the last fdatasync that succeeded: what survives a power loss. */
  synced: Mark;
  /**
   * A failed fdatasync, or a failed write that could not be cut back: the bytes after `synced`
   * cannot be trusted until the file is cut back to `synced` (and that is fsynced).
   */
  damaged = false;

  constructor(
    readonly path: string,
    start: Mark,
  ) {
    this.end = start;
    this.synced = start;
  }

  /** Holds bytes a power loss could take, or bytes nobody can vouch for. */
  get unsynced(): boolean {
    return this.damaged || this.end.length > this.synced.length;
  }
}

interface OpenFile {
  handle: Promise<FileHandleLike>;
  /** Callers using the handle right now: it is not evicted meanwhile. */
  pins: number;
}

/**
 * Every file descriptor the span log sink holds, at most `max` at a time: segment handles kept
 * open between flushes (least recently used first out) and short-lived ones (recovery, folder
 * fsyncs). A segment handle evicted while its segment holds unsynced bytes is fdatasynced before
 * it is closed; a failed fdatasync marks the segment damaged, so the partition's next sync fails
 * and the flush is repeated. When every handle is in use, callers wait for one to be released.
 */
export class OpenSegments {
  /** Insertion order is recency order: the first idle entry is the least recently used. */
  private readonly open = new Map<Segment, OpenFile>();
  private used = 0;
  private waiters: Array<() => void> = [];

  constructor(
    private readonly files: SpanLogFiles,
    private readonly max: number,
  ) {}

  /** Number of descriptors held (open segment handles plus short-lived ones). */
  get descriptors(): number {
    return this.used;
  }

  /** Creates the segment's file (O_EXCL) and keeps its handle open. */
  async create(segment: Segment): Promise<void> {
    await this.use(segment, async () => undefined, 'wx');
  }

  /** Runs `fn` with the segment's handle, opening it (for read and write) if it is not open. */
  async use<T>(segment: Segment, fn: (handle: FileHandleLike) => Promise<T>, flags: 'wx' | 'r+' = 'r+'): Promise<T> {
    let file = this.open.get(segment);
    if (file === undefined) {
      await this.slot();
      file = this.open.get(segment);
      if (file !== undefined) this.free(); // opened by someone else while we waited
    }
    if (file === undefined) {
      const opened: OpenFile = { handle: this.files.open(segment.path, flags), pins: 0 };
      file = opened;
      this.open.set(segment, opened);
      opened.handle.catch(() => {
        if (this.open.get(segment) === opened) this.open.delete(segment);
        this.free();
      });
    } else {
      this.open.delete(segment); // most recently used goes last
      this.open.set(segment, file);
    }
    file.pins += 1;
    try {
      return await fn(await file.handle);
    } finally {
      file.pins -= 1;
      if (file.pins === 0) this.wake();
    }
  }

  /** Runs `fn` with a handle of its own that is closed afterwards (counted against the bound). */
  async once<T>(path: string, flags: 'r+' | 'r', fn: (handle: FileHandleLike) => Promise<T>): Promise<T> {
    await this.slot();
    try {
      const handle = await this.files.open(path, flags);
      try {
        return await fn(handle);
      } finally {
        await handle.close();
      }
    } finally {
      this.free();
    }
  }

  /** Closes the segment's handle without syncing (its partition is released or stopping). */
  async close(segment: Segment): Promise<void> {
    const file = this.open.get(segment);
    if (file === undefined) return;
    this.open.delete(segment);
    const handle = await file.handle.catch(() => undefined);
    if (handle === undefined) return; // a failed open already gave its slot back
    await handle.close().catch(() => undefined);
    this.free();
  }

  private async slot(): Promise<void> {
    for (;;) {
      if (this.used < this.max) {
        this.used += 1;
        return;
      }
      const idle = this.leastRecentlyUsedIdle();
      if (idle !== undefined) {
        await this.evict(idle);
        continue;
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  private leastRecentlyUsedIdle(): Segment | undefined {
    for (const [segment, file] of this.open) if (file.pins === 0) return segment;
    return undefined;
  }

  private async evict(segment: Segment): Promise<void> {
    const file = this.open.get(segment)!;
    this.open.delete(segment);
    const handle = await file.handle.catch(() => undefined);
    if (handle === undefined) return;
    try {
      if (segment.unsynced && !segment.damaged) {
        const target = segment.end;
        try {
          await handle.datasync();
          if (target.length > segment.synced.length) segment.synced = target;
        } catch {
          // The kernel may have dropped these pages: the partition's sync fails and cuts back.
          segment.damaged = true;
        }
      }
    } finally {
      await handle.close().catch(() => undefined);
      this.free();
    }
  }

  private free(): void {
    this.used -= 1;
    this.wake();
  }

  private wake(): void {
    for (const resolve of this.waiters.splice(0)) resolve();
  }
}
