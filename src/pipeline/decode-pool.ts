import { Piscina } from 'piscina';
import type { Decoded, RawMessage } from '../model/decode.js';
import { fromWire, toWireRecord, type DecodeTask, type DecoderSpec, type WireDecoded } from '../model/decode-thread.js';

/** Decodes records somewhere else than in the caller's turn of the event loop. */
export interface DecodePool<T> {
  /** The decoder's answer for each record, in order (the same answers the decoder gives in-thread). */
  decode(records: RawMessage[]): Promise<Array<Decoded<T>>>;
  close(): Promise<void>;
}

/**
 * DECODE_THREADS > 0: record decoding and validation on a pool of worker threads (piscina), each
 * with its own decoder built from `spec`. The pipeline keeps order per partition by applying the
 * answers of a partition's chunks in the order it sent them.
 */
export class ThreadDecodePool<T> implements DecodePool<T> {
  private readonly pool: Piscina<DecodeTask, Array<WireDecoded<T>>>;

  constructor(
    private readonly spec: DecoderSpec,
    threads: number,
  ) {
    this.pool = new Piscina({
      filename: new URL('../model/decode-thread.js', import.meta.url).href,
      minThreads: threads,
      maxThreads: threads,
      // Chunks wait in the queue rather than on a thread's port: the pipeline bounds them anyway.
      concurrentTasksPerWorker: 1,
      idleTimeout: Number.POSITIVE_INFINITY,
    });
  }

  async decode(records: RawMessage[]): Promise<Array<Decoded<T>>> {
    const answers = await this.pool.run({ spec: this.spec, records: records.map(toWireRecord) });
    return answers.map((a) => fromWire(a));
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }
}
