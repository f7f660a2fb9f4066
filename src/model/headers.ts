/**
 * Kafka record headers as kafkajs delivers them: a value is bytes or null (Kafka allows null
 * header values), a key that appears more than once becomes an array in wire order.
 */
export type HeaderValue = Buffer | string | null;
export type RecordHeaders = Record<string, HeaderValue | HeaderValue[] | undefined>;

/** Every value of a header, in wire order (none when the key is absent). */
export function headerValues(headers: RecordHeaders | undefined, name: string): HeaderValue[] {
  const raw = headers === undefined || !Object.prototype.hasOwnProperty.call(headers, name) ? undefined : headers[name];
  if (raw === undefined) return [];
  return Array.isArray(raw) ? raw : [raw];
}

/**
 * Bytes a record holds in memory beyond its value: key, header keys and values, and a fixed
 * allowance for the objects around them. The in-flight budget counts these too, so that records
 * with null values and many headers cannot grow memory past MAX_IN_FLIGHT_BYTES.
 */
export const RECORD_OVERHEAD_BYTES = 128;
export const HEADER_OVERHEAD_BYTES = 48;

export function recordFootprint(message: { key: Buffer | null; value: Buffer | null; headers?: RecordHeaders }): number {
  let bytes = RECORD_OVERHEAD_BYTES + (message.key?.length ?? 0) + (message.value?.length ?? 0);
  const headers = message.headers;
  if (headers !== undefined) {
    for (const name in headers) {
      for (const v of headerValues(headers, name)) bytes += HEADER_OVERHEAD_BYTES + name.length + (v === null ? 0 : v.length);
    }
  }
  return bytes;
}
