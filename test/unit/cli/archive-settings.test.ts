import { describe, expect, it } from 'vitest';
import { Command } from 'commander';
import { addSettings } from '../../../src/cli/options.js';
import { envValues, resolveSettings } from '../../../src/config/load.js';
import { archiveSettings, archiveWorkerConfig, archiveWorkerSettings } from '../../../src/config/settings.js';
import { ConfigError } from '../../../src/errors.js';

const resolve = (env: Record<string, string>) => ({
  archive: resolveSettings(archiveSettings, envValues(archiveSettings, env), {}),
  worker: resolveSettings(archiveWorkerSettings, envValues(archiveWorkerSettings, env), {}),
});

describe('archive worker settings', () => {
  it('default to the spanledger bucket under spans/, cycles of 100000 spans, 8 MiB or 60 s, in a 64 MiB budget', () => {
    const { archive, worker } = resolve({});
    expect(archive).toMatchObject({ group: 'spanledger-archive', dlqTopic: 'spans.archive.dlq', endpoint: '', bucket: 'spanledger', prefix: 'spans', forcePathStyle: false, cycleMaxRecords: 100_000, cycleMaxBytes: 8 * 2 ** 20, cycleMaxAgeMs: 60_000, partSizeBytes: 8 * 2 ** 20 });
    expect(worker.maxInFlightBytes).toBe(64 * 2 ** 20);
    expect(worker).not.toHaveProperty('batchMaxRecords');
  });

  it('make the cycle bounds the batch limits, and never flush only because a partition caught up', () => {
    const { archive, worker } = resolve({ ARCHIVE_CYCLE_MAX_RECORDS: '500', ARCHIVE_CYCLE_MAX_BYTES: '1048576', ARCHIVE_CYCLE_MAX_AGE_MS: '300' });
    expect(archiveWorkerConfig(worker, archive)).toMatchObject({ batchMaxRecords: 500, batchMaxBytes: 1_048_576, batchMaxAgeMs: 300, flushWhenCaughtUp: false });
  });

  it('refuse a cycle larger than the in-flight budget with one line', () => {
    const { archive, worker } = resolve({ ARCHIVE_CYCLE_MAX_BYTES: String(128 * 2 ** 20) });
    expect(() => archiveWorkerConfig(worker, archive)).toThrow(ConfigError);
    expect(() => archiveWorkerConfig(worker, archive)).toThrow(/^invalid configuration: ARCHIVE_CYCLE_MAX_BYTES=134217728 must be at most MAX_IN_FLIGHT_BYTES=67108864/);
  });

  it.each([
    ['ARCHIVE_PREFIX', '/spans'],
    ['ARCHIVE_PREFIX', 'spans/'],
    ['ARCHIVE_PREFIX', 'a//b'],
    ['ARCHIVE_BUCKET', 'My_Bucket'],
    ['ARCHIVE_ENDPOINT', 'ftp://s3.local'],
    ['ARCHIVE_FORCE_PATH_STYLE', 'yes'],
    ['ARCHIVE_PART_SIZE_BYTES', '1048576'],
    ['ARCHIVE_CYCLE_MAX_AGE_MS', '0'],
  ])('refuse %s=%s with a line naming it', (name, value) => {
    expect(() => resolve({ [name]: value })).toThrow(new RegExp(`^invalid configuration: ${name}=${JSON.stringify(value).replace(/[/.]/g, '\\$&')}: `));
  });

  it('accept a nested prefix, an empty one, and an S3-compatible endpoint with path-style addressing', () => {
    expect(resolve({ ARCHIVE_PREFIX: 'env/prod/spans', ARCHIVE_ENDPOINT: 'http://127.0.0.1:7070', ARCHIVE_FORCE_PATH_STYLE: 'true' }).archive).toMatchObject({ prefix: 'env/prod/spans', endpoint: 'http://127.0.0.1:7070', forcePathStyle: true });
    expect(resolve({ ARCHIVE_PREFIX: '' }).archive.prefix).toBe('');
  });

  it('show in `worker archive --help` with their defaults, without the batch settings the cycle bounds replace', () => {
    // As main.ts builds `worker archive`: its own settings, then the worker table without the batch settings.
    const help = addSettings(addSettings(new Command('archive'), archiveSettings), archiveWorkerSettings).helpInformation().replace(/\s+/g, ' ');
    expect(help).toMatch(/--bucket <value> [^"]*\(default: "spanledger", env: ARCHIVE_BUCKET\)/);
    expect(help).toMatch(/--cycle-max-age-ms <value> [^"]*\(default: "60000", env: ARCHIVE_CYCLE_MAX_AGE_MS\)/);
    expect(help).toMatch(/--max-in-flight-bytes <value> [^"]*\(default: "67108864", env: MAX_IN_FLIGHT_BYTES\)/);
    expect(help).not.toContain('BATCH_MAX_RECORDS');
  });
});
