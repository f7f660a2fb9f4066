import type { Logger } from 'pino';
import type { FlushLimits } from './partition-batch.js';
import type { RecordDecoder } from '../model/decode.js';
import type { BreakerSettings } from './breakers.js';
import type { DeadLetterPort, GroupConsumer } from './consumer-port.js';
import type { DecodePool } from './decode-pool.js';
import type { PipelineMetrics } from './metrics-port.js';
import type { PipelineStages } from './types.js';

/**
 * What a pipeline is made of. The pipeline uses these and does not own them: the worker that
 * made the dead-letter producer, the sinks or processor and the decode pool starts them before
 * the pipeline and stops them after it.
 */
export type PipelineOptions<T> = PipelineStages<T> & {
  consumer: GroupConsumer;
  deadLetters: DeadLetterPort;
  topic: string;
  decoder: RecordDecoder<T>;
  /**
   * DECODE_THREADS > 0: decode on these threads instead of the event loop (the same decoder's
   * answers, applied per partition in offset order). Records it fails to decode (a thread died)
   * are decoded with `decoder` here instead.
   */
  decodePool?: DecodePool<T>;
  limits: FlushLimits;
  /** Flush as soon as a partition has caught up with its high watermark, not only on the limits. */
  flushWhenCaughtUp: boolean;
  /**
   * With flushWhenCaughtUp false: a caught-up partition is still flushed when none of its flushes
   * came at the age limit or on catching up in the last this-many ms (those at the size limits or
   * because the in-flight budget ran short do not count: they are a backlog's). A backlog's last
   * partial batch then goes at once instead of waiting for the age limit, and a partition that
   * keeps catching up is cut this way at most once per interval (the archive's cycles: one cut
   * per ARCHIVE_CYCLE_MAX_AGE_MS, docs/archive.md). Unset: only the limits flush.
   */
  caughtUpFlushIntervalMs?: number;
  maxInFlightBytes: number;
  /**
   * Backpressure marks as fractions of maxInFlightBytes: fetching pauses once in-flight bytes pass
   * `pauseFraction` and resumes once they are back at or below `resumeFraction` (lower, so that a
   * worker near its budget does not pause and resume at every batch).
   */
  backpressure: { pauseFraction: number; resumeFraction: number };
  /** The circuit breakers' settings (one breaker per store: each sink, the dead-letter topic, a processor's syncStore). */
  breakers: BreakerSettings;
  /** Waits for room in the in-flight budget heartbeat at least this often. */
  heartbeatIntervalMs: number;
  retryMaxDelayMs: number;
  /** A revoked partition's flush under way gets this long before the partition is released anyway. */
  shutdownTimeoutMs: number;
  logger: Logger;
  metrics: PipelineMetrics;
  /** Called once when the worker cannot go on (a non-retriable failure that is not a record's fault). */
  onFatal: (error: Error) => void;
};
