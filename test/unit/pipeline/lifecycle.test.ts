import { describe, expect, it } from 'vitest';
import { PipelineLifecycle } from '../../../src/pipeline/lifecycle.js';

describe('PipelineLifecycle (one state instead of booleans)', () => {
  it('is ready only while running: after joining the group and before stopping', () => {
    const l = new PipelineLifecycle();
    expect([l.state, l.ready(), l.healthy(), l.takesRecords]).toEqual(['created', false, true, false]);
    l.starting();
    expect([l.state, l.ready(), l.takesRecords]).toEqual(['starting', false, true]);
    l.joined();
    expect([l.state, l.ready(), l.healthy()]).toEqual(['running', true, true]);
    l.joined();
    expect(l.state).toBe('running');
    l.stopping();
    expect([l.state, l.ready(), l.healthy(), l.takesRecords]).toEqual(['stopping', false, true, false]);
    l.joined();
    expect(l.state).toBe('stopping');
    l.stopped();
    expect([l.state, l.ready(), l.healthy()]).toEqual(['stopped', false, true]);
  });

  it('fails once: later failures and a stop keep the state failed (retries stay given up, /healthz says so)', () => {
    const l = new PipelineLifecycle();
    l.starting();
    l.joined();
    expect(l.fail()).toBe(true);
    expect([l.state, l.ready(), l.healthy(), l.gaveUp, l.takesRecords]).toEqual(['failed', false, false, true, false]);
    expect(l.fail()).toBe(false);
    expect(l.crash()).toBe(false);
    l.stopping();
    l.stopped();
    expect([l.state, l.gaveUp, l.healthy()]).toEqual(['failed', true, false]);
  });

  it('a crashed consumer makes it unhealthy without giving up retries; a failure while stopping is not a failure', () => {
    const crashed = new PipelineLifecycle();
    crashed.starting();
    expect(crashed.crash()).toBe(true);
    expect([crashed.state, crashed.healthy(), crashed.gaveUp, crashed.ready()]).toEqual(['crashed', false, false, false]);
    const stopping = new PipelineLifecycle();
    stopping.starting();
    stopping.joined();
    stopping.stopping();
    expect(stopping.fail()).toBe(false);
    expect(stopping.state).toBe('stopping');
  });
});
