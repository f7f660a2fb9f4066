import type { RecordsBatch } from '@platformatic/kafka';
import { HEADER_OVERHEAD_BYTES, RECORD_OVERHEAD_BYTES, type HeaderValue, type RecordHeaders } from '../../model/headers.js';
import type { ConsumedMessage } from '../../pipeline/consumer-port.js';
import { ORDERED_HEADERS, type HeaderList } from '../ordered-headers.js';

/** Record batch attributes (kafka.apache.org/documentation/#recordbatch). */
const TIMESTAMP_TYPE_LOG_APPEND = 1 << 3;
const IS_CONTROL_BATCH = 1 << 5;

/** What one partition's record batches of a fetch response hold for the pipeline. */
export interface PartitionRecords {
  /** Records at or after the fetch offset, in offset order; control records left out. */
  messages: ConsumedMessage[];
  /** The offset after the last batch of the response (control batches included); undefined when there was none. */
  nextOffset: bigint | undefined;
}

/**
 * The records of a partition's fetched batches as the pipeline takes them. The broker answers
 * with whole batches, so the first may start before `fetchOffset`: those records were already
 * read and are left out. Transaction markers (control batches) are not records but move
 * `nextOffset` past them.
 */
export function partitionRecords(batches: readonly RecordsBatch[], fetchOffset: bigint): PartitionRecords {
  const messages: ConsumedMessage[] = [];
  let nextOffset: bigint | undefined;
  for (const batch of batches) {
    nextOffset = batch.firstOffset + BigInt(batch.lastOffsetDelta) + 1n;
    if ((batch.attributes & IS_CONTROL_BATCH) !== 0) continue;
    const logAppendTime = (batch.attributes & TIMESTAMP_TYPE_LOG_APPEND) !== 0;
    for (const record of batch.records) {
      const offset = batch.firstOffset + BigInt(record.offsetDelta);
      if (offset < fetchOffset) continue;
      messages.push({
        offset,
        key: record.key,
        value: record.value,
        headers: recordHeaders(record.headers),
        // As kafkajs does: a topic with LogAppendTime has the broker's time for every record.
        timestamp: (logAppendTime ? batch.maxTimestamp : batch.firstTimestamp + record.timestampDelta).toString(),
      });
    }
  }
  return { messages, nextOffset };
}

/**
 * What the batches' records weigh as the pipeline counts them against MAX_IN_FLIGHT_BYTES
 * (recordFootprint: key, value, every header name and value, fixed per-record and per-header
 * allowances), counted on the fetched records before they are handed over.
 */
export function batchesFootprint(batches: readonly RecordsBatch[]): number {
  let bytes = 0;
  for (const batch of batches) {
    for (const record of batch.records) {
      bytes += RECORD_OVERHEAD_BYTES + (record.key?.length ?? 0) + (record.value?.length ?? 0);
      for (const [key, value] of record.headers) bytes += HEADER_OVERHEAD_BYTES + (key?.length ?? 0) + (value?.length ?? 0);
    }
  }
  return bytes;
}

const NO_HEADERS: RecordHeaders = Object.freeze({});

/**
 * A record's headers in the shape the pipeline knows from kafkajs (with our patch): an object
 * whose repeated keys become arrays, values as bytes or null, and, with two headers or more, the
 * wire order under ORDERED_HEADERS (not enumerable), so that a dead letter or a replay writes
 * them back byte for byte.
 */
export function recordHeaders(wire: ReadonlyArray<[Buffer | null, Buffer | null]>): RecordHeaders {
  // Most records have none: one shared object rather than two per record held until its commit.
  if (wire.length === 0) return NO_HEADERS;
  const headers: RecordHeaders = {};
  const list: HeaderList = [];
  for (const [rawKey, value] of wire) {
    // A header key is a string on the wire; a null one (not valid Kafka) is read as empty.
    const key = rawKey === null ? '' : rawKey.toString('utf8');
    list.push([key, value]);
    const previous = Object.prototype.hasOwnProperty.call(headers, key) ? headers[key] : undefined;
    const next: HeaderValue | HeaderValue[] = previous === undefined ? value : Array.isArray(previous) ? (previous.push(value), previous) : [previous, value];
    // `__proto__` is an ordinary header name here, not the object's prototype.
    Object.defineProperty(headers, key, { value: next, enumerable: true, writable: true, configurable: true });
  }
  if (list.length > 1) Object.defineProperty(headers, ORDERED_HEADERS, { value: list, enumerable: false });
  return headers;
}
