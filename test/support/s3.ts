/**
 * A real S3-compatible server for the archive's integration tests: versitygw (posix backend)
 * started by scripts/s3.sh on a free loopback port with its own data folder, one per test file.
 * The binary is found or built by the script (VERSITYGW_BIN, .cache/versitygw, the GOPATH's
 * bin, else `go install`, ~6 minutes once per clone); without it and without Go the tests skip
 * with one line (S3_SKIP_REASON), like the TigerBeetle tests.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './net.js';

const run = promisify(execFile);
/** The repository (not from harness.ts: this module also runs in vitest's globalSetup, where vitest cannot be imported). */
const ROOT = path.resolve(import.meta.dirname, '../..');
const SCRIPT = path.join(ROOT, 'scripts', 's3.sh');
/** scripts/s3.sh's exit code when no binary can be had. */
const SKIP_EXIT = 3;

export const S3_SKIP_REASON = 'archive (S3) tests skipped: no versitygw binary and no Go toolchain to build one (set VERSITYGW_BIN or install Go; see scripts/s3.sh)';

export interface S3Server {
  endpoint: string;
  bucket: string;
  /** The posix backend's root: <dataDir>/<bucket>/<key> are the objects. */
  dataDir: string;
  /** Environment for a worker or a CLI command that uses this server (ARCHIVE_*, AWS_*). */
  env: Record<string, string>;
  /** Stops the server (SIGTERM, then SIGKILL); its objects stay for `start`. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data. */
  start(): Promise<void>;
  /** Stops it and removes its data. */
  destroy(): Promise<void>;
}

/** Why the archive tests cannot run, or null when a versitygw binary is at hand or can be built. */
export async function s3SkipReason(): Promise<string | null> {
  try {
    await run('bash', [SCRIPT, 'bin'], { cwd: ROOT, timeout: 20 * 60_000 });
    return null;
  } catch (e) {
    if ((e as { code?: number }).code === SKIP_EXIT) return S3_SKIP_REASON;
    throw e;
  }
}

export async function startS3(bucket = 'spanledger'): Promise<S3Server> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spanledger-s3-'));
  const port = await freePort();
  const env = { ...process.env, S3_DIR: dir, S3_PORT: String(port), ARCHIVE_BUCKET: bucket, AWS_ACCESS_KEY_ID: 'spanledger-test', AWS_SECRET_ACCESS_KEY: 'spanledger-test-secret', AWS_REGION: 'us-east-1' };
  const script = async (command: string) => {
    await run('bash', [SCRIPT, command], { cwd: ROOT, env, timeout: 60_000 });
  };
  await script('up');
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    bucket,
    dataDir: path.join(dir, 'data'),
    env: { ARCHIVE_ENDPOINT: endpoint, ARCHIVE_BUCKET: bucket, ARCHIVE_FORCE_PATH_STYLE: 'true', AWS_ACCESS_KEY_ID: env.AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: env.AWS_SECRET_ACCESS_KEY, AWS_REGION: env.AWS_REGION },
    stop: () => script('down'),
    start: () => script('up'),
    destroy: async () => {
      await script('down');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
