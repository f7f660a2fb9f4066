import type { TenantDaySummary } from '../sinks/spanlog/summary.js';
import { makeTable } from './table.js';

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
