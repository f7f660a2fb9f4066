/**
 * Writing signals to the TigerBeetle sink the way the pipeline does (one flush of one partition,
 * items grouped by tenant), and the sink's settings defaults read from the settings table (the one
 * place they are written down).
 */
import { signalSettings } from '../../src/config/settings.js';
import type { RecordRejectedError } from '../../src/errors.js';
import type { Signal } from '../../src/model/signal.js';
import type { TigerBeetleSignalSink, TigerBeetleSinkConfig } from '../../src/sinks/tigerbeetle/tigerbeetle-sink.js';
import type { FlushItem, SinkFlush } from '../../src/sinks/types.js';

/** maxBatch, ledger and requestTimeoutMs as TB_MAX_BATCH, TB_LEDGER and TB_REQUEST_TIMEOUT_MS default them. */
export const TB_SETTING_DEFAULTS: Pick<TigerBeetleSinkConfig, 'maxBatch' | 'ledger' | 'requestTimeoutMs'> = {
  maxBatch: signalSettings.tbMaxBatch.schema.parse(signalSettings.tbMaxBatch.default),
  ledger: signalSettings.tbLedger.schema.parse(signalSettings.tbLedger.default),
  requestTimeoutMs: signalSettings.tbRequestTimeoutMs.schema.parse(signalSettings.tbRequestTimeoutMs.default),
};

/** A flush of one partition: each tenant's signals at offsets 0, 1, … of that tenant's list. */
export function signalFlush(batches: ReadonlyMap<string, readonly Signal[]>, partition = 0): SinkFlush<Signal> {
  const tenants = new Map<string, FlushItem<Signal>[]>();
  let offset = 0n;
  for (const [tenantId, signals] of batches) {
    tenants.set(tenantId, signals.map((value) => ({ offset: (offset += 1n), index: 0, value })));
  }
  return { topic: 'signals', partition, tenants };
}

/** What the sink refused, per tenant, by the signal's index in that tenant's list. */
export type RejectedByIndex = Map<number, RecordRejectedError>;

/** Writes one flush; the refusals of each tenant by index in its list (every tenant of the flush has an entry). */
export async function writeFlush(sink: TigerBeetleSignalSink, batches: ReadonlyMap<string, readonly Signal[]>, partition = 0): Promise<Map<string, { rejected: RejectedByIndex }>> {
  const flush = signalFlush(batches, partition);
  const { rejected } = await sink.write(flush);
  const out = new Map<string, { rejected: RejectedByIndex }>();
  let found = 0;
  for (const [tenantId, items] of flush.tenants) {
    const mine: RejectedByIndex = new Map();
    items.forEach((item, i) => {
      const error = rejected.get(item);
      if (error !== undefined) mine.set(i, error);
    });
    found += mine.size;
    out.set(tenantId, { rejected: mine });
  }
  // Refusals are keyed by the flush's own items (identity), never by copies.
  if (found !== rejected.size) throw new Error(`the sink refused ${rejected.size} items, ${found} of them items of the flush`);
  return out;
}

/** Writes a flush that holds one tenant's signals: its refusals by index. */
export async function writeTenant(sink: TigerBeetleSignalSink, tenantId: string, signals: readonly Signal[], partition = 0): Promise<{ rejected: RejectedByIndex }> {
  return (await writeFlush(sink, new Map([[tenantId, signals]]), partition)).get(tenantId)!;
}
