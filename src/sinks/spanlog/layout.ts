import fsp from 'node:fs/promises';
import path from 'node:path';
import type { FileHandleLike } from './files.js';

/** Folder under SPANLOG_DIR that holds the partition lock files. */
export const LOCKS_DIR = '.locks';

export function segmentName(topic: string, partition: number, firstOffset: bigint): string {
  return `${topic}+${partition}+${firstOffset}.jsonl`;
}

export function segmentPattern(topic: string, partition: number): RegExp {
  const escaped = topic.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&');
  return new RegExp(`^${escaped}\\+${partition}\\+\\d+\\.jsonl$`);
}

export interface Tail {
  size: number;
  /** Length of the file up to and including its last complete, parseable line. */
  validLength: number;
  /** Kafka offset in that last line's `_kafka` bookkeeping. */
  lastOffset: bigint | undefined;
}

function offsetOf(line: string): bigint | undefined {
  try {
    const parsed = JSON.parse(line) as { _kafka?: { offset?: unknown } };
    const offset = parsed._kafka?.offset;
    return typeof offset === 'string' && /^\d+$/.test(offset) ? BigInt(offset) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Reads a segment from its end until it finds the last complete line that parses and carries
 * an offset. Anything after that line is a torn (or, after a power loss, garbled) tail.
 */
export async function readTail(handle: FileHandleLike): Promise<Tail> {
  const { size } = await handle.stat();
  let window = Math.min(size, 64 * 1024);
  for (;;) {
    const start = size - window;
    const buffer = Buffer.alloc(window);
    await handle.read(buffer, 0, window, start);
    // Walk complete lines backwards: a line ends at a '\n'.
    let end = buffer.lastIndexOf(0x0a);
    while (end >= 0) {
      const prev = end === 0 ? -1 : buffer.lastIndexOf(0x0a, end - 1);
      if (prev < 0 && start > 0) break; // the line may begin before this window
      const offset = offsetOf(buffer.subarray(prev + 1, end).toString('utf8'));
      if (offset !== undefined) return { size, validLength: start + end + 1, lastOffset: offset };
      end = prev;
    }
    if (start === 0) return { size, validLength: 0, lastOffset: undefined };
    window = Math.min(size, window * 4);
  }
}

export interface SegmentInfo {
  tenantId: string;
  day: string;
  file: string;
  bytes: number;
}

/** Every segment under a span log folder (for summaries and tests; skips the locks folder). */
export async function listSegments(root: string): Promise<SegmentInfo[]> {
  const out: SegmentInfo[] = [];
  const tenants = await fsp.readdir(root).catch(() => [] as string[]);
  for (const tenantId of tenants.sort()) {
    if (tenantId === LOCKS_DIR) continue;
    const days = await fsp.readdir(path.join(root, tenantId)).catch(() => [] as string[]);
    for (const day of days.sort()) {
      const files = await fsp.readdir(path.join(root, tenantId, day)).catch(() => [] as string[]);
      for (const name of files.sort()) {
        if (!name.endsWith('.jsonl')) continue;
        const file = path.join(root, tenantId, day, name);
        const { size } = await fsp.stat(file);
        out.push({ tenantId, day, file, bytes: size });
      }
    }
  }
  return out;
}
