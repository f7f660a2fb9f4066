import type { BreakerStatus } from './breakers.js';
import type { PauseReason } from './fetch-pauses.js';
import type { PartitionPipeline } from './partition-pipeline.js';

/** One assigned partition as /status shows it (offsets as decimal strings: they may pass 2^53). */
export interface PartitionSnapshot {
  partition: number;
  /** What Kafka accepted from this worker; undefined before its first commit here. */
  committedOffset: string | undefined;
  /** The high watermark of the partition's last fetched batch. */
  endOffset: string | undefined;
  lag: string | undefined;
  lastCommitAt: number | undefined;
  paused: PauseReason | undefined;
  stuckReason: string | undefined;
  /** Records in custody not yet flushed (undecoded and buffered), and the in-flight bytes they count. */
  bufferedRecords: number;
  bufferedBytes: number;
}

/** A read-only picture of the pipeline for /status; `totals` only grow (rates come from sampling them). */
export interface PipelineSnapshot {
  ready: boolean;
  healthy: boolean;
  /** Lines that make /readyz say not ready (stuck partitions). */
  problems: string[];
  partitions: PartitionSnapshot[];
  inFlight: { records: number; bytes: number; budgetBytes: number; maxBytesSeen: number };
  totals: PipelineTotals;
}

export interface PipelineTotals {
  consumed: number;
  written: number;
  deadLettered: number;
}

/** What a partition's line of /status is read from. */
export interface PartitionView {
  pipe: PartitionPipeline<unknown> | undefined;
  paused: PauseReason | undefined;
  stuckReason: string | undefined;
}

/** One assigned partition's line of /status; reads state only. */
export function partitionSnapshot(partition: number, { pipe, paused, stuckReason }: PartitionView): PartitionSnapshot {
  const committed = pipe?.offsets.committedOffset;
  const end = pipe?.highWatermark;
  const incomingBytes = pipe?.incoming.reduce((n, r) => n + r.bytes, 0) ?? 0;
  return {
    partition,
    committedOffset: committed?.toString(),
    endOffset: end?.toString(),
    lag: committed !== undefined && end !== undefined ? (end > committed ? end - committed : 0n).toString() : undefined,
    lastCommitAt: pipe?.lastCommitAt,
    paused,
    stuckReason,
    bufferedRecords: (pipe?.incoming.length ?? 0) + (pipe?.batch.records ?? 0),
    bufferedBytes: incomingBytes + (pipe?.batch.bytes ?? 0),
  };
}

/**
 * Why the worker is degraded, one line per breaker not closed (empty when none is): it stays up
 * and keeps the other stores' partitions going, but records for that store wait.
 */
export function degradedLines(breakers: readonly BreakerStatus[], now: number): string[] {
  return breakers
    .filter((b) => b.state !== 'closed')
    .map((b) =>
      b.state === 'half_open'
        ? `breaker half-open: ${b.store} since ${b.since.toISOString()}, probing`
        : `breaker open: ${b.store} since ${b.since.toISOString()}, next probe in ${Math.max(0, Math.ceil((b.nextProbeAt!.getTime() - now) / 1000))} s`,
    );
}
