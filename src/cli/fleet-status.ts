import type { KafkaAdmin } from '../kafka/facade.js';
import { advertisedAddress } from '../kafka/status-address.js';
import type { WorkerStatusJson } from '../observability/worker-status.js';
import { makeTable } from './table.js';

/** A consumer group to show, with the topics it is known to read (from settings; more are found in its commits and assignments). */
export interface GroupSpec {
  group: string;
  topics: string[];
}

/** ready: ready with nothing to look at; degraded: ready but with stuck partitions, breakers not closed or problems. */
export type MemberState = 'ready' | 'degraded' | 'not ready' | 'unreachable' | 'no status address';

export interface MemberStatus {
  memberId: string;
  clientId: string;
  clientHost: string;
  /** The /status address from the member's client id. */
  address: string | null;
  /** What Kafka assigned this member: topic → partitions (empty while the group rebalances). */
  assignment: Record<string, number[]>;
  state: MemberState;
  /** Why unreachable, degraded or not ready. */
  reason: string | null;
  status: WorkerStatusJson | null;
}

export interface PartitionRow {
  topic: string;
  partition: number;
  /** The member Kafka assigned the partition to, or null (no members, or rebalancing). */
  owner: { memberId: string; address: string | null; workerId: string | null } | null;
  /** What the group committed (null: nothing yet). Decimal strings: offsets may pass 2^53. */
  committed: string | null;
  end: string;
  /** end - committed; with nothing committed, end - the partition's first offset (all of it is to read). */
  lag: string;
}

export interface GroupStatus {
  group: string;
  /** Kafka's state of the group: Stable, PreparingRebalance, CompletingRebalance, Empty, Dead. */
  state: string;
  topics: string[];
  /** Topics the group is known to read that do not exist on the cluster. */
  missingTopics: string[];
  partitions: PartitionRow[];
  members: MemberStatus[];
}

export interface FleetStatus {
  at: string;
  groups: GroupStatus[];
}

/** GET a worker's /status; throws with a short reason. */
export type StatusFetcher = (address: string, timeoutMs: number) => Promise<WorkerStatusJson>;

