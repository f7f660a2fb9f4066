import { execFileSync, spawn } from 'node:child_process';
import path from 'node:path';
import { ROOT } from './harness.js';

let availability: string | undefined | null = null;

/**
 * Makes sure kcat (a librdkafka producer) is installed, running scripts/install-kcat.sh once.
 * Returns undefined when it is there, else why not (tests then skip with one line).
 */
export function kcatSkipReason(): string | undefined {
  if (availability !== null) return availability;
  try {
    execFileSync('bash', [path.join(ROOT, 'scripts', 'install-kcat.sh')], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 300_000 });
    availability = undefined;
  } catch (e) {
    const stderr = String((e as { stderr?: Buffer }).stderr ?? '').trim();
    availability = `kcat not available (${stderr.split('\n').pop() || (e as Error).message})`;
  }
  return availability;
}

/** Produces `lines` (one record each) with kcat in one call, so librdkafka batches and compresses them. */
export async function kcatProduce(options: { brokers: string; topic: string; partition: number; codec: string; headers: Record<string, string>; lines: string[] }): Promise<void> {
  const args = ['-P', '-b', options.brokers, '-t', options.topic, '-p', String(options.partition), '-z', options.codec];
  for (const [k, v] of Object.entries(options.headers)) args.push('-H', `${k}=${v}`);
  // Large batches: one librdkafka batch holds as many records as fit, so whole batches get compressed.
  args.push('-X', 'linger.ms=200', '-X', 'batch.size=2000000', '-X', 'batch.num.messages=100000');
  const child = spawn('kcat', args, { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stdin.end(options.lines.join('\n') + '\n');
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  if (code !== 0) throw new Error(`kcat exited ${code}: ${stderr}`);
}
