import { BrokenCircuitError, CircuitState, SamplingBreaker, circuitBreaker, handleWhen, type CircuitBreakerPolicy } from 'cockatiel';
import type { Logger } from 'pino';
import { BreakerOpenError, dispositionOf } from '../errors.js';
import type { PipelineMetrics } from './metrics-port.js';

export type BreakerState = 'closed' | 'half_open' | 'open';

/** spanledger_breaker_state's values. */
const STATE_VALUES: Readonly<Record<BreakerState, number>> = { closed: 0, half_open: 1, open: 2 };

/** The BREAKER_* settings. */
export interface BreakerSettings {
  /** Opens when more than this fraction of the calls in the window failed with a retriable error (0 < x < 1). */
  failureRate: number;
  windowMs: number;
  /** Calls the window must hold before its failure rate is judged (a store called rarely must not open on one failure). */
  minCalls: number;
  /** An open breaker lets one probe through after this long. */
  halfOpenAfterMs: number;
}

/** One store's breaker as /readyz and a status endpoint show it. */
export interface BreakerStatus {
  store: string;
  state: BreakerState;
  /** When it entered `state`. */
  since: Date;
  /** Open: when the next call may go through as the probe. */
  nextProbeAt?: Date;
  /** Open or half-open: the failure that opened it. */
  lastFailure?: string;
}

/** What a call that meets an open breaker does while it waits. */
export interface BreakerWait {
  /** Stop waiting: the call rejects with BreakerOpenError. Checked at least once a second. */
  shouldStop(): boolean;
  /** The call met an open breaker and waits for its probe (once per call). */
  onBlocked(): void;
}

/** Longest a waiting call sleeps before it checks `shouldStop` again. */
const WAIT_SLICE_MS = 1_000;
/** A probe that was refused although it was due (clocks of cockatiel and ours a tick apart): try again after this. */
const REFUSED_PROBE_DELAY_MS = 10;

/** One store: cockatiel's policy plus what we show of it. */
class StoreBreaker {
  state: BreakerState = 'closed';
  since: number;
  /** Until when the time in `state` is in spanledger_breaker_state_seconds_total. */
  accountedUntil: number;
  lastFailure: string | undefined;
  readonly waiters = new Set<() => void>();

  constructor(
    readonly store: string,
    readonly policy: CircuitBreakerPolicy,
    now: number,
  ) {
    this.since = now;
    this.accountedUntil = now;
  }
}

/**
 * A circuit breaker per store (span log, TigerBeetle, DuckDB, dead-letter producer, signals
 * producer), on cockatiel's SamplingBreaker: it opens when more than `failureRate` of a store's
 * calls over `windowMs` failed with a retriable error (at least `minCalls` calls), lets one probe
 * through after `halfOpenAfterMs`, and closes when the probe succeeds. A record a store refuses
 * (dead-lettered) is an answer, not a failure; non-retriable errors do not count either (they stop
 * the worker anyway).
 *
 * While a store's breaker is open, a call to it does not reach the store: it waits for the probe
 * (or becomes it), so a flush does not spin through retries against a store known to be down.
 * Nothing here knows Kafka: the pipeline pauses the partitions whose calls are blocked
 * (`onBlocked`) and resumes them when the breaker closes (`onClosed`).
 *
 * Lifecycle: constructed with the worker's stores, used until `close`.
 */
export class StoreBreakers {
  private readonly breakers = new Map<string, StoreBreaker>();
  private readonly closedListeners: Array<(store: string) => void> = [];
  private closed = false;

  constructor(
    stores: readonly string[],
    private readonly settings: BreakerSettings,
    private readonly metrics: PipelineMetrics,
    private readonly logger: Logger,
  ) {
    const now = Date.now();
    for (const store of new Set(stores)) {
      const policy = circuitBreaker(
        // A wait inside the worker (local_wait) is load, not the store failing; an unknown
        // failure counts while its bounded retries last.
        handleWhen((e) => {
          const disposition = dispositionOf(e);
          return disposition === 'retry' || disposition === 'unknown';
        }),
        {
          halfOpenAfter: settings.halfOpenAfterMs,
          breaker: new SamplingBreaker({
            threshold: settings.failureRate,
            duration: settings.windowMs,
            // SamplingBreaker judges only windows with at least duration × minimumRps calls;
            // half a call below minCalls keeps its rounding of the window on the right side.
            minimumRps: ((settings.minCalls - 0.5) * 1000) / settings.windowMs,
          }),
        },
      );
      const breaker = new StoreBreaker(store, policy, now);
      policy.onStateChange((state) => this.changed(breaker, state));
      this.breakers.set(store, breaker);
      metrics.breakerState.set({ store }, STATE_VALUES.closed);
      for (const state of Object.keys(STATE_VALUES)) {
        metrics.breakerStateSeconds.inc({ store, state }, 0);
        metrics.breakerTransitions.inc({ store, to: state }, 0);
      }
    }
    metrics.beforeScrape(() => this.accountTime(Date.now()));
  }

