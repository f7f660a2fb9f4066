import Table from 'cli-table3';

/** A table for the terminal; plain (no colour codes) when stdout is a file or a pipe. */
export function makeTable(options: ConstructorParameters<typeof Table>[0] = {}): InstanceType<typeof Table> {
  const plain = !process.stdout.isTTY;
  return new Table({ ...options, style: plain ? { head: [], border: [] } : options.style });
}
