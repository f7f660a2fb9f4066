import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, beforeEach } from 'vitest';
import type { Signal } from '../../src/model/signal.js';
import { SEVERITIES } from '../../src/model/signal.js';
import { DuckDbSignalSink } from '../../src/sinks/duckdb/duckdb-sink.js';
import type { DuckDbSinkConfig } from '../../src/sinks/duckdb/duckdb-sink.js';
import type { SourcePosition } from '../../src/sinks/tenant-batch-adapter.js';

/** Tenants and signals of the DuckDB sink's tests. */
export const TENANT_A = '0b7d1b5e-3c1a-4f7e-9d7a-2f1e6b9c8a11';
export const TENANT_B = '5f0c9a62-8d4e-4b1f-a3c7-e21d0f6b9a34';
export const TENANT_C = 'c3a1e8f0-7b2d-4e6a-9f5c-1d8b0a2e4c67';

export type Rec = { value: Signal; source: SourcePosition };

/** Signal i of a tenant: a new random id, at 2026-11-24T10:00:00Z + i seconds. */
export function signal(tenantId: string, i: number, overrides: Partial<Signal> = {}): Signal {
  return {
    id: randomUUID(),
    tenantId,
    ruleId: `rule-${i % 13}`,
    traceId: randomBytes(16).toString('hex'),
    timestamp: new Date(Date.UTC(2026, 10, 24, 10) + i * 1000).toISOString(),
    severity: SEVERITIES[i % SEVERITIES.length]!,
    message: `signal ${i}`,
    metadata: { i, tags: ['a', 'b'], nested: { ok: true } },
    ...overrides,
  };
}

export function records(signals: Signal[], firstOffset = 0): Rec[] {
  return signals.map((value, i) => ({ value, source: { topic: 'signals', partition: 2, offset: String(firstOffset + i) } }));
}

/**
 * A fresh temp dir per test and the sink made in it (`makeSink`), closed and removed after each
 * test. Call at the top of a describe; read `dir`, `registry` and `sink` inside the tests.
 */
export function duckDbSinkFixture(): { dir: string; registry: Registry; sink: DuckDbSignalSink; makeSink(config?: Partial<DuckDbSinkConfig>): DuckDbSignalSink } {
  const fx = {
    dir: '',
    registry: new Registry(),
    sink: undefined as unknown as DuckDbSignalSink,
    makeSink(config: Partial<DuckDbSinkConfig> = {}): DuckDbSignalSink {
      fx.registry = new Registry();
      fx.sink = new DuckDbSignalSink({ dir: fx.dir, ...config }, { logger: pino({ level: 'silent' }), registry: fx.registry });
      return fx.sink;
    },
  };
  beforeEach(() => {
    fx.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spanledger-duckdb-'));
    fx.sink = undefined as unknown as DuckDbSignalSink;
  });
  afterEach(async () => {
    await fx.sink?.close();
    fs.rmSync(fx.dir, { recursive: true, force: true });
  });
  return fx;
}