  /** Runs one call to `store` through its breaker; while the breaker is open, waits for its probe instead. */
  async call<R>(store: string, fn: () => Promise<R>, wait: BreakerWait): Promise<R> {
    const breaker = this.breakers.get(store);
    if (breaker === undefined) throw new Error(`no circuit breaker for store ${store}`);
    let blocked = false;
    for (;;) {
      if (this.probeNotDue(breaker)) {
        if (!blocked) {
          blocked = true;
          wait.onBlocked();
        }
        await this.sleep(breaker);
        if (wait.shouldStop() || this.closed) throw new BreakerOpenError(store);
        continue;
      }
      try {
        return await breaker.policy.execute(fn);
      } catch (e) {
        // Open (a probe failed while this call waited for it, or the probe was not quite due yet):
        // wait again rather than count it as the store's failure.
        if (!(e instanceof BrokenCircuitError)) throw e;
        if (wait.shouldStop() || this.closed) throw new BreakerOpenError(store);
        if (!this.probeNotDue(breaker)) await new Promise((resolve) => setTimeout(resolve, REFUSED_PROBE_DELAY_MS));
      }
    }
  }

  /** `listener(store)` when a store's breaker closes (its probe succeeded). */
  onClosed(listener: (store: string) => void): void {
    this.closedListeners.push(listener);
  }

  statuses(): BreakerStatus[] {
    return [...this.breakers.values()].map((b) => ({
      store: b.store,
      state: b.state,
      since: new Date(b.since),
      ...(b.state === 'open' ? { nextProbeAt: new Date(this.nextProbeAt(b)) } : {}),
      ...(b.state !== 'closed' && b.lastFailure !== undefined ? { lastFailure: b.lastFailure } : {}),
    }));
  }

  /** Wakes every waiting call (they give up: see `call`); the breakers are not used afterwards. */
  close(): void {
    this.closed = true;
    for (const b of this.breakers.values()) for (const wake of [...b.waiters]) wake();
  }

  private nextProbeAt(b: StoreBreaker): number {
    return b.since + this.settings.halfOpenAfterMs;
  }

  /** Open, and its probe not due yet: a call waits. */
  private probeNotDue(b: StoreBreaker): boolean {
    return b.state === 'open' && Date.now() < this.nextProbeAt(b);
  }

  /** Until the probe is due, the breaker changes state, or a second passed (to check shouldStop). */
  private sleep(b: StoreBreaker): Promise<void> {
    const ms = Math.min(WAIT_SLICE_MS, Math.max(0, this.nextProbeAt(b) - Date.now()));
    return new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        b.waiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      timer.unref();
      b.waiters.add(wake);
    });
  }

  private changed(b: StoreBreaker, to: CircuitState): void {
    const state: BreakerState = to === CircuitState.Closed ? 'closed' : to === CircuitState.HalfOpen ? 'half_open' : 'open';
    if (state === b.state) return;
    const now = Date.now();
    this.accountTime(now);
    const from = b.state;
    const openFor = from === 'closed' ? 0 : now - b.since;
    b.state = state;
    b.since = now;
    const { metrics, logger } = this;
    metrics.breakerState.set({ store: b.store }, STATE_VALUES[state]);
    metrics.breakerTransitions.inc({ store: b.store, to: state });
    if (state === 'open') {
      const failure = b.policy.lastFailure;
      const error = failure !== undefined && 'error' in failure ? (failure.error as Error) : undefined;
      b.lastFailure = error?.message ?? b.lastFailure;
      logger.error(
        { store: b.store, from, err: error, nextProbeAt: new Date(this.nextProbeAt(b)).toISOString() },
        `circuit breaker opened: ${b.store} is failing; its flushes wait for a probe and their partitions stop fetching`,
      );
    } else if (state === 'half_open') {
      logger.info({ store: b.store }, `circuit breaker half-open: probing ${b.store}`);
    } else {
      logger.info({ store: b.store, openForMs: openFor }, `circuit breaker closed: ${b.store} answers again`);
      b.lastFailure = undefined;
    }
    for (const wake of [...b.waiters]) wake();
    if (state === 'closed') for (const listener of this.closedListeners) listener(b.store);
  }

  /** Adds the time since the last accounting to each breaker's current state. */
  private accountTime(now: number): void {
    for (const b of this.breakers.values()) {
      const seconds = (now - b.accountedUntil) / 1000;
      if (seconds > 0) this.metrics.breakerStateSeconds.inc({ store: b.store, state: b.state }, seconds);
      b.accountedUntil = now;
    }
  }
}
