import fs from 'node:fs';
import readline from 'node:readline';
import { listSegments } from './layout.js';

export interface TenantDaySummary {
  tenantId: string;
  day: string;
  segments: number;
  spans: number;
  bytes: number;
}

async function countLines(file: string): Promise<number> {
  let n = 0;
  const rl = readline.createInterface({ input: fs.createReadStream(file), crlfDelay: Infinity });
  for await (const line of rl) if (line.length > 0) n += 1;
  return n;
}

/** Spans per tenant and day in a span log folder. */
export async function summarizeSpanLog(root: string): Promise<TenantDaySummary[]> {
  const byKey = new Map<string, TenantDaySummary>();
  for (const segment of await listSegments(root)) {
    const key = `${segment.tenantId}/${segment.day}`;
    let s = byKey.get(key);
    if (s === undefined) {
      s = { tenantId: segment.tenantId, day: segment.day, segments: 0, spans: 0, bytes: 0 };
      byKey.set(key, s);
    }
    s.segments += 1;
    s.bytes += segment.bytes;
    s.spans += await countLines(segment.file);
  }
  return [...byKey.values()];
}

