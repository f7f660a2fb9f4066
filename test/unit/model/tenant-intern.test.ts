import { describe, expect, it } from 'vitest';
import { internTenantId } from '../../../src/model/tenant.js';
import { tenantIdFor } from '../../../src/model/generate.js';

describe('internTenantId', () => {
  it('answers the same tenant id, cut from a record or not, past its bound', () => {
    const text = `{"tenantId":"${tenantIdFor(9)}","x":1}`;
    const cut = text.slice(13, 49);
    expect(internTenantId(cut)).toBe(tenantIdFor(9));
    expect(internTenantId(tenantIdFor(9))).toBe(cut);
    for (let i = 0; i < 10_050; i += 1) expect(internTenantId(tenantIdFor(i))).toBe(tenantIdFor(i));
    expect(internTenantId(cut)).toBe(tenantIdFor(9));
  });
});
