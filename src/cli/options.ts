import { Option, type Command } from 'commander';
import { readConfigFile, resolveSettings } from '../config/load.js';
import type { Parsed, Settings } from '../config/settings.js';

function attributeName(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** Adds one option per setting: `--flag <value>`, its env var and its default show in --help. */
export function addSettings(cmd: Command, settings: Settings): Command {
  for (const spec of Object.values(settings)) {
    cmd.addOption(new Option(`--${spec.flag} <value>`, spec.description).env(spec.env).default(spec.default));
  }
  return cmd;
}

/** Resolves a group of settings for a parsed command (flag > env > config file > default). */
export function settingsOf<S extends Settings>(cmd: Command, settings: S): Parsed<S> {
  const root = rootOf(cmd);
  const file = readConfigFile(root.opts<{ config?: string }>().config);
  const opts = cmd.opts<Record<string, unknown>>();
  return resolveSettings(
    settings,
    {
      get: (key) => opts[attributeName(settings[key]!.flag)],
      source: (key) => cmd.getOptionValueSource(attributeName(settings[key]!.flag)) as never,
    },
    file,
  );
}

function rootOf(cmd: Command): Command {
  let c = cmd;
  while (c.parent) c = c.parent;
  return c;
}

/** A positive integer option parser with a readable error. */
export function intArg(name: string, min = 0) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer >= ${min} (got ${JSON.stringify(value)})`);
    return n;
  };
}
