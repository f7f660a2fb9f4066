import fs from 'node:fs';
import readline from 'node:readline';
import { makeTable } from '../../cli/table.js';
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

export function renderSpanLogSummary(root: string, rows: TenantDaySummary[]): string {
  const table = makeTable({ head: ['tenant', 'day', 'segments', 'spans', 'bytes'] });
  let spans = 0;
  let bytes = 0;
  for (const r of rows) {
    table.push([r.tenantId, r.day, r.segments, r.spans, r.bytes]);
    spans += r.spans;
    bytes += r.bytes;
  }
  table.push(['total', '', rows.reduce((n, r) => n + r.segments, 0), spans, bytes]);
  return `span log ${root}\n${table.toString()}`;
}
