import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { envValues, resolveSettings } from '../../../src/config/load.js';
import { kafkaSettings, workerSettings } from '../../../src/config/settings.js';
import { ResourceStack, type Resource } from '../../../src/workers/resource-stack.js';
import { Worker } from '../../../src/workers/worker.js';
import { RecordingSink, TestDecoder } from '../pipeline/fixtures.js';

/** A pino logger whose lines are kept as objects. */
function recordingLogger(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
}

function resource(name: string, events: string[], failStop = false): Resource {
  return {
    name,
    start: async () => {
      events.push(`start ${name}`);
    },
    stop: async () => {
      events.push(`stop ${name}`);
      if (failStop) throw new Error(`${name} would not close`);
    },
    stopFailed: { msg: `${name} close failed`, fields: { resource: name } },
  };
}

describe('ResourceStack (a worker starts in order and stops in reverse)', () => {
  it('stops what it started, last started first; a failing stop is logged and the others still stop', async () => {
    const { logger, lines } = recordingLogger();
    const events: string[] = [];
    const stack = new ResourceStack(logger);
    for (const r of [resource('dead letters', events), resource('sink', events, true), resource('pipeline', events)]) await stack.start(r);
    expect(await stack.stopAll()).toBe(false);
    expect(events).toEqual(['start dead letters', 'start sink', 'start pipeline', 'stop pipeline', 'stop sink', 'stop dead letters']);
    expect(lines.filter((l) => l.level === 50).map((l) => [l.msg, l.resource, (l.err as { message: string }).message])).toEqual([['sink close failed', 'sink', 'sink would not close']]);
    // Stopped once: a second stopAll stops nothing again, and nothing starts any more.
    expect(await stack.stopAll()).toBe(true);
    await stack.start(resource('late', events));
    expect(events.slice(6)).toEqual([]);
  });

  it('stops a resource whose start failed, and none that never started', async () => {
    const events: string[] = [];
    const stack = new ResourceStack(pino({ level: 'silent' }));
    await stack.start(resource('producer', events));
    const failing: Resource = { ...resource('consumer', events), start: () => Promise.reject(new Error('broker down')) };
    await expect(stack.start(failing)).rejects.toThrow('broker down');
    expect(await stack.stopAll()).toBe(true);
    expect(events).toEqual(['start producer', 'stop consumer', 'stop producer']);
  });
});

describe('Worker.stop', () => {
  it('is idempotent: every call gets the one closing promise', async () => {
    const settings = { METRICS_PORT: '0', WORKER_ID: 'w-1' };
    const worker = new Worker<string>({
      role: 'spans',
      kafka: resolveSettings(kafkaSettings, envValues(kafkaSettings, settings), {}),
      worker: resolveSettings(workerSettings, envValues(workerSettings, settings), {}),
      topic: 'events',
      dlqTopic: 'events.dlq',
      group: 'g',
      decoder: new TestDecoder(),
      sinks: [new RecordingSink()],
      logger: pino({ level: 'silent' }),
      registry: new Registry(),
    });
    const first = worker.stop();
    expect(worker.stop()).toBe(first);
    expect(await first).toBe(true);
  });
});