export const fetchWorkerStatus: StatusFetcher = async (address, timeoutMs) => {
  let res: Response;
  try {
    res = await fetch(`http://${address}/status`, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (e) {
    const error = e as Error & { cause?: { code?: string; message?: string } };
    if (error.name === 'TimeoutError') throw new Error(`no answer within ${timeoutMs} ms`);
    throw new Error(error.cause?.code ?? error.cause?.message ?? error.message);
  }
  if (!res.ok) throw new Error(`/status answered HTTP ${res.status}`);
  return (await res.json()) as WorkerStatusJson;
};

export interface FleetStatusOptions {
  /** How long one worker's /status may take. */
  timeoutMs: number;
  fetchStatus?: StatusFetcher;
  /** Progress lines for a terminal ("asking 3 workers…"). */
  onProgress?: (line: string) => void;
}

/**
 * Reads the fleet as Kafka and the workers see it: per group, its members (DescribeGroups: client
 * id → /status address, assignment), committed offsets and end offsets, then every member's
 * /status with a bounded timeout. Uses a connected admin the caller owns.
 */
export class FleetStatusReader {
  private readonly fetchStatus: StatusFetcher;

  constructor(
    private readonly admin: KafkaAdmin,
    private readonly options: FleetStatusOptions,
  ) {
    this.fetchStatus = options.fetchStatus ?? fetchWorkerStatus;
  }

  async read(specs: GroupSpec[]): Promise<FleetStatus> {
    const { admin, options } = this;
    options.onProgress?.(`asking Kafka about ${specs.length} group(s)`);
    const existing = new Set(await admin.listTopics());
    const described = await admin.describeGroups(specs.map((s) => s.group));
    const groups = await Promise.all(
      specs.map(async (spec) => {
        const description = described.find((g) => g.group === spec.group);
        const members: MemberStatus[] = (description?.members ?? []).map((m) => {
          const address = advertisedAddress(m.clientId) ?? null;
          return {
            memberId: m.memberId,
            clientId: m.clientId,
            clientHost: m.clientHost,
            address,
            assignment: m.assignment,
            state: address === null ? 'no status address' : 'unreachable',
            reason: address === null ? `client id ${m.clientId} carries no status address (not a spanledger worker, or one from before /status)` : null,
            status: null,
          };
        });
        return { spec, state: description?.state ?? 'Unknown', members };
      }),
    );
    const asked = groups.flatMap((g) => g.members.filter((m) => m.address !== null));
    if (asked.length > 0) options.onProgress?.(`fetching /status of ${asked.length} worker(s) (at most ${options.timeoutMs} ms each)`);
    await Promise.all(asked.map((m) => this.askMember(m)));
    const result: GroupStatus[] = [];
    for (const { spec, state, members } of groups) {
      const committed = await admin.committedOffsets(spec.group);
      const topics = [...new Set([...spec.topics, ...committed.map((c) => c.topic), ...members.flatMap((m) => Object.keys(m.assignment))])].sort();
      const partitions: PartitionRow[] = [];
      for (const topic of topics.filter((t) => existing.has(t))) {
        const ends = await admin.topicOffsets(topic);
        const commits = new Map<number, bigint>();
        for (const c of committed) if (c.topic === topic && c.offset !== null) commits.set(c.partition, c.offset);
        for (const e of [...ends].sort((a, b) => a.partition - b.partition)) {
          const owner = members.find((m) => m.assignment[topic]?.includes(e.partition));
          const done = commits.get(e.partition);
          const lag = e.high - (done ?? e.low);
          partitions.push({
            topic,
            partition: e.partition,
            owner: owner === undefined ? null : { memberId: owner.memberId, address: owner.address, workerId: owner.status?.workerId ?? null },
            committed: done === undefined ? null : done.toString(),
            end: e.high.toString(),
            lag: (lag > 0n ? lag : 0n).toString(),
          });
        }
      }
      result.push({ group: spec.group, state, topics, missingTopics: topics.filter((t) => !existing.has(t)), partitions, members });
    }
    return { at: new Date().toISOString(), groups: result };
  }

  private async askMember(member: MemberStatus): Promise<void> {
    try {
      const status = await this.fetchStatus(member.address!, this.options.timeoutMs);
      member.status = status;
      const judged = judge(status);
      member.state = judged.state;
      member.reason = judged.reason;
    } catch (e) {
      member.state = 'unreachable';
      member.reason = (e as Error).message;
    }
  }
}

/** A worker's state from its own /status. */
export function judge(status: WorkerStatusJson): { state: MemberState; reason: string | null } {
  if (!status.ready) return { state: 'not ready', reason: status.healthy ? 'not consuming (starting, rebalancing or stopping)' : 'unhealthy (crashed or a fatal store error)' };
  const why: string[] = [...status.problems];
  // Backpressure is a worker working through a backlog as designed: shown, not degraded.
  const paused = status.partitions.filter((p) => p.paused !== null && p.paused !== 'backpressure');
  if (paused.length > 0) why.push(`paused: ${paused.map((p) => `${p.partition} (${p.paused})`).join(', ')}`);
  const breakers = status.breakers.filter((b) => b.state !== 'closed');
  if (breakers.length > 0) why.push(`breakers: ${breakers.map((b) => `${b.store} ${b.state}`).join(', ')}`);
  return why.length === 0 ? { state: 'ready', reason: null } : { state: 'degraded', reason: why.join('; ') };
}

/** How a member is named in the tables: its worker id when its /status answered, else its address or client id. */
function memberLabel(member: MemberStatus): string {
  return member.status?.workerId ?? member.address ?? member.clientId;
}

function mib(bytes: number): string {
  return `${(bytes / (1 << 20)).toFixed(0)} MiB`;
}

function perSecond(n: number): string {
  return n.toFixed(n >= 100 ? 0 : 1);
}

/** Two tables: every partition of every group with its owner and lag, then every worker with its state. */
export function renderFleetStatus(fleet: FleetStatus): string {
  const partitions = makeTable({ head: ['group', 'topic', 'partition', 'owner', 'committed', 'end', 'lag'] });
  const workers = makeTable({ head: ['group', 'worker', 'address', 'state', 'partitions', 'paused', 'breakers', 'RSS', 'in/s', 'out/s', 'dlq/s'] });
  const notes: string[] = [];
  for (const g of fleet.groups) {
    const byMember = new Map(g.members.map((m) => [m.memberId, m]));
    for (const p of g.partitions) {
      const owner = p.owner === null ? '(unowned)' : memberLabel(byMember.get(p.owner.memberId)!);
      partitions.push([g.group, p.topic, p.partition, owner, p.committed ?? '-', p.end, p.lag]);
    }
    for (const m of g.members) {
      const s = m.status;
      const assigned = Object.values(m.assignment).flat().sort((a, b) => a - b);
      const paused = s?.partitions.filter((p) => p.paused !== null).map((p) => `${p.partition}:${p.paused}`) ?? [];
      const breakers = s?.breakers.filter((b) => b.state !== 'closed').map((b) => `${b.store}:${b.state}`) ?? [];
      workers.push([
        g.group,
        memberLabel(m),
        m.address ?? '-',
        m.reason === null ? m.state : `${m.state}: ${m.reason}`,
        assigned.join(',') || '-',
        paused.join(' ') || '-',
        s === null ? '-' : breakers.join(' ') || 'closed',
        s === null ? '-' : mib(s.process.rssBytes),
        s === null ? '-' : perSecond(s.rates.consumedPerSecond),
        s === null ? '-' : perSecond(s.rates.writtenPerSecond),
        s === null ? '-' : perSecond(s.rates.deadLetteredPerSecond),
      ]);
    }
    const lag = g.partitions.reduce((n, p) => n + BigInt(p.lag), 0n);
    notes.push(`${g.group}: ${g.state}, ${g.members.length} member(s), ${g.partitions.length} partition(s), total lag ${lag}${g.missingTopics.length > 0 ? `; missing topic(s): ${g.missingTopics.join(', ')}` : ''}`);
  }
  const sections = [partitions.toString()];
  if (fleet.groups.some((g) => g.members.length > 0)) sections.push(workers.toString());
  return [...sections, ...notes].join('\n');
}
