import type { EntryView } from '../../contract/admin-api.js';
import type { Entry } from './model.js';

export function entryView(e: Entry): EntryView {
  return {
    id: e.id,
    trustDomain: e.trustDomain,
    spiffeId: e.spiffeId,
    parentId: e.parentId,
    selectors: [...e.selectors],
    x509SvidTtl: e.x509SvidTtlSeconds,
    jwtSvidTtl: e.jwtSvidTtlSeconds,
    dnsNames: [...e.dnsNames],
    hint: e.hint,
    admin: e.admin,
    adminRole: e.adminRole,
    federatesWith: [...e.federatesWith],
    expiresAt: e.expiresAt?.toISOString() ?? null,
    revision: e.revision,
    createdAt: e.createdAt.toISOString(),
    updatedAt: e.updatedAt.toISOString(),
  };
}
