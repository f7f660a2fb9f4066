import { describe, expect, it } from 'vitest';
import { SpanledgerError } from '../../../src/errors.js';
import { RecordingProcessor, RecordingSink, eventually, records, settleFor, startPipeline } from './fixtures.js';

/** Records `name` in `order` when `target[method]` is called, then calls it. */
function spy<O extends object>(order: string[], name: string, target: O, method: keyof O & string): void {
  const original = (target[method] as (...args: unknown[]) => Promise<unknown>).bind(target);
  (target as Record<string, unknown>)[method] = (...args: unknown[]) => {
    order.push(name);
    return original(...args);
  };
}

describe('the pipeline runs on what its worker made and started (issue 18)', () => {
  it("stops taking records, flushes, commits and leaves the group, but closes nothing it did not make: the worker's stack closes them after it, in reverse start order", async () => {
    const first = new RecordingSink('first');
    const second = new RecordingSink('second');
    const h = await startPipeline({ sinks: [first, second] }, { flushWhenCaughtUp: false });
    expect(h.deadLetters.started).toBe(1 << 20);
    expect(h.pipeline.state).toBe('starting');
    h.consumer.assign([0]);
    expect(h.pipeline.state).toBe('running');
    h.consumer.append(0, records('a:1', 'bad'));
    await h.consumer.deliver(0);
    await settleFor();
    const order: string[] = [];
    spy(order, 'leave group', h.consumer, 'disconnect');
    spy(order, 'close first', first, 'close');
    spy(order, 'close second', second, 'close');
    spy(order, 'close dead letters', h.deadLetters, 'close');

    expect(await h.pipeline.stop(1_000)).toBe(true);
    expect(h.pipeline.state).toBe('stopped');
    expect(h.consumer.committedOffsets(0)).toEqual([2]);
    expect(first.stored('a')).toEqual(['1']);
    expect(h.deadLetters.sent.length).toBe(1);
    expect([first.closed, second.closed, h.deadLetters.closed]).toEqual([false, false, false]);
    expect(order).toEqual(['leave group']);

    // The pipeline was stopped already: its second stop answers false at once, the rest closes.
    expect(await h.stop(1_000)).toBe(false);
    expect([first.closed, second.closed, h.deadLetters.closed]).toEqual([true, true, true]);
    expect(order).toEqual(['leave group', 'close second', 'close first', 'close dead letters']);
  });

  it("a processor's partitions are released by the pipeline's stop, the processor is closed by its worker after", async () => {
    const processor = new RecordingProcessor();
    const h = await startPipeline({ processor, tickIntervalMs: 60_000 });
    h.consumer.assign([0]);
    await eventually(() => expect(processor.calls).toEqual(['start', 'open 0']));
    await h.pipeline.stop(1_000);
    expect(processor.calls).toEqual(['start', 'open 0', 'release 0']);
    await h.stop(1_000);
    expect(processor.calls).toEqual(['start', 'open 0', 'release 0', 'close']);
  });

  it('tells the worker once when flushes of several partitions fail for good', async () => {
    const sink = new RecordingSink();
    const h = await startPipeline({ sinks: [sink] });
    sink.onWrite = () => {
      throw new SpanledgerError('table is read-only', { retriable: false });
    };
    h.consumer.assign([0, 1]);
    h.consumer.append(0, records('a:1'));
    h.consumer.append(1, records('b:1'));
    await h.consumer.deliver(0);
    await h.consumer.deliver(1);
    await eventually(() => expect(h.pipeline.state).toBe('failed'));
    await settleFor();
    expect(h.fatal.map((e) => e.message)).toEqual(['table is read-only']);
    expect([h.pipeline.ready(), h.pipeline.healthy()]).toEqual([false, false]);
    expect(h.consumer.commits).toEqual([]);
    expect(await h.stop(1_000)).toBe(false);
    expect(h.pipeline.state).toBe('failed');
  });
});
