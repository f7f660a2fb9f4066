import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { addSettings, settingsOf } from '../../../src/cli/options.js';
import { envValues, resolveSettings } from '../../../src/config/load.js';
import { signalWorkerSettings, workerSettings, workerSettingsByRole, type Settings } from '../../../src/config/settings.js';
import { ConfigError } from '../../../src/errors.js';

/** The worker settings each role resolves at start (`spanledger worker <role>`), and the shared table. */
const roles: Record<string, Settings> = { ...workerSettingsByRole, 'signal (signalWorkerSettings)': signalWorkerSettings, 'shared table': workerSettings };

const INVERTED = { BACKPRESSURE_RESUME_FRACTION: '0.9', BACKPRESSURE_PAUSE_FRACTION: '0.5' };
const ONE_LINE = /^invalid configuration: BACKPRESSURE_RESUME_FRACTION=0.9 must be below BACKPRESSURE_PAUSE_FRACTION=0.5$/;

/** Resolves a role's worker settings the way `spanledger worker <role>` does: flags, env, defaults. */
function startWith(settings: Settings, env: Record<string, string>): unknown {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    const cmd = addSettings(new Command('worker').exitOverride(), settings);
    cmd.parse([], { from: 'user' });
    return settingsOf(cmd, settings);
  } finally {
    for (const key of Object.keys(env)) delete process.env[key];
    Object.assign(process.env, saved);
  }
}

describe.each(Object.entries(roles))('%s workers', (_role, settings) => {
  it('refuse inverted backpressure marks at start with one clear line', () => {
    let error: unknown;
    try {
      startWith(settings, INVERTED);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(ONE_LINE);
    expect(() => resolveSettings(settings, envValues(settings, INVERTED), {})).toThrow(ONE_LINE);
  });

  it('start with marks in order', () => {
    expect(startWith(settings, { BACKPRESSURE_RESUME_FRACTION: '0.4', BACKPRESSURE_PAUSE_FRACTION: '0.8' })).toMatchObject({ backpressureResumeFraction: 0.4, backpressurePauseFraction: 0.8 });
  });
});

describe('per-role defaults', () => {
  it('live in the settings table: signal workers batch 10000 records in a 64 MiB budget, the others 1000 in 16 MiB', () => {
    expect(workerSettings.batchMaxRecords.roleDefaults).toEqual({ signals: '10000' });
    expect(workerSettings.maxInFlightBytes.roleDefaults).toEqual({ signals: String(64 * 2 ** 20) });
    for (const role of ['spans', 'rules'] as const) {
      expect(resolveSettings(workerSettingsByRole[role], envValues(workerSettingsByRole[role], {}), {})).toMatchObject({ batchMaxRecords: 1000, maxInFlightBytes: 16 * 2 ** 20 });
    }
    expect(resolveSettings(workerSettingsByRole.signals, envValues(workerSettingsByRole.signals, {}), {})).toMatchObject({ batchMaxRecords: 10_000, maxInFlightBytes: 64 * 2 ** 20 });
  });

  it('show in each role\'s --help', () => {
    const help = addSettings(new Command('signals'), workerSettingsByRole.signals).helpInformation().replace(/\s+/g, ' ');
    expect(help).toMatch(/--batch-max-records <value> [^"]*\(default: "10000", env: BATCH_MAX_RECORDS\)/);
  });
});
