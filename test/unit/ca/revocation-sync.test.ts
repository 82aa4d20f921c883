import { describe, expect, it } from 'vitest';
import { RevocationService, type RevocationDeps } from '../../../ca/revocation/service.js';
import type { AuthorityKey } from '../../../ca/authority/store.js';
import type { TrustDomain } from '../../../ca/trust-domains/model.js';
import { CairnError } from '../../../lib/errors.js';
import { capturingLogger } from '../../support/logs.js';

/**
 * Sync reads the CRLs on every long-poll round and re-signs them when one is missing or due. When
 * re-signing fails (the store or the KEK unavailable on this replica), sync must still answer: the
 * stored CRLs go out, and housekeeping retries. An agent that cannot sync cannot serve at all.
 */
describe('revocation: CRLs for sync', () => {
  it('a failed re-signing does not fail sync: the stored CRLs are sent', async () => {
    const down = new CairnError('store_unavailable', 'the database is unavailable, retry later');
    const key = { id: 'k1', kind: 'x509', status: 'active', certificate: Buffer.from('30', 'hex') } as unknown as AuthorityKey;
    const deps = {
      clock: { now: () => new Date() },
      logger: capturingLogger().logger,
      store: { crls: async () => [] },
      keys: { published: async () => [key] },
      trustDomains: { get: () => Promise.reject(down) },
    } as unknown as RevocationDeps;
    const td = { name: 'sync.test', x509SvidTtlSeconds: 3600 } as TrustDomain;
    const crls = await new RevocationService(deps).published(td, [key]);
    expect(crls.crls).toEqual([]);
    expect(crls.active).toBeUndefined();
    // the GET /crl path, by contrast, reports the failure (its route serves the last answer or a 503)
    await expect(new RevocationService(deps).current('sync.test')).rejects.toMatchObject({ code: 'store_unavailable' });
  });
});
