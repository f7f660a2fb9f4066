import { createRequire } from 'node:module';

/**
 * Fixes to kafkajs 2.2.4's consumer (unmaintained since 2023, so fixed here rather than
 * upstream), applied once to its classes when this module loads. All are about the group
 * coordinator moving to another broker, which a cluster losing a broker does:
 *
 * - Offset commits follow the coordinator. kafkajs' OffsetManager keeps the coordinator of the
 *   join that made it and, when a commit answers NOT_COORDINATOR, only refreshes the topic
 *   metadata: every later commit goes to the same broker again, until a heartbeat happens to fail
 *   and the member rejoins. Seen on the 3-broker rolling restart: a member whose rejoin had
 *   failed once ("coordinator loading") kept heartbeating the new coordinator fine while its
 *   commits went to the old one for 81 s (454 NOT_COORDINATOR answers), so its partitions
 *   stalled. Here a commit refused for that reason, or that could not reach the coordinator,
 *   looks the coordinator up before failing, so the caller's next try goes to the right broker.
 * - Heartbeats follow it too. kafkajs rejoins (and so finds the new coordinator) when a heartbeat
 *   is answered NOT_COORDINATOR, but a coordinator killed with -9 answers nothing: seen on the
 *   rules test, a member whose connections to the dead broker were refused for 27 s, until it was
 *   back and answered its heartbeat NOT_COORDINATOR, while the new coordinator had expired the
 *   member (its commits there refused UNKNOWN_MEMBER_ID all along). Here a heartbeat that could not
 *   reach the coordinator looks it up before failing, so the next one reaches the new
 *   coordinator, whose answer (a rebalance, or an unknown member) kafkajs acts on.
 * - Leaving the group reaches the coordinator of now. A consumer that crashes leaves the group
 *   before kafkajs restarts it under a new member id; kafkajs sends that LeaveGroup to the
 *   coordinator of its last join, and when that broker is gone the leave fails silently: the old
 *   member id then holds its partitions until its session times out, and every rebalance in
 *   between waits for it. Here a failed leave is sent again to the coordinator looked up afresh.
 */

interface Coordinator {
  leaveGroup(request: { groupId: string; memberId: string }): Promise<unknown>;
}

interface Cluster {
  findGroupCoordinator(request: { groupId: string }): Promise<Coordinator>;
}

interface OffsetManager {
  cluster: Cluster;
  coordinator: Coordinator;
  groupId: string;
  commitOffsets(offsets?: unknown): Promise<void>;
}

interface ConsumerGroup {
  cluster: Cluster;
  coordinator: Coordinator | null;
  groupId: string;
  memberId: string | null;
  leave(): Promise<void>;
  heartbeat(options: { interval: number }): Promise<void>;
}

/** Answers that mean the coordinator of the group is another broker now, or that the one asked is gone. */
const COORDINATOR_GONE_TYPES = new Set(['NOT_COORDINATOR_FOR_GROUP', 'GROUP_COORDINATOR_NOT_AVAILABLE']);
const CONNECTION_ERRORS = new Set(['KafkaJSConnectionError', 'KafkaJSConnectionClosedError', 'KafkaJSRequestTimeoutError']);

export function coordinatorGone(error: unknown): boolean {
  for (let e = error, depth = 0; typeof e === 'object' && e !== null && depth < 5; depth += 1) {
    const { type, name, originalError, cause } = e as { type?: unknown; name?: unknown; originalError?: unknown; cause?: unknown };
    if ((typeof type === 'string' && COORDINATOR_GONE_TYPES.has(type)) || (typeof name === 'string' && CONNECTION_ERRORS.has(name))) return true;
    e = originalError ?? cause;
  }
  return false;
}

/** The coordinator's broker did not answer (down, or the connection broke). */
function coordinatorUnreachable(error: unknown): boolean {
  for (let e = error, depth = 0; typeof e === 'object' && e !== null && depth < 5; depth += 1) {
    const { name, originalError, cause } = e as { name?: unknown; originalError?: unknown; cause?: unknown };
    if (typeof name === 'string' && CONNECTION_ERRORS.has(name)) return true;
    e = originalError ?? cause;
  }
  return false;
}

const FIXED = Symbol.for('spanledger.kafkajs.coordinator-fixes');

function apply(): void {
  const require = createRequire(import.meta.url);
  const offsetManagerClass = require('kafkajs/src/consumer/offsetManager/index.js') as { prototype: OffsetManager } & { [FIXED]?: true };
  const consumerGroupClass = require('kafkajs/src/consumer/consumerGroup.js') as { prototype: ConsumerGroup } & { [FIXED]?: true };
  if (typeof offsetManagerClass.prototype?.commitOffsets !== 'function' || typeof consumerGroupClass.prototype?.leave !== 'function' || typeof consumerGroupClass.prototype?.heartbeat !== 'function') {
    throw new Error('kafkajs internals are not those of 2.2.4 (OffsetManager#commitOffsets, ConsumerGroup#leave, ConsumerGroup#heartbeat): src/kafka/kafkajs/coordinator-fixes.ts needs a look');
  }
  if (offsetManagerClass[FIXED]) return;
  offsetManagerClass[FIXED] = true;

  const commitOffsets = offsetManagerClass.prototype.commitOffsets;
  offsetManagerClass.prototype.commitOffsets = async function (this: OffsetManager, offsets?: unknown): Promise<void> {
    try {
      await commitOffsets.call(this, offsets);
    } catch (e) {
      if (coordinatorGone(e)) {
        // Best effort: when no coordinator can be found now, the commit's own error stands.
        this.coordinator = await this.cluster.findGroupCoordinator({ groupId: this.groupId }).catch(() => this.coordinator);
      }
      throw e;
    }
  };

  const heartbeat = consumerGroupClass.prototype.heartbeat;
  consumerGroupClass.prototype.heartbeat = async function (this: ConsumerGroup, options: { interval: number }): Promise<void> {
    try {
      await heartbeat.call(this, options);
    } catch (e) {
      // NOT_COORDINATOR makes kafkajs rejoin, which looks the coordinator up anyway.
      if (coordinatorUnreachable(e)) this.coordinator = await this.cluster.findGroupCoordinator({ groupId: this.groupId }).catch(() => this.coordinator);
      throw e;
    }
  };

  const leave = consumerGroupClass.prototype.leave;
  consumerGroupClass.prototype.leave = async function (this: ConsumerGroup): Promise<void> {
    try {
      await leave.call(this);
    } catch (e) {
      if (!this.memberId || !coordinatorGone(e)) throw e;
      this.coordinator = await this.cluster.findGroupCoordinator({ groupId: this.groupId });
      await leave.call(this);
    }
  };
}

apply();
