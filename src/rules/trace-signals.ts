import { hash } from 'node:crypto';
import { SIGNAL_TIME_MAX_MS, type Signal } from '../model/signal.js';
import type { RuleHit } from './evaluate.js';
import type { ClosedTrace } from './trace-assembler.js';

/** Longest signal message the signal schema accepts (UTF-16 code units). */
export const SIGNAL_MESSAGE_MAX = 8192;

/**
 * The signal id of a rule hit: a UUID (RFC 9562 version 8 layout: custom bits, here the first
 * 122 bits of a SHA-256) over the tenant, the rule, the trace and the segment number, the latter
 * only from the second segment on (a trace that never reaches max age keeps the id of a
 * whole-trace evaluation). A replay, or a second rule-worker group, derives the same id, so the
 * signal stores take the second copy as a replay. The version nibble 8 keeps it from being the
 * nil or the all-ones UUID, which TigerBeetle reserves.
 */
export function signalId(tenantId: string, ruleId: string, traceId: string, segment: number): string {
  // A JSON array delimits the fields unambiguously whatever a rule id contains.
  const fields = segment > 0 ? [tenantId, ruleId, traceId, segment] : [tenantId, ruleId, traceId];
  const bytes = hash('sha256', `spanledger/signal-id/v1\0${JSON.stringify(fields)}`, 'buffer').subarray(0, 16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x80; // version 8
  bytes[8] = (bytes[8]! & 0x3f) | 0x80; // variant 10 (RFC 9562)
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * One signal per rule hit of a closed trace segment. Everything in it follows from the
 * segment's spans and records: no wall clock and no close reason (two groups may close the same
 * trace for different reasons, e.g. `idle` and `idle_wall`, and must still write the same
 * signal). `source` names the spans partition, for the offsets in the metadata.
 */
export function signalsOf(closed: ClosedTrace, source: { topic: string; partition: number }): Signal[] {
  const timestamp = new Date(clampTime(closed.lastTimestamp)).toISOString();
  const sourceMetadata = { topic: source.topic, partition: source.partition, firstOffset: String(closed.firstOffset), lastOffset: String(closed.lastOffset) };
  return closed.hits.map((hit) => {
    const ruleId = wellFormed(hit.ruleId);
    return {
      id: signalId(closed.tenantId, ruleId, closed.traceId, closed.segment),
      tenantId: closed.tenantId,
      ruleId,
      traceId: closed.traceId,
      timestamp,
      severity: hit.severity,
      message: capMessage(wellFormed(hit.message)),
      metadata: { ruleName: wellFormed(hit.ruleName), segment: closed.segment, spanCount: closed.spanCount, evidence: evidenceOf(hit), source: sourceMetadata },
    };
  });
}

/** Into the range both signal stores hold (parseSignalTime): 1970-01-01 to 9999-12-31, whole ms. */
function clampTime(ms: number): number {
  if (!Number.isFinite(ms) || ms < 0) return 0;
  return Math.min(Math.floor(ms), SIGNAL_TIME_MAX_MS);
}

/** Rule texts come from tenants' files: a lone surrogate would get the signal dead-lettered. */
const LONE_SURROGATE = /\p{Cs}/gu;
function wellFormed(text: string): string {
  return text.replace(LONE_SURROGATE, '\uFFFD');
}

function capMessage(message: string): string {
  if (message.length <= SIGNAL_MESSAGE_MAX) return message;
  const cut = message.slice(0, SIGNAL_MESSAGE_MAX);
  // Never end on half of a surrogate pair.
  return /[\uD800-\uDBFF]$/.test(cut) ? cut.slice(0, -1) : cut;
}

function evidenceOf(hit: RuleHit): RuleHit['evidence'] {
  const { evidence } = hit;
  const matches: Record<string, number> = {};
  for (const [check, count] of Object.entries(evidence.matches)) matches[wellFormed(check)] = count;
  return { ...evidence, matches, missingAlways: evidence.missingAlways.map(wellFormed), presentNever: evidence.presentNever.map(wellFormed) };
}
