/**
 * Pure derivations from a signal to TigerBeetle's records: account and transfer ids, field
 * mapping, the accounts of a tenant and the transfer of a signal. No client, no I/O: documented in
 * README.md beside this file; changing any of them breaks idempotency (replays would count twice,
 * existing accounts would be orphaned).
 */
import { createHash, hash } from 'node:crypto';
import { AccountFlags, TransferFlags, type Account, type Transfer } from 'tigerbeetle-node';
import { InvariantError, RecordRejectedError } from '../../errors.js';
import { SEVERITIES, parseSignalTime, signalTime, type Severity, type Signal } from '../../model/signal.js';
import { isCanonicalUuid } from '../../model/tenant.js';

export const U128_MAX = (1n << 128n) - 1n;

/** Transfer `code` (and nothing else) carries the severity: TigerBeetle requires code != 0. */
export const SEVERITY_CODES: Readonly<Record<Severity, number>> = {
  LOW: 1,
  MEDIUM: 2,
  HIGH: 3,
  CRITICAL: 4,
};

/** Account `code`s: which of a tenant's two accounts this is. */
export const ACCOUNT_CODES = {
  tenant: 1,
  signals: 2,
} as const;
export type AccountRole = keyof typeof ACCOUNT_CODES;

/** A canonical UUID's 128 bits as an unsigned bigint (big-endian, i.e. the hex digits in order). */
export function uuidToU128(uuid: string): bigint {
  return BigInt(`0x${uuid.replace(/-/g, '')}`);
}

const TRANSFER_ID_DOMAIN = 'spanledger/tigerbeetle/transfer/v2\0';
/** transferIdFor's input (domain, tenant bytes, signal bytes, counter byte), reused: ~2x faster. */
const transferIdInput = Buffer.alloc(TRANSFER_ID_DOMAIN.length + 33);
transferIdInput.write(TRANSFER_ID_DOMAIN, 0, 'latin1');
const transferIdInputNoCounter = transferIdInput.subarray(0, TRANSFER_ID_DOMAIN.length + 32);

/**
 * Transfer id = the first 16 bytes (big-endian) of
 * SHA-256("spanledger/tigerbeetle/transfer/v2" NUL, tenant UUID's 16 bytes, signal UUID's 16 bytes),
 * with one counter byte (1, 2, …) appended only if that is 0 or 2^128-1 (ids TigerBeetle forbids).
 * Scoped by tenant, so one tenant's signal ids cannot take another tenant's transfer ids; the
 * same (tenant, signal) always maps to the same id, so a replay answers `exists`. A hash, not a
 * cheaper keyed permutation: the inputs are public, so only a preimage-resistant function keeps
 * a tenant from choosing a signal id that lands on another tenant's transfer id.
 */
export function transferIdFor(tenantId: string, signalId: string): bigint {
  const at = TRANSFER_ID_DOMAIN.length;
  if (!isCanonicalUuid(tenantId) || !isCanonicalUuid(signalId)) {
    // Callers check both first (the decoder, signalToTransfer): a caller's bug.
    throw new InvariantError(`transferIdFor: ${JSON.stringify(tenantId)} and ${JSON.stringify(signalId)} must be canonical UUIDs`);
  }
  transferIdInput.write(tenantId.replace(/-/g, ''), at, 'hex');
  transferIdInput.write(signalId.replace(/-/g, ''), at + 16, 'hex');
  for (let counter = 0; ; counter += 1) {
    transferIdInput[at + 32] = counter;
    const digest = hash('sha256', counter === 0 ? transferIdInputNoCounter : transferIdInput, 'hex');
    const id = BigInt(`0x${digest.slice(0, 32)}`);
    if (id !== 0n && id !== U128_MAX) return id;
  }
}

/**
 * Account id = the first 16 bytes (big-endian) of
 * SHA-256("spanledger/tigerbeetle/account/v1" NUL tenantId NUL role [NUL counter]),
 * where the counter is only appended (1, 2, …) in the astronomically unlikely case that the
 * value is 0 or 2^128-1, which TigerBeetle forbids as ids.
 */
