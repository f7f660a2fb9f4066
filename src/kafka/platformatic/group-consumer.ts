import { Consumer, ListOffsetTimestamps, type GroupAssignment } from '@platformatic/kafka';
import type { Logger } from 'pino';
import type { ConsumedBatch, GroupConsumer, OffsetCommit } from '../../pipeline/consumer-port.js';
import type { GroupConsumerOptions, KafkaFacadeOptions } from '../facade.js';
// Installs the guard on the library's decompressors before any fetch.
import './codec-guard.js';
import { FetchLoop, type LoopClient } from './fetch-loop.js';
import type { FetchSizes } from './fetcher.js';

type JoinListener = (event: { memberId: string; assignment: Record<string, number[]> }) => void;
type CrashListener = (event: { error: Error; restart: boolean }) => void;
type FetchedThroughListener = (event: { topic: string; partition: number; nextOffset: bigint }) => void;

/** Failed rejoins in a row after which the member gives up (the worker restarts). */
const MAX_REJOIN_FAILURES = 10;
const REJOIN_BACKOFF_MS = 1_000;

/** Fetch sizes from the reader's memory budget, as the kafkajs adapter derives them. */
export function fetchSizes(options: Pick<GroupConsumerOptions, 'maxInFlightBytes' | 'maxWaitTimeMs'>): FetchSizes {
  return {
    // A fetch response is at most a quarter of the in-flight budget, so that memory stays bounded.
    maxBytes: Math.max(1 << 20, Math.min(10 << 20, Math.floor(options.maxInFlightBytes / 4))),
    // Fewer, larger fetches under a backlog.
    maxBytesPerPartition: Math.max(1 << 20, Math.min(4 << 20, Math.floor(options.maxInFlightBytes / 16))),
    maxWaitTime: options.maxWaitTimeMs ?? 500,
  };
}

/**
 * The pipeline's group consumer on @platformatic/kafka. The library's MessagesStream pauses only
 * as a whole and hands out records one by one, so this member uses the library for the group
 * (join, cooperative-sticky or round-robin assignment, heartbeats, static membership) and for
 * requests (fetch with its sessions, commit, offsets), and runs its own small fetch loop
 * (fetch-loop.ts): per-partition batches, pauses and custody, as the port asks.
 */
export class PlatformaticGroupConsumer implements GroupConsumer {
  private readonly consumer: Consumer;
  private readonly log: Logger;
  private topic: string | undefined;
  private fromBeginning = true;
  private loop: FetchLoop | undefined;
  private readonly joinListeners: JoinListener[] = [];
  private readonly rebalanceListeners: Array<() => void> = [];
  private readonly crashListeners: CrashListener[] = [];
  private readonly fetchedThroughListeners: FetchedThroughListener[] = [];
  /** Pauses asked before run(): applied when the loop starts. */
  private readonly earlyPauses: Array<{ pause: boolean; partitions?: readonly number[] }> = [];
  private rejoinFailures = 0;
  private rejoinTimer: NodeJS.Timeout | undefined;
  private closing = false;

  constructor(
    client: KafkaFacadeOptions,
    private readonly options: GroupConsumerOptions,
  ) {
    this.log = client.logger.child({ component: 'platformatic-consumer', group: options.group });
    const cooperative = (options.rebalanceProtocol ?? 'cooperative') === 'cooperative';
    this.consumer = new Consumer({
      clientId: client.clientId,
      bootstrapBrokers: client.brokers,
      groupId: options.group,
      ...(options.groupInstanceId === undefined ? {} : { groupInstanceId: options.groupInstanceId }),
      sessionTimeout: options.sessionTimeoutMs,
      rebalanceTimeout: Math.max(options.rebalanceTimeoutMs, options.sessionTimeoutMs),
      heartbeatInterval: options.heartbeatIntervalMs,
      // KIP-429 cooperative-sticky: partitions that stay with a member keep flowing during a rebalance.
      protocols: cooperative ? [{ name: 'cooperative-sticky', version: 3 }] : [{ name: 'roundrobin', version: 1 }],
      autocommit: false,
      autocreateTopics: false,
      ...fetchSizes(options),
    });
    this.consumer.on('consumer:group:join', (payload: { memberId: string; assignments?: GroupAssignment[] }) => this.assigned(payload.memberId, payload.assignments ?? []));
    // A rebalance begins (heartbeat told so), or a cooperative first round took partitions away.
    this.consumer.on('consumer:group:rebalance', () => this.rebalancing());
    // A rejoin failed for good: the library schedules nothing more.
    this.consumer.on('error', (error: Error) => this.rejoinFailed(error));
    this.consumer.on('consumer:heartbeat:stalled', (payload: { lastError?: Error; stalledFor: number }) =>
      this.log.warn({ err: payload.lastError, stalledForMs: payload.stalledFor }, 'group heartbeats stalled'),
    );
  }

