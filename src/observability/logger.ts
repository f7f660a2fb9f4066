import pino, { type Logger } from 'pino';

/** JSON logs to stdout (pino's default), one line per event. */
export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { pid: process.pid, ...bindings }, timestamp: pino.stdTimeFunctions.isoTime });
}
