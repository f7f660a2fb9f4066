import { Consumer, ListOffsetTimestamps, kGetApi, kGetConnection, type API, type Broker, type Callback, type Connection, type GroupAssignment } from '@platformatic/kafka';
import type { Logger } from 'pino';
import type { ConsumedBatch, GroupConsumer, OffsetCommit } from '../../pipeline/consumer-port.js';
import type { GroupConsumerOptions, KafkaFacadeOptions } from '../facade.js';
// Installs the guard on the library's decompressors before any fetch.
import './codec-guard.js';
import { FetchLoop, type LoopClient } from './fetch-loop.js';
import type { FetchSizes } from './fetcher.js';
import { GroupCommits } from './group-commits.js';
import { isPlatformaticRetriable, someProtocolErrorIs } from './errors.js';
import { retryDelay } from './options.js';

type JoinListener = (event: { memberId: string; assignment: Record<string, number[]> }) => void;
type CrashListener = (event: { error: Error; restart: boolean }) => void;
type FetchedThroughListener = (event: { topic: string; partition: number; nextOffset: bigint }) => void;

/** Failed rejoins in a row after which the member gives up (the worker restarts). */
const MAX_REJOIN_FAILURES = 10;
const REJOIN_BACKOFF_MS = 1_000;
/** Tries of one OffsetCommit request that fails for a transient reason (network, coordinator moving). */
const COMMIT_TRIES = 3;
/** Answers that mean "not in this generation": the commit waits for the member's next join. */
const REBALANCE_ANSWERS: ReadonlySet<string> = new Set(['REBALANCE_IN_PROGRESS', 'ILLEGAL_GENERATION', 'UNKNOWN_MEMBER_ID', 'FENCED_INSTANCE_ID']);

/** The member has no member id (not joined yet, or lost it): a commit waits for the join. */
class NotAMemberError extends Error {
  constructor() {
    super('not a member of the group yet: offsets are committed after the join');
    this.name = 'NotAMemberError';
  }
}

