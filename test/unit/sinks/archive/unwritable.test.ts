import { describe, expect, it } from 'vitest';
import { findUnwritable, isDataError } from '../../../../src/sinks/archive/unwritable.js';

describe('finding the spans DuckDB refuses', () => {
  it('finds every refused item by halving, with few attempts, and nothing when all are fine', async () => {
    const items = Array.from({ length: 1000 }, (_, i) => i);
    const poison = new Set([3, 512, 999]);
    let attempts = 0;
    const writes = async (subset: readonly number[]) => {
      attempts += 1;
      return !subset.some((i) => poison.has(i));
    };
    expect(await findUnwritable(items, writes)).toEqual([3, 512, 999]);
    expect(attempts).toBeLessThanOrEqual(3 * 2 * Math.ceil(Math.log2(1000)) + 1);
    attempts = 0;
    expect(await findUnwritable(items.filter((i) => !poison.has(i)), writes)).toEqual([]);
    expect(attempts).toBe(1);
  });

  it('stops at a failure that is not about the data', async () => {
    await expect(findUnwritable([1, 2, 3], async () => Promise.reject(new Error('disk full')))).rejects.toThrow('disk full');
  });

  it('tells DuckDB\'s errors about its input from the others', () => {
    expect(isDataError('Invalid Input Error: Malformed JSON in file "x", at byte 17: no low surrogate in string.')).toBe(true);
    expect(isDataError('Conversion Error: Could not convert string "x" to DECIMAL(20,0)')).toBe(true);
    expect(isDataError('IO Error: No space left on device')).toBe(false);
    expect(isDataError('Out of Memory Error: could not allocate block')).toBe(false);
  });
});
