import type { StoreBreakers } from './breakers.js';
import type { FetchPauses } from './fetch-pauses.js';
import type { PipelineLifecycle } from './lifecycle.js';
import type { PipelineOptions } from './options.js';
import { retrying, type RetryOptions } from './retry.js';

type StoreCallOptions = Pick<PipelineOptions<unknown>, 'topic' | 'metrics' | 'logger' | 'retryMaxDelayMs'>;

/** The partition a store call is made for: its calls stop once it is released. */
interface CallingPartition {
  readonly partition: number;
  readonly closed: boolean;
}

/** The breaker of the dead-letter producer (the other stores' breakers are named after their sink or processor store). */
export const DEAD_LETTER_STORE = 'dead_letter';

/** What holds a partition whose flush waits for `store`'s open breaker (FetchPauses). */
export function breakerHold(store: string): string {
  return `breaker:${store}`;
}

/**
 * How every flush stage calls a store: through the store's circuit breaker, retried by the one
 * failure rule (retry.ts), and given up once the partition is released or the pipeline failed.
 */
export class StoreCalls {
  constructor(
    private readonly options: StoreCallOptions,
    private readonly breakers: StoreBreakers,
    private readonly pauses: FetchPauses,
    private readonly lifecycle: PipelineLifecycle,
  ) {}

  retryOptions(pipe: CallingPartition, what: string): RetryOptions {
    const { options } = this;
    return {
      maxDelayMs: options.retryMaxDelayMs,
      what,
      shouldStop: () => pipe.closed || this.lifecycle.gaveUp,
      onRetry: (error: unknown, attempt: number) => {
        options.metrics.retries.inc({ topic: options.topic, sink: what });
        options.logger.warn({ err: error, attempt, sink: what, partition: pipe.partition }, 'store write failed; retrying');
      },
    };
  }

  /** `call` retried until it succeeds, fails for good or the partition's calls stop; `what` names it in logs and metrics. */
  retried<R>(pipe: CallingPartition, what: string, call: () => Promise<R>): Promise<R> {
    return retrying(call, this.retryOptions(pipe, what));
  }

  /**
   * One call to a store, through its circuit breaker. While the breaker is open the call waits for
   * the breaker's probe instead of reaching the store, and the partition stops fetching until
   * the breaker closes; the partition being released or the worker failing ends the wait.
   */
  guarded<R>(pipe: CallingPartition, store: string, call: () => Promise<R>): Promise<R> {
    return this.breakers.call(store, call, {
      shouldStop: () => pipe.closed || this.lifecycle.gaveUp,
      onBlocked: () => {
        if (!pipe.closed) this.pauses.hold(pipe.partition, breakerHold(store));
      },
    });
  }
}
