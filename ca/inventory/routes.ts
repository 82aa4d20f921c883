import { errorResponses } from '../../contract/common.js';
import { AdminPaths, InventoryList, InventoryQuery } from '../../contract/admin-api.js';
import { decodePageToken, pageSizeOf } from '../../lib/paging.js';
import { listScope } from '../admin-auth/access.js';
import type { App } from '../http/types.js';
import type { InventoryStore } from './store.js';

export function registerInventoryRoutes(app: App, inventory: InventoryStore): void {
  app.get(AdminPaths.x509Svids, {
    schema: {
      tags: ['issuance'],
      summary: 'Search issued X.509-SVIDs (by trust domain, SPIFFE ID prefix, serial, expiring before)',
      querystring: InventoryQuery,
      response: { 200: InventoryList, ...errorResponses },
    },
  }, async (req) => {
    const q = req.query;
    const after = decodePageToken(q.pageToken, 2) as [string, string] | undefined;
    const page = await inventory.list(
      {
        ...(q.trustDomain ? { trustDomain: q.trustDomain } : {}),
        trustDomains: listScope(req),
        ...(q.spiffeIdPrefix ? { spiffeIdPrefix: q.spiffeIdPrefix } : {}),
        ...(q.serial ? { serial: q.serial.toLowerCase() } : {}), // stored lowercase, accepted in either case
        ...(q.expiringBefore ? { expiringBefore: new Date(q.expiringBefore) } : {}),
      },
      pageSizeOf(q.pageSize),
      after,
    );
    return {
      svids: page.items.map((r) => ({
        serial: r.serial,
        trustDomain: r.trustDomain,
        spiffeId: r.spiffeId,
        notBefore: r.notBefore.toISOString(),
        notAfter: r.notAfter.toISOString(),
        issuedTo: r.issuedTo,
        issuedAt: r.issuedAt.toISOString(),
      })),
      ...(page.nextPageToken ? { nextPageToken: page.nextPageToken } : {}),
    };
  });
}
