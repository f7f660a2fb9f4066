import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, beforeEach } from 'vitest';
import type { Signal } from '../../src/model/signal.js';
import { SEVERITIES } from '../../src/model/signal.js';
import { envValues, resolveSettings } from '../../src/config/load.js';
import { signalSettings } from '../../src/config/settings.js';
import type { RecordRejectedError } from '../../src/errors.js';
import { duckDbSinkConfig } from '../../src/sinks/duckdb/config.js';
import type { DuckDbSinkConfig } from '../../src/sinks/duckdb/config.js';
import { DuckDbSignalSink } from '../../src/sinks/duckdb/duckdb-sink.js';
import type { FlushItem } from '../../src/sinks/types.js';

/** Tenants and signals of the DuckDB sink's tests. */
export const TENANT_A = '0b7d1b5e-3c1a-4f7e-9d7a-2f1e6b9c8a11';
export const TENANT_B = '5f0c9a62-8d4e-4b1f-a3c7-e21d0f6b9a34';
export const TENANT_C = 'c3a1e8f0-7b2d-4e6a-9f5c-1d8b0a2e4c67';

export type Rec = FlushItem<Signal>;

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

/** One item per signal, at consecutive offsets from firstOffset. */
export function records(signals: Signal[], firstOffset = 0): Rec[] {
  return signals.map((value, i) => ({ value, offset: BigInt(firstOffset + i), index: 0 }));
}

/** The sink's config as a signal worker with default settings has it (the settings table's defaults), in `dir`, with overrides. */
export function duckDbTestConfig(dir: string, overrides: Partial<DuckDbSinkConfig> = {}): DuckDbSinkConfig {
  return { ...duckDbSinkConfig(resolveSettings(signalSettings, envValues(signalSettings, {}), {})), dir, ...overrides };
}

/** A sink in `dir` with the default settings and `overrides`, logging nothing. */
export function duckDbSink(dir: string, overrides: Partial<DuckDbSinkConfig> = {}, registry = new Registry()): DuckDbSignalSink {
  return new DuckDbSignalSink(duckDbTestConfig(dir, overrides), { logger: pino({ level: 'silent' }), registry });
}

/**
 * Writes one tenant's records as a flush of topic `signals`, `partition`; the rejects by index
 * into `recs` (the sink returns them by item identity).
 */
export async function writeTenant(sink: DuckDbSignalSink, tenantId: string, recs: Rec[], partition = 2): Promise<{ rejected: Map<number, RecordRejectedError> }> {
  const { rejected } = await sink.write({ topic: 'signals', partition, tenants: new Map([[tenantId, recs]]) });
  const byIndex = new Map<number, RecordRejectedError>();
  for (const [item, err] of rejected) {
    const i = recs.indexOf(item as Rec);
    if (i < 0) throw new Error('the sink rejected an item it was not given');
    byIndex.set(i, err);
  }
  return { rejected: byIndex };
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
      fx.sink = duckDbSink(fx.dir, config, fx.registry);
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
