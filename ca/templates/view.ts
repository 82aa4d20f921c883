import type { TemplateView } from '../../contract/template-api.js';
import type { IdentityTemplate } from './model.js';

export function templateView(t: IdentityTemplate): TemplateView {
  return {
    id: t.id,
    trustDomain: t.trustDomain,
    parentId: t.parentId,
    selectors: [...t.selectors],
    spiffeIdTemplate: t.spiffeIdTemplate,
    dnsTemplates: [...t.dnsTemplates],
    x509SvidTtl: t.x509SvidTtlSeconds,
    jwtSvidTtl: t.jwtSvidTtlSeconds,
    hint: t.hint,
    admin: t.admin,
    adminRole: t.adminRole,
    federatesWith: [...t.federatesWith],
    revision: t.revision,
    createdAt: t.createdAt.toISOString(),
    updatedAt: t.updatedAt.toISOString(),
  };
}
