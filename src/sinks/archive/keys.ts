/**
 * Object names of the archive (docs/archive.md). One object holds one tenant's spans of one UTC
 * day from one flush ("cycle") of one partition, and is named after the position of its first
 * span:
 *
 *   <prefix>/tenant=<uuid>/day=<YYYY-MM-DD>/<topic>+<partition>+<offset>[_<index>].parquet
 *
 * A position is (offset, index): the Kafka offset of the span's record and the span's place in
 * that record (0 for a one-span record; an OTLP request holds many). `_<index>` is written only
 * when the index is not 0, as the span log names its segments. Positions order by offset, then
 * index. Names are derived from Kafka positions only, never from a clock or a worker: a replay of
 * the same records from the same committed offset names the same objects.
 */
import { CANONICAL_UUID } from '../../model/tenant.js';

export interface ArchivePosition {
  readonly offset: bigint;
  readonly index: number;
}

export interface ArchiveObjectName {
  readonly tenantId: string;
  readonly day: string;
  readonly topic: string;
  readonly partition: number;
  /** The object's first span. */
  readonly first: ArchivePosition;
}

/** `<offset>` or `<offset>_<index>`. */
export function positionText(position: ArchivePosition): string {
  return position.index === 0 ? position.offset.toString() : `${position.offset}_${position.index}`;
}

export function comparePositions(a: ArchivePosition, b: ArchivePosition): number {
  if (a.offset !== b.offset) return a.offset < b.offset ? -1 : 1;
  return a.index - b.index;
}

/** The folder of one tenant-day under the prefix (no trailing slash). */
export function tenantDayPrefix(prefix: string, tenantId: string, day: string): string {
  return `${prefix === '' ? '' : `${prefix}/`}tenant=${tenantId}/day=${day}`;
}

export function objectKey(prefix: string, name: ArchiveObjectName): string {
  return `${tenantDayPrefix(prefix, name.tenantId, name.day)}/${name.topic}+${name.partition}+${positionText(name.first)}.parquet`;
}

const TENANT = CANONICAL_UUID.source.replace(/^\^|\$$/g, '');
const KEY = new RegExp(`(?:^|/)tenant=(${TENANT})/day=(\\d{4}-\\d{2}-\\d{2})/([a-zA-Z0-9._-]{1,249})\\+(\\d+)\\+(\\d+)(?:_(\\d+))?\\.parquet$`);

/** The parts of an archive object's key (under any prefix), or undefined for any other key. */
export function parseObjectKey(key: string): ArchiveObjectName | undefined {
  const m = KEY.exec(key);
  if (m === null) return undefined;
  return { tenantId: m[1]!, day: m[2]!, topic: m[3]!, partition: Number(m[4]), first: { offset: BigInt(m[5]!), index: m[6] === undefined ? 0 : Number(m[6]) } };
}

/** ARCHIVE_PREFIX: empty, or path segments of safe characters without leading or trailing '/'. */
export const PREFIX_PATTERN = /^$|^[A-Za-z0-9._=-]+(?:\/[A-Za-z0-9._=-]+)*$/;
