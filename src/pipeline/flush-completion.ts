import type { FlushPlan, SourceMessage, ValidEntry } from './partition-batch.js';
import type { DeadLetter, DeadLetterPort } from './consumer-port.js';
import type { PartitionPipeline } from './partition-pipeline.js';
import type { PipelineOptions } from './options.js';
import type { PipelineTotals } from './status.js';
import { DEAD_LETTER_STORE, type StoreCalls } from './store-calls.js';

/** One flush on its way through the stages. */
export interface FlushState<T> {
  plan: FlushPlan<T>;
  letters: DeadLetter[];
  /** Tenant batches still to store (each sink stage drops what its sink refused). */
  current: Map<string, ValidEntry<T>[]>;
  started: bigint;
  /** Settles when the partition's previous flush has left its last stage (offsets durable, commit requested). */
  previousDone: Promise<void>;
}

/** One stage of every flush of a partition; a stage of flush N+1 starts once flush N left it. */
export type Stage<T> = (pipe: PartitionPipeline<T>, flush: FlushState<T>) => Promise<void>;

type CompletionOptions = Pick<PipelineOptions<unknown>, 'topic' | 'metrics' | 'logger'>;

/**
 * The end of every flush, whatever its stages: the dead letters are acknowledged, then the
 * flush's offsets are durable (PartitionOffsets), and the flush is counted.
 */
export class FlushCompletion {
  constructor(
    private readonly options: CompletionOptions,
    private readonly deadLetters: DeadLetterPort,
    private readonly calls: StoreCalls,
    private readonly totals: PipelineTotals,
  ) {}

  /** `stored`: the items now durable. */
  async finish<T>(pipe: PartitionPipeline<T>, flush: FlushState<T>, stored: Iterable<ReadonlyArray<ValidEntry<T>>>): Promise<void> {
    const { topic, metrics, logger } = this.options;
    const { letters, plan } = flush;
    if (letters.length > 0) {
      letters.sort((a, b) => (a.source.offset < b.source.offset ? -1 : 1));
      await this.calls.retried(pipe, 'dead-letter', () => this.calls.guarded(pipe, DEAD_LETTER_STORE, () => this.deadLetters.send(letters)));
      for (const l of letters) {
        if (l.outcome !== 'delivered') continue;
        metrics.deadLettered.inc({ topic, reason: l.error.errorClass });
        this.totals.deadLettered += 1;
      }
      logger.warn(
        { partition: pipe.partition, count: letters.length, first: { offset: letters[0]!.source.offset.toString(), reason: letters[0]!.error.errorClass, message: letters[0]!.error.message } },
        'records dead-lettered',
      );
    }
    pipe.offsets.markDurable(plan.lastOffset);
    // One observation per stored item (the metric's meaning), on the topic's series taken once
    // per flush; the items of one record share its timestamp, parsed once.
    const now = Date.now();
    const latency = metrics.endToEndLatency.series({ topic });
    let written = 0;
    let lastSource: SourceMessage | undefined;
    let seconds = 0;
    for (const entries of stored) {
      written += entries.length;
      for (const e of entries) {
        if (e.source !== lastSource) {
          lastSource = e.source;
          seconds = (now - Number(e.source.timestamp)) / 1000;
        }
        latency.observe(seconds);
      }
    }
    metrics.written.inc({ topic }, written);
    this.totals.written += written;
    metrics.batchRecords.observe({ topic }, plan.records);
    metrics.flushDuration.observe({ topic }, Number(process.hrtime.bigint() - flush.started) / 1e9);
  }
}
