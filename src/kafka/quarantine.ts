import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { DeadLetter } from '../pipeline/consumer-port.js';
import { orderedHeaders } from './ordered-headers.js';

/** One quarantined dead letter: everything needed to replay it, bytes as base64. */
export interface QuarantineEntry {
  quarantinedAt: string;
  /** Why the dead-letter topic would not take it. */
  refusal: string;
  dlqTopic: string;
  topic: string;
  partition: number;
  offset: string;
  timestamp: string;
  stage: string;
  errorClass: string;
  message: string;
  key: string | null;
  value: string | null;
  headers: Array<[string, string | null]>;
}

/**
 * The last resort for a dead letter the dead-letter topic refuses for good (larger than its
 * max.message.bytes, not authorized, topic gone): it is appended to a JSON-lines file under
 * QUARANTINE_DIR and fsynced, so the source offset can be committed without losing it and
 * without blocking the partition behind a retry that can never succeed.
 *
 *   <QUARANTINE_DIR>/<dlqTopic>/<topic>+<partition>.jsonl
 *
 * A partition is written by its owner only (one writer at a time, appends of whole lines).
 */
export class Quarantine {
  private count = 0;
  private lastRefusal: string | undefined;

  constructor(
    private readonly dir: string,
    private readonly onQuarantined: (letters: DeadLetter[], refusal: string) => void = () => {},
  ) {}

  /** Dead letters quarantined by this process since start (for /readyz). */
  get quarantined(): number {
    return this.count;
  }

  /** One line for /readyz, or undefined when nothing was quarantined. */
  detail(): string | undefined {
    if (this.count === 0) return undefined;
    return `${this.count} dead letter(s) quarantined under ${path.resolve(this.dir)} (last refusal: ${this.lastRefusal})`;
  }

  async add(letters: DeadLetter[], dlqTopic: string, refusal: string): Promise<void> {
    if (letters.length === 0) return;
    const at = new Date().toISOString();
    const folder = path.join(this.dir, safeName(dlqTopic));
    const created = await fsp.mkdir(folder, { recursive: true });
    const byFile = new Map<string, string[]>();
    for (const l of letters) {
      const file = path.join(folder, `${safeName(l.topic)}+${l.partition}.jsonl`);
      const lines = byFile.get(file) ?? [];
      lines.push(`${JSON.stringify(entry(l, dlqTopic, refusal, at))}\n`);
      byFile.set(file, lines);
    }
    for (const [file, lines] of byFile) {
      const handle = await fsp.open(file, 'a');
      try {
        await handle.writeFile(lines.join(''));
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
    // A new file's (and folder's) directory entry must be durable too before the commit.
    await fsyncDir(folder);
    if (created !== undefined) await fsyncDir(path.dirname(folder));
    this.count += letters.length;
    this.lastRefusal = refusal;
    this.onQuarantined(letters, refusal);
  }
}

function entry(l: DeadLetter, dlqTopic: string, refusal: string, at: string): QuarantineEntry {
  const b64 = (v: Buffer | string | null) => (v === null ? null : (typeof v === 'string' ? Buffer.from(v) : v).toString('base64'));
  return {
    quarantinedAt: at,
    refusal,
    dlqTopic,
    topic: l.topic,
    partition: l.partition,
    offset: l.source.offset.toString(),
    timestamp: l.source.timestamp,
    stage: l.stage,
    errorClass: l.error.errorClass,
    message: l.error.message,
    key: b64(l.source.key),
    value: b64(l.source.value),
    headers: orderedHeaders(l.source.headers).map(([k, v]) => [k, b64(v)]),
  };
}

/** Topic names are [a-zA-Z0-9._-]; this keeps a path component even for one that is not. */
function safeName(name: string): string {
  return name.replace(/[^a-zA-Z0-9._-]/g, '_').replace(/^\.+$/, '_');
}

async function fsyncDir(dir: string): Promise<void> {
  const fd = await fsp.open(dir, fs.constants.O_RDONLY);
  try {
    await fd.sync();
  } finally {
    await fd.close();
  }
}
