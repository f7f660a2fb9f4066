import type { PipelineMetrics } from './metrics-port.js';
import type { GroupConsumer } from './consumer-port.js';

/** Why a partition does not fetch: spanledger_partitions_paused's reason label. */
export type PauseReason = 'backpressure' | 'breaker' | 'stuck';

/**
 * Which of the topic's partitions are paused, and why; the one place that calls the consumer's
 * pause and resume. Several reasons may hold one partition (a flush waiting for the TigerBeetle
 * breaker, a batch that cannot be decompressed) and the whole topic (backpressure); a partition
 * fetches again only when none holds it.
 *
 * kafkajs lets a topic-wide pause or resume override every partition's pause, and pausing one
 * partition while the topic is paused lifts the topic's pause. So while the topic is paused,
 * partition holds are only noted; resuming the topic pauses the held partitions again.
 */
export class FetchPauses {
  private topicPaused = false;
  /** Partition → what holds it (`stuck`, `breaker:<store>`). */
  private readonly holds = new Map<number, Set<string>>();
  private assigned = 0;

  constructor(
    private readonly consumer: GroupConsumer,
    private readonly topic: string,
    private readonly metrics: PipelineMetrics,
  ) {
    for (const reason of ['backpressure', 'breaker', 'stuck'] as const) metrics.partitionsPaused.set({ topic, reason }, 0);
  }

  get allPaused(): boolean {
    return this.topicPaused;
  }

  /** Backpressure: no partition fetches. */
  pauseAll(): void {
    if (this.topicPaused) return;
    this.topicPaused = true;
    this.consumer.pause(this.topic);
    this.report();
  }

  /** Backpressure is over: partitions without a hold fetch again. */
  resumeAll(): void {
    if (!this.topicPaused) return;
    this.topicPaused = false;
    this.consumer.resume(this.topic);
    const held = [...this.holds.keys()];
    if (held.length > 0) this.consumer.pause(this.topic, held);
    this.report();
  }

  /** `hold` (`stuck`, `breaker:<store>`) keeps `partition` from fetching until released. */
  hold(partition: number, hold: string): void {
    let holds = this.holds.get(partition);
    if (holds === undefined) this.holds.set(partition, (holds = new Set()));
    if (holds.has(hold)) return;
    holds.add(hold);
    if (holds.size === 1 && !this.topicPaused) this.consumer.pause(this.topic, [partition]);
    this.report();
  }

  release(partition: number, hold: string): void {
    const holds = this.holds.get(partition);
    if (holds === undefined || !holds.delete(hold)) return;
    if (holds.size === 0) {
      this.holds.delete(partition);
      if (!this.topicPaused) this.consumer.resume(this.topic, [partition]);
    }
    this.report();
  }

  /** Releases `hold` wherever it holds a partition (a breaker closed). */
  releaseEverywhere(hold: string): void {
    for (const [partition, holds] of [...this.holds]) if (holds.has(hold)) this.release(partition, hold);
  }

  /** The partition went to another worker: a pause outlasts assignments, so if it comes back it must fetch. */
  forget(partition: number): void {
    for (const hold of [...(this.holds.get(partition) ?? [])]) this.release(partition, hold);
  }

  /** Why `partition` does not fetch, if it does not: the most specific reason first. */
  reasonOf(partition: number): PauseReason | undefined {
    const holds = this.holds.get(partition);
    if (holds?.has('stuck')) return 'stuck';
    if (holds !== undefined && holds.size > 0) return 'breaker';
    return this.topicPaused ? 'backpressure' : undefined;
  }

  setAssigned(count: number): void {
    this.assigned = count;
    this.report();
  }

  private report(): void {
    const { metrics, topic } = this;
    let breaker = 0;
    let stuck = 0;
    for (const holds of this.holds.values()) {
      if ([...holds].some((h) => h.startsWith('breaker:'))) breaker += 1;
      if (holds.has('stuck')) stuck += 1;
    }
    metrics.partitionsPaused.set({ topic, reason: 'backpressure' }, this.topicPaused ? this.assigned : 0);
    metrics.partitionsPaused.set({ topic, reason: 'breaker' }, breaker);
    metrics.partitionsPaused.set({ topic, reason: 'stuck' }, stuck);
  }
}
