/**
 * A long scenario as named steps, each with its own time bound. When a step outlasts its bound,
 * or fails, the error names the step and carries every step before it (how long each took) and
 * the last lines of the scenario's workers: CI shows only a failed test's message, and a bare
 * "Test timed out in 450000ms" says neither which wait hung nor what the workers were doing.
 */
import type { WorkerProcess } from './harness.js';

const seconds = (n: number) => `${(n / 1000).toFixed(1)} s`;

export class BoundedSteps {
  private readonly done: string[] = [];
  private readonly t0 = Date.now();

  constructor(
    private readonly scenario: string,
    private readonly workers: () => WorkerProcess[] = () => [],
  ) {}

  /** Runs `fn` as step `name`; rejects once it takes longer than `boundMs` (fn itself is not cancelled). */
  async run<T>(name: string, boundMs: number, fn: () => Promise<T>): Promise<T> {
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const overdue = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(this.context(`step "${name}" not done within ${seconds(boundMs)}`))), boundMs);
    });
    try {
      const value = await Promise.race([fn(), overdue]);
      this.done.push(`${name}: ${seconds(Date.now() - started)} (at ${seconds(Date.now() - this.t0)})`);
      return value;
    } catch (e) {
      if (e instanceof Error && !e.message.startsWith(`${this.scenario}: step "`)) {
        // An assertion's own message (and its diff) first, then where the scenario was.
        e.message += `\n${this.context(`step "${name}" failed after ${seconds(Date.now() - started)}`)}`;
      }
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  private context(what: string): string {
    const tails = this.workers().map((w) => `--- ${w.label} (exit ${w.child.exitCode ?? w.child.signalCode ?? 'none'}), last lines:\n${w.lines.slice(-12).join('\n')}`);
    return [`${this.scenario}: ${what} (at ${seconds(Date.now() - this.t0)})`, 'steps before it:', ...this.done.map((d) => `  ${d}`), ...tails].join('\n');
  }
}