  async connect(): Promise<void> {
    // Fails now if no broker answers, as kafkajs' connect does.
    await this.consumer.metadata({ topics: [] });
  }

  async subscribe(topic: string, fromBeginning: boolean): Promise<void> {
    if (this.topic !== undefined && this.topic !== topic) throw new Error(`this consumer already reads ${this.topic}`);
    this.topic = topic;
    this.fromBeginning = fromBeginning;
    this.consumer.topics.track(topic);
  }

  async run(eachBatch: (batch: ConsumedBatch) => Promise<void>): Promise<void> {
    const topic = this.topic;
    if (topic === undefined) throw new Error('subscribe before run');
    const client = this.consumer as unknown as LoopClient;
    this.loop = new FetchLoop(client, {
      topic,
      sizes: fetchSizes(this.options),
      partitionsConcurrency: this.options.partitionsConcurrency,
      logger: this.log,
      startingOffsets: (partitions) => this.startingOffsets(topic, partitions),
      earliestOffsets: (partitions) => this.listOffsets(topic, partitions, ListOffsetTimestamps.EARLIEST),
      eachBatch,
      fetchedThrough: (partition, nextOffset) => {
        for (const l of this.fetchedThroughListeners) l({ topic, partition, nextOffset });
      },
      onBatchError: (error) => {
        for (const l of this.crashListeners) l({ error, restart: true });
      },
    });
    for (const p of this.earlyPauses.splice(0)) (p.pause ? this.loop.pause(p.partitions) : this.loop.resume(p.partitions));
    this.loop.start();
    await this.consumer.joinGroup();
    // The join event came before the loop existed only if joinGroup raced it; apply what the library holds.
    this.applyAssignment(this.consumer.assignments ?? []);
  }

  pause(topic: string, partitions?: readonly number[]): void {
    if (topic !== this.topic) return;
    if (this.loop === undefined) this.earlyPauses.push({ pause: true, partitions });
    else this.loop.pause(partitions);
  }

  resume(topic: string, partitions?: readonly number[]): void {
    if (topic !== this.topic) return;
    if (this.loop === undefined) this.earlyPauses.push({ pause: false, partitions });
    else this.loop.resume(partitions);
  }

  async commitOffsets(offsets: OffsetCommit[]): Promise<void> {
    if (offsets.length === 0) return;
    await this.consumer.commit({ offsets: offsets.map((c) => ({ topic: c.topic, partition: c.partition, offset: c.offset, leaderEpoch: -1 })) });
  }

  async disconnect(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearTimeout(this.rejoinTimer);
    await this.loop?.stop();
    if (this.options.groupInstanceId !== undefined) await this.stayInGroup();
    await this.consumer.close();
  }

  onGroupJoin(listener: JoinListener): void {
    this.joinListeners.push(listener);
  }

  onRebalancing(listener: () => void): void {
    this.rebalanceListeners.push(listener);
  }

  onCrash(listener: CrashListener): void {
    this.crashListeners.push(listener);
  }

  onFetchedThrough(listener: FetchedThroughListener): void {
    this.fetchedThroughListeners.push(listener);
  }

  /** The library completed a join: this member's partitions. */
  private assigned(memberId: string, assignments: GroupAssignment[]): void {
    this.rejoinFailures = 0;
    this.applyAssignment(assignments, memberId, true);
  }

