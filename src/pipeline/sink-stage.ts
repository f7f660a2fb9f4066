import type { SourceMessage, ValidEntry } from './partition-batch.js';
import type { FlushSink } from '../sinks/types.js';
import type { Committer } from './committer.js';
import type { FlushCompletion, FlushState, Stage } from './flush-completion.js';
import type { PartitionPipeline } from './partition-pipeline.js';
import type { StoreCalls } from './store-calls.js';

/**
 * The stages of a pipeline with sinks: one per sink, in order, then the stored stage that makes
 * the flush durable and commits it.
 */
export function sinkStages<T>(topic: string, sinks: readonly FlushSink<T>[], calls: StoreCalls, completion: FlushCompletion, committer: Committer): Stage<T>[] {
  const stored: Stage<T> = async (pipe, flush) => {
    await completion.finish(pipe, flush, flush.current.values());
    committer.requestCommit(pipe);
  };
  return [...sinks.map((sink): Stage<T> => (pipe, flush) => runSink(topic, sink, calls, committer, pipe, flush)), stored];
}

/**
 * One store's stage of a flush: the tenant batches still standing go to the sink as one flush,
 * then the sink syncs once. If the write or the sync fails, both are repeated: the sink forgets
 * unsynced state and idempotent writes make the repeat safe. Records the sink refuses are
 * dead-lettered and not given to the next stage.
 */
async function runSink<T>(topic: string, sink: FlushSink<T>, calls: StoreCalls, committer: Committer, pipe: PartitionPipeline<T>, flush: FlushState<T>): Promise<void> {
  if (sink.startsAtCommittedOffset === true) {
    // Every earlier flush finished its stages and Kafka accepted its commit: this write begins
    // at the committed offset, as a replay after a crash would (FlushSink.startsAtCommittedOffset).
    await flush.previousDone;
    await committer.committedThroughDurable(pipe);
  }
  const sinkFlush = { topic, partition: pipe.partition, tenants: flush.current, signal: pipe.signal };
  const attempt = async () => {
    const result = await calls.guarded(pipe, sink.name, () => sink.write(sinkFlush));
    if (sink.sync !== undefined) await calls.guarded(pipe, sink.name, () => sink.sync!(topic, pipe.partition));
    return result;
  };
  const { rejected } = await calls.retried(pipe, sink.name, attempt);
  if (rejected.size === 0) return;
  const kept = new Map<string, ValidEntry<T>[]>();
  const refused = new Set<SourceMessage>();
  for (const [tenantId, entries] of flush.current) {
    const stored: ValidEntry<T>[] = [];
    for (const entry of entries) {
      const error = rejected.get(entry);
      if (error === undefined) stored.push(entry);
      // A record is dead-lettered once, even when a store refuses several of its items.
      else if (!refused.has(entry.source)) {
        refused.add(entry.source);
        flush.letters.push({ topic, partition: pipe.partition, source: entry.source, error, stage: sink.name });
      }
    }
    kept.set(tenantId, stored);
  }
  flush.current = kept;
}
