import { describe, expect, it } from 'vitest';
import { comparePositions, objectKey, parseObjectKey, positionText } from '../../../../src/sinks/archive/keys.js';
import { classifyS3Error } from '../../../../src/sinks/archive/classify.js';
import { FatalStoreError, RetriableError } from '../../../../src/errors.js';

const TENANT = '6f9619ff-8b86-4011-b42d-00cf4fc964ff';

describe('archive object names', () => {
  it('names an object after its first position, with _<index> only inside a record', () => {
    const name = { tenantId: TENANT, day: '2026-11-23', topic: 'spans', partition: 3, first: { offset: 120n, index: 0 } };
    expect(objectKey('archive/v1', name)).toBe(`archive/v1/tenant=${TENANT}/day=2026-11-23/spans+3+120.parquet`);
    expect(objectKey('', { ...name, first: { offset: 120n, index: 7 } })).toBe(`tenant=${TENANT}/day=2026-11-23/spans+3+120_7.parquet`);
  });

  it('reads back every name it writes, under any prefix, and nothing else', () => {
    for (const first of [{ offset: 0n, index: 0 }, { offset: 9_007_199_254_740_993n, index: 16_777_215 }]) {
      const name = { tenantId: TENANT, day: '2026-01-02', topic: 'a.b_c-d', partition: 11, first };
      expect(parseObjectKey(objectKey('p', name))).toEqual(name);
      expect(parseObjectKey(objectKey('', name))).toEqual(name);
    }
    expect(parseObjectKey(`p/tenant=${TENANT}/day=2026-01-02/spans+1+5.jsonl`)).toBeUndefined();
    expect(parseObjectKey(`p/tenant=${TENANT.toUpperCase()}/day=2026-01-02/spans+1+5.parquet`)).toBeUndefined();
    expect(parseObjectKey(`p/tenant=${TENANT}/day=2026-01-02/spans+x+5.parquet`)).toBeUndefined();
  });

  it('orders positions by offset, then index', () => {
    const sorted = [{ offset: 2n, index: 0 }, { offset: 1n, index: 5 }, { offset: 1n, index: 0 }].sort(comparePositions);
    expect(sorted.map(positionText)).toEqual(['1', '1_5', '2']);
  });
});

describe('the S3 failure rule', () => {
  const s3 = (name: string, status?: number) => Object.assign(new Error(name), { name, $metadata: { httpStatusCode: status } });
  it('retries what the server or the network may recover from', () => {
    for (const e of [s3('SlowDown', 503), s3('InternalError', 500), s3('Whatever', 502), s3('TooMany', 429), Object.assign(new Error('connect'), { code: 'ECONNREFUSED' }), Object.assign(new Error('x'), { cause: Object.assign(new Error('reset'), { code: 'ECONNRESET' }) }), Object.assign(new Error('aborted'), { name: 'AbortError' })]) {
      expect(classifyS3Error('PUT k', e), e.message).toBeInstanceOf(RetriableError);
    }
  });

  it('stops on what only an operator can fix', () => {
    for (const e of [s3('NoSuchBucket', 404), s3('AccessDenied', 403), s3('InvalidAccessKeyId', 403), Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' }), new Error('Region is missing')]) {
      expect(classifyS3Error('PUT k', e), e.message).toBeInstanceOf(FatalStoreError);
    }
  });

  it('leaves an unknown error unknown (bounded retries, then the worker stops)', () => {
    const e = new TypeError('something else');
    expect(classifyS3Error('PUT k', e)).toBe(e);
  });
});
