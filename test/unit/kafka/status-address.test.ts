import { describe, expect, it } from 'vitest';
import { advertisedAddress, advertisingClientId } from '../../../src/kafka/status-address.js';

describe('the /status address in a Kafka client id', () => {
  it('round-trips through the client id, whatever the configured client id holds', () => {
    for (const [clientId, address] of [
      ['spanledger', 'worker-3:9464'],
      ['team@spanledger', '10.0.0.7:41234'],
      ['spanledger', '[fd00::7]:9464'],
    ]) {
      expect(advertisedAddress(advertisingClientId(clientId!, address!))).toBe(address);
    }
  });

  it('finds none in the client id of a member that does not advertise one', () => {
    expect(advertisedAddress('spanledger')).toBeUndefined();
    expect(advertisedAddress('kafkajs')).toBeUndefined();
    expect(advertisedAddress('someone@example.com')).toBeUndefined();
  });
});
