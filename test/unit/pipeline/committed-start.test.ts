import { describe, expect, it } from 'vitest';
import { RecordingSink, deferred, eventually, records, settleFor, startPipeline } from './fixtures.js';

/** A sink whose writes must each start at the committed offset (the archive's, docs/archive.md). */
class CommittedStartSink extends RecordingSink {
  readonly startsAtCommittedOffset = true;
  readonly signals: Array<AbortSignal | undefined> = [];
  override async write(flush: Parameters<RecordingSink['write']>[0]) {
    this.signals.push(flush.signal);
    return super.write(flush);
  }
}

describe('a sink whose writes start at the committed offset', () => {
  it('starts the next flush of a partition only once Kafka accepted the commit of the previous one', async () => {
    const sink = new CommittedStartSink();
    const h = await startPipeline({ sinks: [sink] });
    const firstCommit = deferred();
    let commitCalls = 0;
    h.consumer.onCommit = async () => {
      commitCalls += 1;
      if (commitCalls === 1) await firstCommit.promise;
    };
    h.consumer.append(0, records('a:1', 'a:2'));
    h.consumer.assign([0]);
    await h.consumer.deliver(0);
    await eventually(() => expect(sink.writes).toHaveLength(1));
    h.consumer.append(0, records('a:3'));
    await h.consumer.deliver(0);
    await settleFor(50);
    // The first commit is not acknowledged: the second flush waits before the sink.
    expect(sink.writes).toHaveLength(1);
    firstCommit.resolve();
    await eventually(() => expect(sink.writes).toHaveLength(2));
    await eventually(() => expect(h.consumer.committedOffset(0)).toBe(3));
    expect(sink.stored('a')).toEqual(['1', '2', '3']);
    await h.stop(1_000);
  });

  it('asks again for a refused commit before the next flush, and waits until it is accepted', async () => {
    const sink = new CommittedStartSink();
    const h = await startPipeline({ sinks: [sink] });
    let refusals = 2;
    h.consumer.onCommit = () => {
      if (refusals > 0) {
        refusals -= 1;
        throw new Error('REBALANCE_IN_PROGRESS');
      }
    };
    h.consumer.append(0, records('a:1'));
    h.consumer.assign([0]);
    await h.consumer.deliver(0);
    await eventually(() => expect(sink.writes).toHaveLength(1));
    h.consumer.append(0, records('a:2'));
    await h.consumer.deliver(0);
    await eventually(() => expect(sink.writes).toHaveLength(2), 5_000);
    expect(refusals).toBe(0);
    await eventually(() => expect(h.consumer.committedOffset(0)).toBe(2));
    await h.stop(1_000);
  });

  it('aborts the signal of a revoked partition\'s flush and never writes its waiting flush', async () => {
    const sink = new CommittedStartSink();
    const h = await startPipeline({ sinks: [sink] });
    const never = deferred();
    h.consumer.onCommit = () => never.promise;
    h.consumer.append(0, records('a:1'));
    h.consumer.assign([0]);
    await h.consumer.deliver(0);
    await eventually(() => expect(sink.writes).toHaveLength(1));
    const signal = sink.signals[0]!;
    expect(signal.aborted).toBe(false);
    h.consumer.append(0, records('a:2'));
    await h.consumer.deliver(0);
    await settleFor(30);
    h.consumer.assign([]);
    await eventually(() => expect(signal.aborted).toBe(true));
    await settleFor(50);
    expect(sink.writes).toHaveLength(1);
    never.resolve();
    await h.stop(1_000);
  });
});