type OffsetCommitTopic = { name: string; partitions: Array<{ partitionIndex: number; committedOffset: bigint; committedLeaderEpoch: number; committedMetadata: null }> };
/** The library's request plumbing (exported symbols of its Base client) that the commit uses. */
interface RequestClient {
  [kGetApi]<A extends unknown[], R>(name: string, callback: Callback<API<A, R>>): void;
  [kGetConnection](broker: Broker, callback: Callback<Connection>): void;
}

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
  /**
   * A second client of the same library, never joined to the group, for offset lookups and
   * commits: it has connections of its own. A broker answers the requests of one connection in
   * order, one at a time, and a JoinGroup waits at the coordinator until every member has
   * rejoined (a heartbeat interval or more), so on the group's connection every commit would
   * wait behind it. The Java client keeps its coordinator connection apart for the same reason.
   */
  private readonly requests: Consumer;
  /**
   * A third one, never joined either, for the fetch loop's fetches only: not on the group's
   * connection (partitions that stay with this member would stop during each rebalance, as
   * above), and not on the commits' either: a fetch holds its connection at the broker until
   * answered (up to maxWaitTime once caught up, and a full response takes a while to send), so a
   * commit behind it waited up to maxWaitTime, twice at the end of a backlog (a partition's next
   * commit waits for the one before): a second per drain on platformatic, none on kafkajs, which
   * keeps fetches on a connection of their own per broker for this reason.
   */
  private readonly fetches: Consumer;
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
  private readonly commits: GroupCommits;
  /** The generation whose join last released the held commits. */
  private commitsGeneration = -1;

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
    // Never joined: clients of their own so requests and fetches do not queue behind a JoinGroup or each other.
    const unjoined = (suffix: string) =>
      new Consumer({ clientId: `${client.clientId}-${suffix}`, bootstrapBrokers: client.brokers, groupId: options.group, autocommit: false, autocreateTopics: false, ...fetchSizes(options) });
    this.requests = unjoined('requests');
    this.fetches = unjoined('fetch');
    this.commits = new GroupCommits({
      send: (offsets) => this.sendCommit(offsets),
      isRebalanceRefusal: (error) => error instanceof NotAMemberError || someProtocolErrorIs(error, REBALANCE_ANSWERS),
      owns: (topic, partition) => topic === this.topic && this.loop !== undefined && this.loop.states.get(partition) !== undefined,
      holdLimitMs: Math.max(options.rebalanceTimeoutMs, options.sessionTimeoutMs),
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
    const client = this.fetches as unknown as LoopClient;
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

  /**
   * Not through the library's commit(): that one answers a rebalance refusal by rejoining the
   * group (and retrying), which starts one more rebalance for every member, and under
   * cooperative-sticky also forgets the partitions the member owns, so the next assignment is no
   * longer sticky. GroupCommits holds a refused commit until the next join instead.
   */
  async commitOffsets(offsets: OffsetCommit[]): Promise<void> {
    await this.commits.commit(offsets);
  }

  async disconnect(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearTimeout(this.rejoinTimer);
    this.commits.close(new Error('the consumer stopped before the group rebalance completed: offsets not committed'));
    await this.loop?.stop();
    if (this.options.groupInstanceId !== undefined) await this.stayInGroup();
    try {
      await this.consumer.close();
    } finally {
      await this.requests.close();
      await this.fetches.close();
    }
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

  heldBytes(): number {
    return this.loop?.states.heldBytes ?? 0;
  }

  /** The library completed a join: this member's partitions. */
  private assigned(memberId: string, assignments: GroupAssignment[]): void {
    this.rejoinFailures = 0;
    this.applyAssignment(assignments, memberId, true);
    this.newGeneration();
  }

  /**
   * After the assignment was applied: held commits of partitions still owned go out with the
   * member's new generation. Also after a cooperative first round (the member synced a new
   * generation and at once rejoins for the second round, during which Kafka accepts its
   * commits), else they would wait for the second round's end, a heartbeat interval or more.
   */
  private newGeneration(): void {
    this.commitsGeneration = this.consumer.generationId;
    this.commits.joined();
  }

  private rebalancing(): void {
    for (const l of this.rebalanceListeners) l();
    // Cooperative first round: the library already dropped the partitions that move elsewhere.
    // Release them now (the other member gets them only once they are let go, in the next round).
    this.applyAssignment(this.consumer.assignments ?? []);
    if (this.consumer.generationId !== this.commitsGeneration && this.consumer.memberId !== null) this.newGeneration();
  }

  /** Applies the member's assignment; tells the pipeline when it changed (always after a join). */
  private applyAssignment(assignments: GroupAssignment[], memberId = this.consumer.memberId ?? '', joined = false): void {
    const loop = this.loop;
    const topic = this.topic;
    if (loop === undefined || topic === undefined || this.closing) return;
    const mine = assignments.filter((a) => a.topic === topic).flatMap((a) => a.partitions);
    const change = loop.assign(mine);
    if (!joined && change.added.length === 0 && change.revoked.length === 0) return;
    if (change.revoked.length > 0) {
      this.log.info({ revoked: change.revoked }, 'partitions revoked');
      // Before the pipeline hears of it: their release must not wait on a commit Kafka will refuse.
      this.commits.revoked(topic, change.revoked);
    }
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
    this.commits.failAll(error);
    for (const l of this.crashListeners) l({ error, restart });
    if (!restart) return;
    clearTimeout(this.rejoinTimer);
    this.rejoinTimer = setTimeout(() => {
      this.consumer.joinGroup().catch((e: unknown) => this.rejoinFailed(e as Error));
    }, REJOIN_BACKOFF_MS * this.rejoinFailures);
  }

  /**
   * One OffsetCommit request for the member's current generation, without the library's
   * rejoin-on-refusal (see commitOffsets): a refusal reaches GroupCommits as it is. Transient
   * failures are tried again a few times.
   */
  private async sendCommit(offsets: OffsetCommit[]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.sendCommitOnce(offsets);
        return;
      } catch (e) {
        if (attempt >= COMMIT_TRIES || this.closing || !isPlatformaticRetriable(e)) throw e;
        await new Promise((resolve) => setTimeout(resolve, retryDelay(this.consumer, 'commit', attempt, COMMIT_TRIES, e as Error) as number));
      }
    }
  }

  private async sendCommitOnce(offsets: OffsetCommit[]): Promise<void> {
    const memberId = this.consumer.memberId;
    const generationId = this.consumer.generationId;
    // Sent on the request client's connections (see `requests`), for the group member's generation.
    const consumer = this.requests;
    if (memberId === null || memberId === '') throw new NotAMemberError();
    const topics = new Map<string, OffsetCommitTopic>();
    for (const c of offsets) {
      let topic = topics.get(c.topic);
      if (topic === undefined) topics.set(c.topic, (topic = { name: c.topic, partitions: [] }));
      topic.partitions.push({ partitionIndex: c.partition, committedOffset: c.offset, committedLeaderEpoch: -1, committedMetadata: null });
    }
    // The member's own knowledge of its coordinator: its heartbeats forget it when it moves.
    const coordinatorId = await this.consumer.findGroupCoordinator();
    const metadata = await consumer.metadata({ topics: [...topics.keys()] });
    const broker = metadata.brokers.get(coordinatorId);
    if (broker === undefined) throw new Error(`group coordinator ${coordinatorId} is not in the cluster metadata`);
    const client = consumer as unknown as RequestClient;
    const connection = await new Promise<Connection>((resolve, reject) => client[kGetConnection](broker, (e, c) => (e ? reject(e) : resolve(c as Connection))));
    type Args = [groupId: string, generationId: number, memberId: string, groupInstanceId: string | null, topics: OffsetCommitTopic[]];
    const api = await new Promise<API<Args, unknown>>((resolve, reject) => client[kGetApi]<Args, unknown>('OffsetCommit', (e, a) => (e ? reject(e) : resolve(a as API<Args, unknown>))));
    await api.async(connection, this.options.group, generationId, memberId, this.options.groupInstanceId ?? null, [...topics.values()]);
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
    const offsets = await this.requests.listOffsets({ topics: [topic], partitions: { [topic]: partitions }, timestamp });
    const byPartition = offsets.get(topic) ?? [];
    const result = new Map<number, bigint>();
    for (const p of partitions) {
      const offset = byPartition[p];
      if (offset !== undefined && offset >= 0n) result.set(p, offset);
    }
    return result;
  }
}
