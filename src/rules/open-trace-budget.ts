import { InvariantError } from '../errors.js';
import type { CompiledRuleSet } from './compile.js';
import { EVIDENCE_SPAN_IDS } from './evaluate.js';

/**
 * The open-trace limit of one rule worker, shared by all its partitions: a number of traces and
 * the memory they may hold (each counted at its upper bound, traceStateBytes). A partition
 * opening a trace when the budget is full closes its own oldest open traces first (reason `cap`).
 */
export class OpenTraceBudget {
  private count = 0;
  private byteCount = 0;

  constructor(
    readonly maxOpenTraces: number,
    readonly maxBytes = Number.POSITIVE_INFINITY,
  ) {
    // The limits come from the validated settings: a bad one here is the caller's bug.
    if (!Number.isSafeInteger(maxOpenTraces) || maxOpenTraces < 1) throw new InvariantError(`maxOpenTraces must be a positive integer, not ${maxOpenTraces}`);
    if (!(maxBytes > 0)) throw new InvariantError(`maxBytes must be positive, not ${maxBytes}`);
  }

  /** Open traces of all partitions (may exceed maxOpenTraces by at most the partition count). */
  get open(): number {
    return this.count;
  }

  /** The upper bound of the memory the open traces hold. */
  get bytes(): number {
    return this.byteCount;
  }

  get isFull(): boolean {
    return this.count >= this.maxOpenTraces || this.byteCount >= this.maxBytes;
  }

  acquire(bytes = 0): void {
    this.count++;
    this.byteCount += bytes;
  }

  release(n = 1, bytes = 0): void {
    this.count -= n;
    this.byteCount -= bytes;
  }
}

const stateBytes = new WeakMap<CompiledRuleSet, number>();

/**
 * The most memory one open trace can hold against `rules`, whatever its span count: the segment
 * and its maps (~512 bytes), and per distinct span check a counter and at most EVIDENCE_SPAN_IDS
 * span ids (16 hex characters each, ~40 bytes with their slot). Measured traces stay well under
 * it (~1.7 KB with 10 rules): the budget errs on the safe side.
 */
export function traceStateBytes(rules: CompiledRuleSet): number {
  let bytes = stateBytes.get(rules);
  if (bytes === undefined) {
    bytes = 512 + rules.checks.length * (8 + 48 + EVIDENCE_SPAN_IDS * 40);
    stateBytes.set(rules, bytes);
  }
  return bytes;
}
