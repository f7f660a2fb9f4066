import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, describe, expect, it } from 'vitest';
import { storedLineOf, wellFormed, type ArchiveRow } from '../../../../src/model/archive-row.js';
import { ParquetWriter } from '../../../../src/sinks/archive/parquet-writer.js';
import { storedSpan } from '../../../../src/model/span-line.js';
import type { FlushItem } from '../../../../src/sinks/types.js';

const A = '00000000-0000-4000-8000-00000000000a';
const B = '00000000-0000-4000-8000-00000000000b';
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'archive-parquet-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function item(tenantId: string, offset: bigint, index: number, day: string, extra: Partial<Parameters<typeof storedSpan>[0]> = {}): FlushItem<ArchiveRow> {
  const span = storedSpan({ traceId: '1'.repeat(32), spanId: `${offset.toString(16).padStart(12, '0')}${index.toString(16).padStart(4, '0')}`, name: `op-${offset}`, startTimeUnixNano: '1764000000000000000', endTimeUnixNano: '99999999999999999999', ...extra }, tenantId);
  // A record that is its stored line is held as its bytes, any other as its line's text: both kinds here.
  const line = storedLineOf(span);
  return { offset, index, value: { day, line: offset % 2n === 0n ? line : Buffer.from(line) } };
}

describe('the archive Parquet writer', () => {
  it('writes one zstd file per tenant-day with the stored span shape, exact times and positions, in position order', async () => {
    const writer = new ParquetWriter(root, '128MB');
    await writer.start();
    const attributes = { 'http.status_code': 200, ok: true, tags: ['a', 1, null], 'no.value': null, s: 'x\ud800y' };
    const tenants = new Map([
      [A, [item(A, 5n, 0, '2026-11-23', { attributes, kind: 'SPAN_KIND_SERVER', status: { code: 2, message: 'boom' } }), item(A, 7n, 2, '2026-11-24'), item(A, 9n, 0, '2026-11-23')]],
      [B, [item(B, 7n, 0, '2026-11-23', { scope: { name: 'lib', version: '1.2' }, events: [{ timeUnixNano: '5', name: 'e' }], traceState: 'k=v' })]],
    ]);
    const cycle = await writer.write(4, tenants);
    expect(cycle.files.map((f) => [f.tenantId, f.day, f.spans, `${f.first.offset}_${f.first.index}`])).toEqual([
      [A, '2026-11-23', 2, '5_0'],
      [A, '2026-11-24', 1, '7_2'],
      [B, '2026-11-23', 1, '7_0'],
    ]);
    const db = await DuckDBInstance.create(':memory:');
    const c = await db.connect();
    const file = cycle.files[0]!.file;
    const rows = (await c.runAndReadAll(`SELECT * FROM read_parquet('${file}')`)).getRowObjectsJson();
    expect(rows.map((r) => [r.kafka_partition, r.kafka_offset, r.kafka_index])).toEqual([
      [4, '5', 0],
      [4, '9', 0],
    ]);
    expect(rows[0]).toMatchObject({ tenant_id: A, name: 'op-5', kind: 2, status_code: 2, status_message: 'boom', start_time_unix_nano: '1764000000000000000', end_time_unix_nano: '99999999999999999999', parent_span_id: '' });
    expect(JSON.parse(String(rows[0]!.attributes))).toEqual({ ...attributes, s: 'x\ufffdy' });
    const compression = (await c.runAndReadAll(`SELECT DISTINCT compression FROM parquet_metadata('${file}')`)).getRowObjectsJson();
    expect(compression).toEqual([{ compression: 'ZSTD' }]);
    // The file's own types, as any reader sees them: JSON text, exact times, no `run` column.
    const schema = (await c.runAndReadAll(`SELECT name, logical_type FROM parquet_schema('${file}') WHERE name IN ('attributes', 'start_time_unix_nano', 'run')`)).getRowObjectsJson();
    expect(schema.map((r) => [r.name, String(r.logical_type)])).toEqual([
      ['start_time_unix_nano', expect.stringContaining('DecimalType(scale=0, precision=20)')],
      ['attributes', expect.stringContaining('JsonType')],
    ]);
    const b = (await c.runAndReadAll(`SELECT scope_name, scope_version, events, trace_state FROM read_parquet('${cycle.files[2]!.file}')`)).getRowObjectsJson();
    expect(b).toEqual([{ scope_name: 'lib', scope_version: '1.2', events: '[{"timeUnixNano":"5","name":"e"}]', trace_state: 'k=v' }]);
    c.closeSync();
    await writer.discard(cycle);
    expect(fs.existsSync(cycle.dir)).toBe(false);
    await writer.close();
    expect(fs.existsSync(writer.dir)).toBe(false);
  });

  it('writes a cycle of 1,200 tenant-days within a small DuckDB memory limit (one partitioned COPY of all of them ran out of memory there)', async () => {
    const writer = new ParquetWriter(root, '64MB');
    await writer.start();
    const tenants = new Map<string, FlushItem<ArchiveRow>[]>();
    for (let i = 0; i < 2400; i += 1) {
      const tenantId = `00000000-0000-4000-8000-${String(i % 600).padStart(12, '0')}`;
      const list = tenants.get(tenantId) ?? [];
      list.push(item(tenantId, BigInt(i), 0, Math.floor(i / 600) % 2 === 0 ? '2026-11-23' : '2026-11-24'));
      tenants.set(tenantId, list);
    }
    const cycle = await writer.write(0, tenants);
    expect(cycle.files).toHaveLength(1200);
    expect(cycle.files.reduce((n, f) => n + f.spans, 0)).toBe(2400);
    const db = await DuckDBInstance.create(':memory:');
    const c = await db.connect();
    const sample = cycle.files[777]!;
    const rows = (await c.runAndReadAll(`SELECT tenant_id, kafka_offset FROM read_parquet('${sample.file}') ORDER BY kafka_offset`)).getRowObjectsJson();
    expect(rows.map((r) => r.tenant_id)).toEqual(Array(sample.spans).fill(sample.tenantId));
    expect(String(rows[0]!.kafka_offset)).toBe(String(sample.first.offset));
    c.closeSync();
    await writer.close();
  }, 60_000);

  it('writes lines of any length: longer than its write chunk, multi-byte text, as bytes and as text', async () => {
    const writer = new ParquetWriter(root, '128MB');
    await writer.start();
    const long = 'é'.repeat(700_000); // 1.4 MB of UTF-8: past the 1 MiB chunk the lines are copied through
    const tenants = new Map([[A, [item(A, 1n, 0, '2026-11-23'), item(A, 2n, 0, '2026-11-23', { name: 'ü→' + 'x'.repeat(10), attributes: { long } }), item(A, 3n, 0, '2026-11-23', { attributes: { long } }), item(A, 4n, 0, '2026-11-23')]]]);
    const cycle = await writer.write(1, tenants);
    const db = await DuckDBInstance.create(':memory:');
    const c = await db.connect();
    const rows = (await c.runAndReadAll(`SELECT kafka_offset, name, attributes FROM read_parquet('${cycle.files[0]!.file}')`)).getRowObjectsJson();
    expect(rows.map((r) => [r.kafka_offset, r.name])).toEqual([['1', 'op-1'], ['2', 'ü→xxxxxxxxxx'], ['3', 'op-3'], ['4', 'op-4']]);
    expect(JSON.parse(String(rows[1]!.attributes))).toEqual({ long });
    expect(JSON.parse(String(rows[2]!.attributes))).toEqual({ long });
    c.closeSync();
    await writer.close();
  }, 60_000);

  it('replaces only lone surrogates, whatever backslashes precede them', () => {
    for (const [value, expected] of [
      ['x\ud800y', 'x\ufffdy'],
      ['\\ud800', '\\ud800'],
      ['ok\ud83d\ude00', 'ok\ud83d\ude00'],
      ['\\\ud800', '\\\ufffd'],
    ]) {
      expect(JSON.parse(wellFormed(JSON.stringify({ value }))).value).toBe(expected);
    }
  });
});
