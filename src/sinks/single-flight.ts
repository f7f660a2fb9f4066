/**
 * One call per key in flight: a caller that asks for a key already being worked on shares that
 * call's promise instead of starting a second one (a tenant's DuckDB file opened once, its
 * TigerBeetle accounts created once); the key is free again once the call settles.
 */
export function singleFlight<K, V>(inFlight: Map<K, Promise<V>>, key: K, call: () => Promise<V>): Promise<V> {
  let pending = inFlight.get(key);
  if (pending === undefined) {
    pending = call().finally(() => inFlight.delete(key));
    inFlight.set(key, pending);
  }
  return pending;
}
