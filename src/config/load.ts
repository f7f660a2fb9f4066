import fs from 'node:fs';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import type { Parsed, Settings } from './settings.js';

/** Where a raw value came from, as commander reports it. */
export type ValueSource = 'cli' | 'env' | 'config' | 'default' | 'implied' | undefined;

export interface RawValues {
  /** Value for a setting key, as a string (CLI flags and env vars are strings). */
  get(key: string): unknown;
  source(key: string): ValueSource;
}

/** Reads an optional JSON config file whose keys are the environment variable names. */
export function readConfigFile(path: string | undefined): Record<string, unknown> {
  if (path === undefined) return {};
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`config file ${path} is not JSON: ${(e as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ConfigError(`config file ${path} must hold a JSON object of SETTING_NAME: value`);
  }
  return json as Record<string, unknown>;
}

/**
 * Resolves a group of settings: flag or env (via `raw`), else the config file, else the default.
 * The first invalid value fails with one clear line naming the variable and the rule it broke.
 */
export function resolveSettings<S extends Settings>(
  settings: S,
  raw: RawValues,
  file: Record<string, unknown>,
): Parsed<S> {
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(settings)) {
    const source = raw.source(key);
    let value = raw.get(key);
    let from = source === 'cli' ? `--${spec.flag}` : spec.env;
    if ((source === 'default' || source === undefined) && spec.env in file) {
      value = String(file[spec.env]);
      from = `${spec.env} (config file)`;
    }
    if (value === undefined) value = spec.default;
    const result = (spec.schema as z.ZodType).safeParse(value);
    if (!result.success) {
      const why = result.error.issues[0]?.message ?? 'invalid';
      throw new ConfigError(`invalid configuration: ${from}=${JSON.stringify(value)}: ${why}`);
    }
    out[key] = result.data;
  }
  for (const spec of Object.values(settings)) {
    const broken = spec.crossCheck?.(out);
    if (broken !== undefined) throw new ConfigError(`invalid configuration: ${broken}`);
  }
  return out as Parsed<S>;
}

/** RawValues straight from an environment (for code paths that have no CLI, e.g. tests). */
export function envValues(settings: Settings, env: NodeJS.ProcessEnv = process.env): RawValues {
  return {
    get: (key) => {
      const spec = settings[key];
      return spec ? env[spec.env] : undefined;
    },
    source: (key) => {
      const spec = settings[key];
      return spec && env[spec.env] !== undefined ? 'env' : 'default';
    },
  };
}