export function accountIdFor(tenantId: string, role: AccountRole): bigint {
  for (let counter = 0; ; counter += 1) {
    const hash = createHash('sha256');
    hash.update(`spanledger/tigerbeetle/account/v1\0${tenantId}\0${role}`);
    if (counter > 0) hash.update(`\0${counter}`);
    const id = BigInt(`0x${hash.digest('hex').slice(0, 32)}`);
    if (id !== 0n && id !== U128_MAX) return id;
  }
}

/** Transfer user_data_32 = the first 4 bytes (big-endian) of SHA-256(ruleId): a rule tag. */
export function ruleTag(ruleId: string): number {
  let tag = ruleTags.get(ruleId);
  if (tag === undefined) {
    tag = createHash('sha256').update(ruleId).digest().readUInt32BE(0);
    if (ruleTags.size >= 10_000) ruleTags.clear(); // rule ids are few; bound the cache anyway
    ruleTags.set(ruleId, tag);
  }
  return tag;
}
const ruleTags = new Map<string, number>();

/**
 * Transfer user_data_64 = signal time in whole milliseconds since the Unix epoch (UTC), read by
 * the same strict parser as the decoder's, so the ledger and DuckDB hold the same instant.
 */
export function signalTimeMs(timestamp: string): bigint | null {
  const time = parseSignalTime(timestamp);
  return time.ok ? BigInt(time.epochMs) : null;
}

export function tenantAccount(tenantId: string, role: AccountRole, ledger: number): Account {
  return {
    id: accountIdFor(tenantId, role),
    debits_pending: 0n,
    debits_posted: 0n,
    credits_pending: 0n,
    credits_posted: 0n,
    user_data_128: uuidToU128(tenantId),
    user_data_64: 0n,
    user_data_32: 0,
    reserved: 0,
    ledger,
    code: ACCOUNT_CODES[role],
    // No debits_must_not_exceed_credits / credits_must_not_exceed_debits: balances never fail.
    flags: AccountFlags.none,
    timestamp: 0n,
  };
}

/** The transfer for one signal, or why the signal cannot become one. */
export function signalToTransfer(
  signal: Signal,
  tenantId: string,
  ledger: number,
  accounts: { debit: bigint; credit: bigint } = {
    debit: accountIdFor(tenantId, 'tenant'),
    credit: accountIdFor(tenantId, 'signals'),
  },
): Transfer | RecordRejectedError {
  if (signal.tenantId !== tenantId) {
    return new RecordRejectedError(
      'TenantMismatch',
      `signal ${signal.id} has tenantId ${signal.tenantId} but was written for tenant ${tenantId}`,
    );
  }
  if (!isCanonicalUuid(signal.id)) {
    return new RecordRejectedError('SchemaViolation', `signal id ${JSON.stringify(signal.id)} is not a canonical UUID`);
  }
  if (!/^[0-9a-f]{32}$/.test(signal.traceId)) {
    return new RecordRejectedError('SchemaViolation', `signal ${signal.id}: traceId is not 32 lower-case hex characters`);
  }
  const code = (SEVERITY_CODES as Record<string, number | undefined>)[signal.severity];
  if (code === undefined) {
    return new RecordRejectedError(
      'SchemaViolation',
      `signal ${signal.id}: severity ${JSON.stringify(signal.severity)} is not one of ${SEVERITIES.join(', ')}`,
    );
  }
  const time = signalTime(signal);
  const timeMs = time.ok ? BigInt(time.epochMs) : null;
  if (timeMs === null) {
    return new RecordRejectedError(
      'InvalidTimestamp',
      `signal ${signal.id}: timestamp ${JSON.stringify(signal.timestamp)} is not a valid time in 1970-01-01T00:00:00Z..9999-12-31T23:59:59.999Z`,
    );
  }
  return {
    id: transferIdFor(tenantId, signal.id),
    debit_account_id: accounts.debit,
    credit_account_id: accounts.credit,
    amount: 1n,
    pending_id: 0n,
    user_data_128: BigInt(`0x${signal.traceId}`),
    user_data_64: timeMs,
    user_data_32: ruleTag(signal.ruleId),
    timeout: 0,
    ledger,
    code,
    flags: TransferFlags.none,
    timestamp: 0n,
  };
}
