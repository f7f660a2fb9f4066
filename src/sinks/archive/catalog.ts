import fs from 'node:fs';
import path from 'node:path';
import { parseObjectKey, tenantDayPrefix, type ArchiveObjectName } from './keys.js';
import type { ObjectStore, StoredObject } from './object-store.js';

/** An archive object: where it is, what its name says, and its size. */
export interface ArchiveObject extends ArchiveObjectName {
  key: string;
  size: number;
  etag: string;
}

export interface ArchiveFilter {
  tenantId?: string;
  day?: string;
  topic?: string;
}

/** The narrowest listing prefix for a filter: a tenant's folder, or a tenant-day's. */
function listPrefix(prefix: string, filter: ArchiveFilter): string {
  const root = prefix === '' ? '' : `${prefix}/`;
  if (filter.tenantId === undefined) return `${root}tenant=`;
  if (filter.day === undefined) return `${root}tenant=${filter.tenantId}/`;
  return `${tenantDayPrefix(prefix, filter.tenantId, filter.day)}/`;
}

/** The archive's objects under `prefix` that match `filter`, in key order (other keys are skipped). */
export async function listArchive(store: ObjectStore, prefix: string, filter: ArchiveFilter = {}): Promise<ArchiveObject[]> {
  const out: ArchiveObject[] = [];
  for await (const o of store.list(listPrefix(prefix, filter))) {
    const name = archiveName(prefix, o);
    if (name === undefined) continue;
    if (filter.tenantId !== undefined && name.tenantId !== filter.tenantId) continue;
    if (filter.day !== undefined && name.day !== filter.day) continue;
    if (filter.topic !== undefined && name.topic !== filter.topic) continue;
    out.push({ ...name, key: o.key, size: o.size, etag: o.etag });
  }
  return out;
}

function archiveName(prefix: string, o: StoredObject): ArchiveObjectName | undefined {
  const under = prefix === '' ? o.key : o.key.startsWith(`${prefix}/`) ? o.key.slice(prefix.length + 1) : undefined;
  if (under === undefined || !under.startsWith('tenant=')) return undefined;
  return parseObjectKey(under);
}

/** Runs `fn` over `items` with at most `concurrency` at a time; results in input order. */
export async function mapConcurrently<T, R>(items: readonly T[], concurrency: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  });
  await Promise.all(lanes);
  return out;
}

/**
 * Local copies of archive objects for DuckDB to read, keyed by bucket, key and ETag: an object a
 * replay replaced is downloaded again, an unchanged one never twice.
 */
export class ObjectCache {
  constructor(
    private readonly store: ObjectStore,
    private readonly dir: string,
  ) {}

  fileOf(o: ArchiveObject): string {
    return path.join(this.dir, this.store.bucket, `${o.key}.${o.etag.replace(/[^A-Za-z0-9-]/g, '_') || 'no-etag'}`);
  }

  /** Local files of `objects` (downloading what is missing), in the same order. */
  async files(objects: readonly ArchiveObject[], onProgress?: (done: number, total: number) => void): Promise<string[]> {
    let done = 0;
    return mapConcurrently(objects, 8, async (o) => {
      const file = this.fileOf(o);
      if (!fs.existsSync(file)) await this.store.download(o.key, file);
      done += 1;
      onProgress?.(done, objects.length);
      return file;
    });
  }
}
