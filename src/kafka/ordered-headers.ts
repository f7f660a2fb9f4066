import type { IHeaders } from 'kafkajs';
import type { RecordHeaders } from '../model/headers.js';
import type { HeaderList } from './facade.js';

/**
 * Where our kafkajs patch (patches/kafkajs+*.patch) keeps a record's headers in wire order, and
 * where it reads them from when producing: repeated keys, their order and null values survive.
 */
export const ORDERED_HEADERS = Symbol.for('kafkajs.headers.ordered');
export type { HeaderList };

/** A record's headers in wire order (from the patched decoder, or rebuilt from the object). */
export function orderedHeaders(headers: RecordHeaders): HeaderList {
  const ordered = (headers as { [ORDERED_HEADERS]?: HeaderList })[ORDERED_HEADERS];
  if (Array.isArray(ordered)) return ordered;
  const list: HeaderList = [];
  for (const [key, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) list.push([key, v]);
  }
  return list;
}

/** Headers for kafkajs that it writes exactly in this order. */
export function headersInOrder(list: HeaderList): IHeaders {
  const headers: IHeaders = {};
  Object.defineProperty(headers, ORDERED_HEADERS, { value: list, enumerable: false });
  return headers;
}
