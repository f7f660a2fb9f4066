import type { RecordRejectedError } from '../errors.js';
import type { FlushItem, FlushSink, SinkFlush, SinkWriteResult } from './types.js';

/**
 * TRANSITIONAL (issue 18): the old per-tenant sink interface, adapted to FlushSink until every
 * sink takes a whole flush. Removed once the last sink is converted.
 */
export interface SourcePosition {
  topic: string;
  partition: number;
  /** Kafka offset as a decimal string (int64). */
  offset: string;
  index?: number;
}

export interface BatchWriteResult {
  rejected: Map<number, RecordRejectedError>;
}

export interface TenantBatchSink<T> {
  readonly name: string;
  start(): Promise<void>;
  write(tenantId: string, records: ReadonlyArray<{ value: T; source: SourcePosition }>): Promise<BatchWriteResult>;
  sync?(topic: string, partition: number): Promise<void>;
  releasePartition?(topic: string, partition: number): Promise<void>;
  close(): Promise<void>;
}

/** A per-tenant sink as a FlushSink: one write per tenant of the flush, side by side. */
export function fromTenantBatchSink<T>(sink: TenantBatchSink<T>): FlushSink<T> & { readonly inner: TenantBatchSink<T> } {
  return {
    inner: sink,
    name: sink.name,
    start: () => sink.start(),
    close: () => sink.close(),
    ...(sink.sync === undefined ? {} : { sync: (topic: string, partition: number) => sink.sync!(topic, partition) }),
    ...(sink.releasePartition === undefined ? {} : { releasePartition: (topic: string, partition: number) => sink.releasePartition!(topic, partition) }),
    async write(flush: SinkFlush<T>): Promise<SinkWriteResult<T>> {
      const rejected = new Map<FlushItem<T>, RecordRejectedError>();
      await Promise.all(
        [...flush.tenants].map(async ([tenantId, items]) => {
          if (items.length === 0) return;
          const records = items.map((item) => ({ value: item.value, source: { topic: flush.topic, partition: flush.partition, offset: item.offset.toString(), index: item.index } }));
          const result = await sink.write(tenantId, records);
          for (const [i, error] of result.rejected) rejected.set(items[i]!, error);
        }),
      );
      return { rejected };
    },
  };
}
