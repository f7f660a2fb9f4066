import type { Logger } from 'pino';
import type { DeadLetterPort } from '../pipeline/consumer-port.js';
import type { DecodePool } from '../pipeline/decode-pool.js';
import type { Pipeline } from '../pipeline/pipeline.js';
import type { PipelineStages } from '../pipeline/types.js';

/** Something a worker made and runs: started at most once, stopped at most once. */
export interface Resource {
  readonly name: string;
  start?(): Promise<void>;
  stop?(): Promise<void>;
  /** The log line (and its fields) when `stop` fails. */
  readonly stopFailed: { msg: string; fields?: Record<string, unknown> };
}

/**
 * The resources of a worker, started in the order they are given and stopped in reverse (the
 * OpenTelemetry Collector's ordered start and shutdown): what a resource uses is started before
 * it and stopped after it. Only what was started (or was starting) is stopped. A stop that fails
 * is logged and does not keep the others from stopping.
 */
export class ResourceStack {
  private readonly started: Resource[] = [];
  private stopping = false;

  constructor(private readonly logger: Logger) {}

  /** Starts `resource` after every one started so far; once stopping, nothing more starts. */
  async start(resource: Resource): Promise<void> {
    if (this.stopping) return;
    this.started.push(resource);
    await resource.start?.();
  }

  /** Stops every started resource, the last started first; false if any stop failed. */
  async stopAll(): Promise<boolean> {
    this.stopping = true;
    let allStopped = true;
    for (const resource of this.started.splice(0).reverse()) {
      try {
        await resource.stop?.();
      } catch (e) {
        allStopped = false;
        this.logger.error({ err: e, ...resource.stopFailed.fields }, resource.stopFailed.msg);
      }
    }
    return allStopped;
  }
}

/** What a pipeline runs on, as its worker made it. */
export interface PipelineParts<T> {
  deadLetters: DeadLetterPort;
  /** The dead-letter topic's max.message.bytes (sends are split under it). */
  dlqMaxMessageBytes: number;
  stages: PipelineStages<T>;
  decodePool: DecodePool<T> | undefined;
  pipeline: Pipeline<T>;
  shutdownTimeoutMs: number;
  /** Told the pipeline's stop result: true when everything buffered was flushed and committed in time. */
  onPipelineStopped: (clean: boolean) => void;
}

/**
 * A pipeline and what it uses, in start order: the dead-letter producer, the sinks (in stage
 * order) or the processor, the decode threads, then the pipeline, which joins the group. Stopped
 * in reverse: the pipeline stops taking records, flushes, commits and leaves the group before the
 * stores it wrote to are closed.
 */
export function pipelineResources<T>(parts: PipelineParts<T>): Resource[] {
  const { deadLetters, stages, decodePool, pipeline } = parts;
  const { processor } = stages;
  return [
    { name: 'dead-letter producer', start: () => deadLetters.start(parts.dlqMaxMessageBytes), stop: () => deadLetters.close(), stopFailed: { msg: 'dead-letter producer close failed' } },
    ...(stages.sinks ?? []).map((sink): Resource => ({ name: `sink ${sink.name}`, start: () => sink.start(), stop: () => sink.close(), stopFailed: { msg: 'sink close failed', fields: { sink: sink.name } } })),
    ...(processor === undefined ? [] : [{ name: `processor ${processor.name}`, start: () => processor.start(), stop: () => processor.close(), stopFailed: { msg: 'processor close failed', fields: { processor: processor.name } } }]),
    ...(decodePool === undefined ? [] : [{ name: 'decode threads', stop: () => decodePool.close(), stopFailed: { msg: 'decode threads did not stop cleanly' } }]),
    {
      name: 'pipeline',
      start: () => pipeline.start(),
      stop: async () => parts.onPipelineStopped(await pipeline.stop(parts.shutdownTimeoutMs)),
      stopFailed: { msg: 'pipeline stop failed' },
    },
  ];
}