  private rebalancing(): void {
    for (const l of this.rebalanceListeners) l();
    // Cooperative first round: the library already dropped the partitions that move elsewhere.
    // Release them now (the other member gets them only once they are let go, in the next round).
    this.applyAssignment(this.consumer.assignments ?? []);
  }

  /** Applies the member's assignment; tells the pipeline when it changed (always after a join). */
  private applyAssignment(assignments: GroupAssignment[], memberId = this.consumer.memberId ?? '', joined = false): void {
    const loop = this.loop;
    const topic = this.topic;
    if (loop === undefined || topic === undefined || this.closing) return;
    const mine = assignments.filter((a) => a.topic === topic).flatMap((a) => a.partitions);
    const change = loop.assign(mine);
    if (!joined && change.added.length === 0 && change.revoked.length === 0) return;
    if (change.revoked.length > 0) this.log.info({ revoked: change.revoked }, 'partitions revoked');
    const assignment = { [topic]: [...loop.states.assigned] };
    for (const l of this.joinListeners) l({ memberId, assignment });
  }

  /**
   * The library could not rejoin the group (it gave up after its retries): the partitions may
   * already be another member's, so they are let go, and joining is tried again with a pause.
   */
  private rejoinFailed(error: Error): void {
    if (this.closing) return;
    this.rejoinFailures += 1;
    const restart = this.rejoinFailures < MAX_REJOIN_FAILURES;
    this.applyAssignment([], undefined, true);
    for (const l of this.crashListeners) l({ error, restart });
    if (!restart) return;
    clearTimeout(this.rejoinTimer);
    this.rejoinTimer = setTimeout(() => {
      this.consumer.joinGroup().catch((e: unknown) => this.rejoinFailed(e as Error));
    }, REJOIN_BACKOFF_MS * this.rejoinFailures);
  }

  /**
   * KIP-345: a static member that stops does not leave its group (as the Java client does not):
   * the broker keeps its partitions for the session timeout, and the same instance id joining
   * again in time gets them back without a rebalance. The library's close() always sends
   * LeaveGroup, and has no option not to; it sends none when it holds no member id, and its
   * public leaveGroup() ends the membership (so the scheduled heartbeat cancels itself when it
   * fires, without a request, and close() leaves nothing). So: forget the member id, then
   * leaveGroup() — no request goes to the broker. The one heartbeat timer already scheduled
   * (the library keeps it private) fires once within heartbeatIntervalMs and stops: the client
   * is closed by then, so nothing connects again (test/integration/static-membership.test.ts).
   */
  private async stayInGroup(): Promise<void> {
    const memberId = this.consumer.memberId;
    if (memberId === null) return;
    this.consumer.memberId = null;
    await this.consumer.leaveGroup();
    this.log.info({ memberId, groupInstanceId: this.options.groupInstanceId }, 'static member stops without leaving the group: its partitions wait for it for the session timeout');
  }

  /** Where newly assigned partitions start: the group's committed offset, else earliest (fromBeginning) or latest. */
  private async startingOffsets(topic: string, partitions: number[]): Promise<Map<number, bigint>> {
    const committed = await this.consumer.listCommittedOffsets({ topics: [{ topic, partitions }] });
    const byPartition = committed.get(topic) ?? [];
    const result = new Map<number, bigint>();
    const without: number[] = [];
    for (const p of partitions) {
      const offset = byPartition[p];
      if (offset !== undefined && offset >= 0n) result.set(p, offset);
      else without.push(p);
    }
    if (without.length > 0) {
      const start = await this.listOffsets(topic, without, this.fromBeginning ? ListOffsetTimestamps.EARLIEST : ListOffsetTimestamps.LATEST);
      for (const [p, offset] of start) result.set(p, offset);
    }
    return result;
  }

  private async listOffsets(topic: string, partitions: number[], timestamp: bigint): Promise<Map<number, bigint>> {
    const offsets = await this.consumer.listOffsets({ topics: [topic], partitions: { [topic]: partitions }, timestamp });
    const byPartition = offsets.get(topic) ?? [];
    const result = new Map<number, bigint>();
    for (const p of partitions) {
      const offset = byPartition[p];
      if (offset !== undefined && offset >= 0n) result.set(p, offset);
    }
    return result;
  }
}
