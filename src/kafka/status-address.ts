/**
 * Workers advertise where their /status is in their Kafka client id: `<KAFKA_CLIENT_ID>@<host:port>`
 * (e.g. `spanledger@worker-3:9464`). DescribeGroups returns every member's client id, so the CLI
 * finds each member's /status without any other registry; see docs/status.md for why not userData.
 */

import { STATUS_ADDRESS_PATTERN } from '../config/settings.js';

export function advertisingClientId(clientId: string, address: string): string {
  return `${clientId}@${address}`;
}

/** The /status address a member's client id carries, or undefined (not a spanledger worker, or one from before status). */
export function advertisedAddress(clientId: string): string | undefined {
  const at = clientId.lastIndexOf('@');
  if (at < 0) return undefined;
  const address = clientId.slice(at + 1);
  return STATUS_ADDRESS_PATTERN.test(address) ? address : undefined;
}
