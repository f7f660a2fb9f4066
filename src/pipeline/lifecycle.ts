/**
 * Where a pipeline is in its life, one state at a time:
 *
 *     created ─start()─▶ starting ─joined the group─▶ running ─stop()─▶ stopping ─▶ stopped
 *                            │                           │
 *                            └──────────┬────────────────┘
 *                                       ▼
 *              failed (a flush failed for good) · crashed (the consumer is gone for good)
 *
 * `failed` and `crashed` are final: a stop from there flushes and commits what it can but keeps
 * the state, so that retries stay given up and /healthz keeps saying why.
 */
export type PipelineState = 'created' | 'starting' | 'running' | 'stopping' | 'stopped' | 'failed' | 'crashed';

/** The pipeline's state and what follows from it. Pure: no I/O. */
export class PipelineLifecycle {
  private current: PipelineState = 'created';

  get state(): PipelineState {
    return this.current;
  }

  starting(): void {
    if (this.current === 'created') this.current = 'starting';
  }

  /** Joined the consumer group (again, after a rebalance: no change). */
  joined(): void {
    if (this.current === 'starting') this.current = 'running';
  }

  /** A flush failed for good. True the first time only: the worker is told once. */
  fail(): boolean {
    if (!this.takesRecords) return false;
    this.current = 'failed';
    return true;
  }

  /** The consumer crashed and does not restart. True the first time only. */
  crash(): boolean {
    if (!this.takesRecords) return false;
    this.current = 'crashed';
    return true;
  }

  /** stop() was called. */
  stopping(): void {
    if (this.takesRecords || this.current === 'created') this.current = 'stopping';
  }

  stopped(): void {
    if (this.current === 'stopping') this.current = 'stopped';
  }

  /** Started and neither stopping nor done: records are taken, flushes scheduled, partitions opened. */
  get takesRecords(): boolean {
    return this.current === 'starting' || this.current === 'running';
  }

  /** A flush failed for good: every retry gives up, nothing more is tried. */
  get gaveUp(): boolean {
    return this.current === 'failed';
  }

  /** Joined the group and consuming. */
  ready(): boolean {
    return this.current === 'running';
  }

  healthy(): boolean {
    return this.current !== 'failed' && this.current !== 'crashed';
  }
}
