import { describe, expect, it } from 'vitest';
import { generateSpan, malformedRecords, tenantIdFor } from '../../../src/model/generate.js';
import { SpanDecoder, type Decoded, type RawMessage } from '../../../src/model/decode.js';
import { decodeChunk, fromWire, toWire, toWireRecord } from '../../../src/model/decode-thread.js';
import type { DecodePool } from '../../../src/pipeline/decode-pool.js';
import { RecordingSink, TestDecoder, eventually, records, settleFor, startPipeline } from './fixtures.js';

/**
 * A decode pool whose answers come back in the reverse order of the requests (as threads may
 * finish), optionally failing some chunks (a thread that died).
 */
class ShuffledPool implements DecodePool<string> {
  readonly chunks: number[] = [];
  private waiting: Array<() => void> = [];
  closed = false;
  failChunk: (n: number) => boolean = () => false;
  private readonly decoder = new TestDecoder();

  decode(messages: RawMessage[]): Promise<Array<Decoded<string>>> {
    const n = this.chunks.push(messages.length) - 1;
    return new Promise((resolve, reject) => {
      this.waiting.unshift(() => (this.failChunk(n) ? reject(new Error('thread died')) : resolve(messages.map((m) => this.decoder.decode(m)))));
    });
  }

  /** Answers every chunk asked for so far, the latest first. */
  answerAll(): void {
    for (const answer of this.waiting.splice(0)) answer();
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

describe('pipeline with decode threads (DECODE_THREADS)', () => {
  it('applies answers in offset order per partition whatever order they come back in, dead letters alike', async () => {
    const sink = new RecordingSink();
    const pool = new ShuffledPool();
    const h = await startPipeline({ sinks: [sink] }, { decodePool: pool });
    const values = Array.from({ length: 1500 }, (_, i) => (i === 700 ? 'bad' : `a:${i}`));
    h.consumer.append(0, records(...values));
    h.consumer.assign([0]);
    await h.consumer.deliver(0);
    await eventually(() => expect(pool.chunks.length).toBe(3));
    expect(pool.chunks).toEqual([512, 512, 476]);
    await settleFor();
    expect(sink.writes).toEqual([]);
    pool.answerAll();
    await eventually(() => expect(h.consumer.committedOffset(0)).toBe(1500));
    expect(sink.stored('a')).toEqual(values.filter((v) => v !== 'bad').map((v) => v.slice(2)));
    expect(h.deadLetters.sent.map((l) => [l.source.offset, l.error.errorClass])).toEqual([[700n, 'InvalidJson']]);
    expect(await h.stop(1_000)).toBe(true);
    expect(pool.closed).toBe(true);
  });

  it('decodes a chunk on the main thread when its thread fails, and stop waits for answers under way', async () => {
    const sink = new RecordingSink();
    const pool = new ShuffledPool();
    pool.failChunk = (n) => n === 0;
    const h = await startPipeline({ sinks: [sink] }, { decodePool: pool, flushWhenCaughtUp: false });
    h.consumer.append(0, records('a:1', 'bad', 'b:2'));
    h.consumer.assign([0]);
    await h.consumer.deliver(0);
    await eventually(() => expect(pool.chunks).toEqual([3]));
    const stopped = h.stop(1_000);
    await settleFor();
    pool.answerAll();
    expect(await stopped).toBe(true);
    expect(sink.stored('a')).toEqual(['1']);
    expect(sink.stored('b')).toEqual(['2']);
    expect(h.deadLetters.sent.map((l) => l.source.offset)).toEqual([1n]);
    expect(h.consumer.committedOffsets(0)).toEqual([3]);
  });
});

describe('decode thread side', () => {
  it('gives the same answers as the decoder on the main thread, after the records crossed as plain bytes', () => {
    const tenant = tenantIdFor(4);
    const { tenantId: _t, ...headerOnly } = generateSpan(tenant, 2);
    const messages: RawMessage[] = [
      { value: Buffer.from(JSON.stringify(generateSpan(tenant, 1))), headers: {} },
      { value: Buffer.from(JSON.stringify(headerOnly)), headers: { 'tenant-id': Buffer.from(tenant.toUpperCase()) } },
      { value: Buffer.from(JSON.stringify(headerOnly)), headers: { 'tenant-id': [Buffer.from(tenant), null, tenantIdFor(5)] } },
      ...malformedRecords(tenant, 1000).map((r) => ({ value: r.value, headers: r.headers })),
    ];
    const spec = { kind: 'spans' as const, maxMessageBytes: 1000, options: {} };
    const local = new SpanDecoder(1000);
    // structuredClone does what postMessage does: Buffers arrive as plain Uint8Arrays.
    const answers = structuredClone(decodeChunk(structuredClone({ spec, records: messages.map(toWireRecord) }))).map(fromWire);
    expect(answers).toHaveLength(messages.length);
    messages.forEach((m, i) => {
      const expected = local.decode(m);
      const got = answers[i]!;
      if (expected.ok) expect(got).toEqual(expected);
      else expect(!got.ok && [got.error.constructor.name, got.error.errorClass, got.error.message]).toEqual(['RecordRejectedError', expected.error.errorClass, expected.error.message]);
    });
    expect(answers.filter((a) => !a.ok).length).toBeGreaterThan(5);
    expect(toWire(local.decode({ value: null }))).toEqual({ ok: false, errorClass: 'EmptyRecord', message: 'record has no value (null or empty)' });
  });
});
