import { isCanonicalUuid } from '../model/tenant.js';

/**
 * What a rule worker stores beside each offset commit of a spans partition, taken from the same
 * synced state (after the signals of every closed trace were acknowledged), so that the next owner
 * of the partition re-reading from the committed offset rebuilds exactly the open traces and
 * skips the spans of traces that were already closed (see PartitionTraces.restore and
 * docs/rule-workers.md, "Checkpoint and recovery").
 */
export interface TraceCheckpoint {
  v: 1;
  /** The offset after the last record applied: re-read records below it are a replay. */
  processedEnd: bigint;
  /** The partition's stream time (largest record timestamp seen); undefined before any record. */
  streamTime: number | undefined;
  /** Every open trace segment, with the position of the span that opened it. */
  open: CheckpointOpenSegment[];
  /**
   * The closed-trace memory, least recently used first: a later span of such a trace is late
   * (closed for good) or continues it as segment `continuesAs` (closed at max age or by the cap).
   */
  closed: CheckpointClosedTrace[];
}

export interface CheckpointOpenSegment {
  tenantId: string;
  traceId: string;
  segment: number;
  firstOffset: bigint;
  firstIndex: number;
}

export interface CheckpointClosedTrace {
  tenantId: string;
  traceId: string;
  /** The segment number the trace's next span opens; undefined: closed for good (idle). */
  continuesAs?: number;
}

/** A stored checkpoint that cannot be used: not one this code wrote, or damaged. */
export class TraceCheckpointError extends Error {
  constructor(message: string) {
    super(`trace checkpoint: ${message}`);
    this.name = 'TraceCheckpointError';
  }
}

/*
 * Encoded form, compact JSON (tenants listed once, entries as tuples):
 *   {"v":1,"end":"1234","time":1764000000000,"tenants":["<uuid>",…],
 *    "open":[[tenant,"<traceId>",segment,"<firstOffset>",firstIndex],…],
 *    "closed":[[tenant,"<traceId>"] | [tenant,"<traceId>",continuesAs],…]}
 * A remembered trace costs about 42 bytes, an open one about 50.
 */
type EncodedOpen = [number, string, number, string, number];
type EncodedClosed = [number, string] | [number, string, number];

export function encodeCheckpoint(checkpoint: TraceCheckpoint): Buffer {
  const tenants: string[] = [];
  const tenantIndex = new Map<string, number>();
  const indexOf = (tenantId: string): number => {
    let i = tenantIndex.get(tenantId);
    if (i === undefined) {
      i = tenants.length;
      tenants.push(tenantId);
      tenantIndex.set(tenantId, i);
    }
    return i;
  };
  const open = checkpoint.open.map((s): EncodedOpen => [indexOf(s.tenantId), s.traceId, s.segment, String(s.firstOffset), s.firstIndex]);
  const closed = checkpoint.closed.map((c): EncodedClosed => (c.continuesAs === undefined ? [indexOf(c.tenantId), c.traceId] : [indexOf(c.tenantId), c.traceId, c.continuesAs]));
  const encoded = { v: checkpoint.v, end: String(checkpoint.processedEnd), time: checkpoint.streamTime ?? null, tenants, open, closed };
  return Buffer.from(JSON.stringify(encoded), 'utf8');
}

