import fsp from 'node:fs/promises';
import path from 'node:path';
import type { FileHandleLike } from './files.js';
import type { DecodedSpan } from '../../model/decode.js';
import { MAX_SPANS_PER_RECORD } from '../../model/span-line.js';
import { InvariantError } from '../../errors.js';
import type { FlushItem } from '../types.js';

/** Folder under SPANLOG_DIR that holds the partition lock files. */
export const LOCKS_DIR = '.locks';

/**
 * Where a span stands in its partition: its record's offset, then its index within the record
 * (an OTLP record holds many spans). One bigint, so that watermarks compare as numbers.
 */
export type SpanPosition = bigint;
/** Bits of a position that hold the index: MAX_SPANS_PER_RECORD = 2^24. */
const INDEX_BITS = 24n;

export function spanPosition(offset: bigint, index = 0): SpanPosition {
  return (offset << INDEX_BITS) | BigInt(index);
}

export function positionOffset(position: SpanPosition): bigint {
  return position >> INDEX_BITS;
}

export function positionIndex(position: SpanPosition): number {
  return Number(position & ((1n << INDEX_BITS) - 1n));
}

/** `<topic>+<partition>+<offset>.jsonl`, or `…+<offset>_<index>.jsonl` when it starts inside a record. */
export function segmentName(topic: string, partition: number, first: SpanPosition): string {
  const index = positionIndex(first);
  return `${topic}+${partition}+${positionOffset(first)}${index === 0 ? '' : `_${index}`}.jsonl`;
}

export function segmentPattern(topic: string, partition: number): RegExp {
  const escaped = topic.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&');
  return new RegExp(`^${escaped}\\+${partition}\\+\\d+(?:_\\d+)?\\.jsonl$`);
}

/**
 * The lines of one tenant-day's write: each the stored span with the Kafka bookkeeping as its
 * last field, made into one buffer (toBuffer). A span held as its record's bytes (a record that
 * is its stored line) is copied byte for byte, never turned into text; an offset is turned into
 * text once per record, however many spans the record holds.
 */
export class SpanLines {
  /** Each span's line: its text, or its record's bytes followed by the text of its end. */
  private readonly parts: Array<string | Uint8Array> = [];
  private size = 0;
  private readonly bookkeeping: string;
  private offset: bigint | undefined;
  private offsetText = '';

  constructor(topic: string, partition: number) {
    this.bookkeeping = `,"_kafka":{"topic":${JSON.stringify(topic)},"partition":${partition},"offset":"`;
  }

  add(item: FlushItem<DecodedSpan>): void {
    if (item.offset !== this.offset) {
      this.offset = item.offset;
      this.offsetText = item.offset.toString();
    }
    // The line's end: the bookkeeping field, then the span's closing brace (ASCII: a topic name is).
    const end = `${this.bookkeeping}${this.offsetText}"${item.index === 0 ? '' : `,"index":${item.index}`}}}\n`;
    const bytes = item.value.bytes;
    if (bytes !== undefined) {
      const { headerTenant } = item.value;
      if (headerTenant === undefined) {
        // The record's bytes without their closing brace (always its last byte), then the end.
        this.parts.push(bytes, end);
        this.size += bytes.length - 1 + end.length;
      } else {
        // A record without its tenant (in its header): the tenant field first, then its fields.
        const head = `{"tenantId":"${headerTenant}",`;
        this.parts.push(head, bytes.subarray(1), end);
        this.size += head.length + bytes.length - 2 + end.length;
      }
      return;
    }
    const line = `${(item.value.json ?? JSON.stringify(item.value.span)).slice(0, -1)}${end}`;
    this.parts.push(line);
    this.size += Buffer.byteLength(line);
  }

  /** All the lines, in order, as one buffer (one write per segment and flush). */
  toBuffer(): Buffer {
    const out = Buffer.allocUnsafe(this.size);
    let at = 0;
    for (const part of this.parts) {
      if (typeof part === 'string') at += out.write(part, at, 'utf8');
      else {
        out.set(part, at);
        at += part.length - 1; // the closing brace: written over by the end that follows
      }
    }
    if (at !== this.size) throw new InvariantError(`span lines: wrote ${at} bytes of ${this.size}`);
    return out;
  }
}

export interface Tail {
  size: number;
  /** Length of the file up to and including its last complete, parseable line. */
  validLength: number;
  /** Position (offset and index) in that last line's `_kafka` bookkeeping. */
  lastPosition: SpanPosition | undefined;
}

function positionOf(line: string): SpanPosition | undefined {
  try {
    const parsed = JSON.parse(line) as { _kafka?: { offset?: unknown; index?: unknown } };
    const offset = parsed._kafka?.offset;
    const index = parsed._kafka?.index ?? 0;
    if (typeof offset !== 'string' || !/^\d+$/.test(offset) || typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= MAX_SPANS_PER_RECORD) return undefined;
    return spanPosition(BigInt(offset), index);
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
      const position = positionOf(buffer.subarray(prev + 1, end).toString('utf8'));
      if (position !== undefined) return { size, validLength: start + end + 1, lastPosition: position };
      end = prev;
    }
    if (start === 0) return { size, validLength: 0, lastPosition: undefined };
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
