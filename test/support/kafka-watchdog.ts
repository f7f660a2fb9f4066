/**
 * A detached watchdog for a broker (or cluster) the tests started with scripts/kafka.sh: once
 * this process is gone, it runs `down` and deletes the broker's folder. Signals end vitest without
 * an 'exit' event, so an 'exit' handler alone would leave the JVMs running.
 */
import { spawn, type ChildProcess } from 'node:child_process';

/**
 * `down` is the shell command that stops the broker; it may use `$dir` (the broker's folder, also
 * deleted afterwards) and `$kafka_sh` (the path of scripts/kafka.sh).
 */
export function startKafkaWatchdog(name: string, kafkaSh: string, dir: string, down: string): ChildProcess {
  const script = `
parent=$1 kafka_sh=$2 dir=$3
while kill -0 "$parent" 2>/dev/null; do sleep 1; done
${down} >/dev/null 2>&1
rm -rf "$dir"
`;
  const child = spawn('bash', ['-c', script, name, String(process.pid), kafkaSh, dir], { detached: true, stdio: 'ignore' });
  child.unref();
  return child;
}

export function stopKafkaWatchdog(child: ChildProcess): void {
  if (child.pid !== undefined && child.exitCode === null) {
    try {
      process.kill(child.pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
}
