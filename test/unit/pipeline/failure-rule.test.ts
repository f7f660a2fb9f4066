import { describe, expect, it, vi } from 'vitest';
import {
  BreakerOpenError,
  ConfigError,
  FatalStoreError,
  InvariantError,
  LocalWaitError,
  RecordRejectedError,
  RetriableError,
  dispositionOf,
  worstFailure,
  type Disposition,
} from '../../../src/errors.js';
import { LOCAL_WAIT_MAX_DELAY_MS, UNKNOWN_FAILURE_ATTEMPTS, isRetriable, retrying } from '../../../src/pipeline/retry.js';

/** The one failure rule the pipeline applies, after each store's classifier typed its errors. */
describe('the failure rule', () => {
  const rows: Array<[string, unknown, Disposition, boolean]> = [
    ['a store failure', new RetriableError('connection refused'), 'retry', true],
    ['an open breaker told to stop waiting', new BreakerOpenError('duckdb'), 'retry', true],
    ['a wait inside the worker', new LocalWaitError('lock held by the previous owner'), 'local_wait', true],
    ['a caller bug', new InvariantError('tenant id is not canonical'), 'fatal', false],
    ['a store answer no retry changes', new FatalStoreError('tigerbeetle', 'unexpected outcome'), 'fatal', false],
    ['a record rejection thrown instead of returned in the result', new RecordRejectedError('Conflict', 'stored differently'), 'fatal', false],
    ['invalid configuration', new ConfigError('BATCH_MAX_RECORDS: not a number'), 'fatal', false],
    ['a plain Error no classifier knows', new Error('socket hang up'), 'unknown', false],
    ['a thrown string', 'boom', 'unknown', false],
  ];
  it.each(rows)('%s → %s', (_what, error, disposition, retriable) => {
    expect(dispositionOf(error)).toBe(disposition);
    expect(isRetriable(error)).toBe(retriable);
  });

  it('of several failures reports the worst: fatal, then unknown, then a store failure, then a local wait', () => {
    const wait = new LocalWaitError('lock held');
    const down = new RetriableError('down');
    const odd = new Error('odd');
    const bug = new InvariantError('bug');
    expect(worstFailure([wait, down])).toBe(down);
    expect(worstFailure([wait, down, odd])).toBe(odd);
    expect(worstFailure([odd, bug, down])).toBe(bug);
    expect(worstFailure([wait])).toBe(wait);
  });

  const quick = { maxDelayMs: 1, shouldStop: () => false, onRetry: () => undefined };

  it('retries a store failure until it succeeds', async () => {
    let calls = 0;
    const result = await retrying(async () => {
      calls += 1;
      if (calls < UNKNOWN_FAILURE_ATTEMPTS + 3) throw new RetriableError('down');
      return 'stored';
    }, quick);
    expect(result).toBe('stored');
    expect(calls).toBe(UNKNOWN_FAILURE_ATTEMPTS + 3);
  });

  it('surfaces an unknown failure after UNKNOWN_FAILURE_ATTEMPTS tries in a row, as a FatalStoreError naming it', async () => {
    let calls = 0;
    const failure = new Error('something odd');
    const outcome = retrying(async () => {
      calls += 1;
      throw failure;
    }, { ...quick, what: 'duckdb' });
    await expect(outcome).rejects.toBeInstanceOf(FatalStoreError);
    await expect(outcome).rejects.toMatchObject({ store: 'duckdb', cause: failure });
    expect(calls).toBe(UNKNOWN_FAILURE_ATTEMPTS);
  });

  it('counts unknown failures in a row only: a typed store failure between them starts the count again', async () => {
    let calls = 0;
    const result = await retrying(async () => {
      calls += 1;
      if (calls === UNKNOWN_FAILURE_ATTEMPTS) throw new RetriableError('down');
      if (calls < 2 * UNKNOWN_FAILURE_ATTEMPTS - 1) throw new Error('odd');
      return 'stored';
    }, quick);
    expect(result).toBe('stored');
  });

  it('polls a local wait (a lock hand-over) at most LOCAL_WAIT_MAX_DELAY_MS apart, however long the store backoff may grow', async () => {
    vi.useFakeTimers();
    try {
      let calls = 0;
      let retries = 0;
      const waits = 12;
      const outcome = retrying(
        async () => {
          calls += 1;
          if (calls <= waits) throw new LocalWaitError('lock held by the previous owner');
          return 'stored';
        },
        { maxDelayMs: 60_000, shouldStop: () => false, onRetry: () => (retries += 1) },
      );
      // Each step of LOCAL_WAIT_MAX_DELAY_MS lets at least one more attempt run (a 60 s backoff would not).
      for (let step = 1; step <= waits; step += 1) {
        await vi.advanceTimersByTimeAsync(LOCAL_WAIT_MAX_DELAY_MS);
        expect(calls).toBeGreaterThanOrEqual(Math.min(step + 1, waits + 1));
      }
      await expect(outcome).resolves.toBe('stored');
      expect(retries).toBe(waits);
    } finally {
      vi.useRealTimers();
    }
  });

  it('backs a store failure off as before after local waits, and stops waiting once told to', async () => {
    let calls = 0;
    let stop = false;
    const outcome = retrying(
      async () => {
        calls += 1;
        if (calls === 3) stop = true;
        throw calls % 2 ? new LocalWaitError('lock held') : new RetriableError('down');
      },
      { maxDelayMs: 1, shouldStop: () => stop, onRetry: () => undefined },
    );
    await expect(outcome).rejects.toBeInstanceOf(LocalWaitError);
    expect(calls).toBe(3);
  });

  it('never retries a fatal failure', async () => {
    let calls = 0;
    const bug = new InvariantError('caller bug');
    await expect(
      retrying(async () => {
        calls += 1;
        throw bug;
      }, quick),
    ).rejects.toBe(bug);
    expect(calls).toBe(1);
  });
});
