// TEMPORARY placeholder so that branch pfa typechecks on its own. The real
// PlatformaticGroupConsumer is written by another helper in this same path; the lead takes that
// file at merge and drops this one. Every method throws: nothing here consumes anything.
import type { GroupConsumerOptions, KafkaFacadeOptions } from '../facade.js';
import type { ConsumedBatch, GroupConsumer, OffsetCommit } from '../../pipeline/consumer-port.js';

/** TEMPORARY: not built on this branch (see the comment at the top). */
export class PlatformaticGroupConsumer implements GroupConsumer {
  constructor(_client: KafkaFacadeOptions, _options: GroupConsumerOptions) {
    throw new Error('PlatformaticGroupConsumer: not built yet (TEMPORARY placeholder on branch pfa)');
  }
  connect(): Promise<void> {
    throw new Error('not built yet');
  }
  subscribe(_topic: string, _fromBeginning: boolean): Promise<void> {
    throw new Error('not built yet');
  }
  run(_eachBatch: (batch: ConsumedBatch) => Promise<void>): Promise<void> {
    throw new Error('not built yet');
  }
  pause(_topic: string, _partitions?: readonly number[]): void {
    throw new Error('not built yet');
  }
  resume(_topic: string, _partitions?: readonly number[]): void {
    throw new Error('not built yet');
  }
  commitOffsets(_offsets: OffsetCommit[]): Promise<void> {
    throw new Error('not built yet');
  }
  disconnect(): Promise<void> {
    throw new Error('not built yet');
  }
  onGroupJoin(_listener: (event: { memberId: string; assignment: Record<string, number[]> }) => void): void {
    throw new Error('not built yet');
  }
  onRebalancing(_listener: () => void): void {
    throw new Error('not built yet');
  }
  onCrash(_listener: (event: { error: Error; restart: boolean }) => void): void {
    throw new Error('not built yet');
  }
}
