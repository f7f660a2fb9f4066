import { RecordRejectedError } from '../../errors.js';

/**
 * DuckDB refused the data of a cycle (not the disk, not memory): retrying the same cycle would fail
 * the same way forever. The sink then looks for the spans it refuses (findUnwritable) and
 * dead-letters their records instead.
 */
export class CycleDataError extends Error {}

/** DuckDB's errors about its input, as opposed to I/O, memory or an interruption. */
export function isDataError(message: string): boolean {
  return /^(Invalid Input|Conversion|Parser) Error/.test(message);
}

/**
 * The items `writes` refuses, found by halving: `writes(items)` is true when a cycle of just those
 * items can be written. About k·log2(n) attempts for k refused items among n. A failure that is not
 * about the data (rejected by `writes`) ends the search and is thrown.
 */
export async function findUnwritable<T>(items: readonly T[], writes: (items: readonly T[]) => Promise<boolean>): Promise<T[]> {
  if (items.length === 0 || (await writes(items))) return [];
  if (items.length === 1) return [...items];
  const middle = items.length >> 1;
  return [...(await findUnwritable(items.slice(0, middle), writes)), ...(await findUnwritable(items.slice(middle), writes))];
}

export function unwritableError(reason: string): RecordRejectedError {
  return new RecordRejectedError('ArchiveUnwritable', `DuckDB cannot write this span as Parquet: ${reason}`);
}