/** Reads what encodeCheckpoint wrote; throws TraceCheckpointError naming the first problem. */
export function decodeCheckpoint(bytes: Buffer): TraceCheckpoint {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new TraceCheckpointError(`not JSON (${(e as Error).message})`);
  }
  if (!isObject(json)) throw new TraceCheckpointError('not a JSON object');
  if (json.v !== 1) throw new TraceCheckpointError(`unknown version ${JSON.stringify(json.v)} (this code reads version 1)`);
  const processedEnd = offsetOf(json.end, 'end');
  if (json.time !== null && !Number.isFinite(json.time)) throw new TraceCheckpointError('time: must be a finite number or null');
  const streamTime = json.time === null ? undefined : (json.time as number);
  const tenants = arrayOf(json.tenants, 'tenants');
  tenants.forEach((t, i) => {
    if (!isCanonicalUuid(t)) throw new TraceCheckpointError(`tenants[${i}]: must be a canonical lower-case UUID`);
  });
  if (new Set(tenants).size !== tenants.length) throw new TraceCheckpointError('tenants: listed twice');
  const tenantOf = (value: unknown, path: string): string => {
    if (!Number.isSafeInteger(value) || (value as number) < 0 || (value as number) >= tenants.length) throw new TraceCheckpointError(`${path}: must be an index into tenants`);
    return tenants[value as number] as string;
  };

  const open = arrayOf(json.open, 'open').map((raw, i): CheckpointOpenSegment => {
    const path = `open[${i}]`;
    const tuple = arrayOf(raw, path);
    if (tuple.length !== 5) throw new TraceCheckpointError(`${path}: must be [tenant, traceId, segment, firstOffset, firstIndex]`);
    return {
      tenantId: tenantOf(tuple[0], `${path}[0]`),
      traceId: traceIdOf(tuple[1], `${path}[1]`),
      segment: countOf(tuple[2], `${path}[2]`),
      firstOffset: offsetOf(tuple[3], `${path}[3]`),
      firstIndex: countOf(tuple[4], `${path}[4]`),
    };
  });
  const closed = arrayOf(json.closed, 'closed').map((raw, i): CheckpointClosedTrace => {
    const path = `closed[${i}]`;
    const tuple = arrayOf(raw, path);
    if (tuple.length !== 2 && tuple.length !== 3) throw new TraceCheckpointError(`${path}: must be [tenant, traceId] or [tenant, traceId, continuesAs]`);
    const entry: CheckpointClosedTrace = { tenantId: tenantOf(tuple[0], `${path}[0]`), traceId: traceIdOf(tuple[1], `${path}[1]`) };
    if (tuple.length === 3) entry.continuesAs = countOf(tuple[2], `${path}[2]`);
    return entry;
  });
  const checkpoint: TraceCheckpoint = { v: 1, processedEnd, streamTime, open, closed };
  const problem = checkpointProblem(checkpoint);
  if (problem) throw new TraceCheckpointError(problem);
  return checkpoint;
}

/**
 * Why a checkpoint cannot describe a partition's state: an open segment at or past processedEnd,
 * two open segments at one position or of one trace, a trace both open and remembered as closed.
 */
export function checkpointProblem(checkpoint: TraceCheckpoint): string | undefined {
  const keys = new Set<string>();
  const positions = new Set<string>();
  for (const s of checkpoint.open) {
    const key = `${s.tenantId}/${s.traceId}`;
    if (s.firstOffset >= checkpoint.processedEnd) return `open segment of ${key} starts at offset ${s.firstOffset}, not before end ${checkpoint.processedEnd}`;
    if (keys.has(key)) return `trace ${key} is open twice`;
    const position = `${s.firstOffset}:${s.firstIndex}`;
    if (positions.has(position)) return `two open segments start at offset ${s.firstOffset} index ${s.firstIndex}`;
    keys.add(key);
    positions.add(position);
  }
  const remembered = new Set<string>();
  for (const c of checkpoint.closed) {
    const key = `${c.tenantId}/${c.traceId}`;
    if (keys.has(key)) return `trace ${key} is both open and closed`;
    if (remembered.has(key)) return `trace ${key} is remembered twice`;
    remembered.add(key);
  }
  return undefined;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function arrayOf(value: unknown, path: string): unknown[] {
  if (!Array.isArray(value)) throw new TraceCheckpointError(`${path}: must be an array`);
  return value;
}

function offsetOf(value: unknown, path: string): bigint {
  if (typeof value !== 'string' || !/^(0|[1-9][0-9]{0,18})$/.test(value)) throw new TraceCheckpointError(`${path}: must be an offset as a decimal string`);
  return BigInt(value);
}

function countOf(value: unknown, path: string): number {
  if (!Number.isSafeInteger(value) || (value as number) < 0) throw new TraceCheckpointError(`${path}: must be a non-negative integer`);
  return value as number;
}

function traceIdOf(value: unknown, path: string): string {
  if (typeof value !== 'string' || !/^[0-9a-f]{32}$/.test(value)) throw new TraceCheckpointError(`${path}: must be a trace id (32 lower-case hex characters)`);
  return value;
}
