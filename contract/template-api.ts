import { Type, type Static } from 'typebox';
import { AdminRoleSchema } from './admin-api.js';
import { PageQuery, SpiffeIdString, Timestamp, TrustDomainName } from './common.js';

/** Workload identity templates (admin API), beside the registration entries. */
export const TemplatePaths = {
  templates: '/v1/templates',
  template: '/v1/templates/:id',
} as const;

const Selector = Type.String({ minLength: 3, maxLength: 1100, description: 'type:value' });

export const CreateTemplateBody = Type.Object(
  {
    trustDomain: TrustDomainName,
    parentId: SpiffeIdString,
    spiffeIdTemplate: Type.String({ minLength: 1, maxLength: 2048, description: 'spiffe://{td}/… with {type:key} placeholders read from the caller\'s selectors, e.g. spiffe://{td}/ns/{k8s:ns}/sa/{k8s:sa}' }),
    selectors: Type.Optional(Type.Array(Selector, { maxItems: 32, description: 'the caller must have all of them; none: every caller of the parent' })),
    dnsTemplates: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 253 }), { maxItems: 32, description: 'DNS names for the X.509-SVID, with the same placeholders' })),
    x509SvidTtl: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()])),
    jwtSvidTtl: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()])),
    hint: Type.Optional(Type.Union([Type.String({ maxLength: 1024 }), Type.Null()])),
    admin: Type.Optional(Type.Boolean()),
    adminRole: Type.Optional(Type.Union([AdminRoleSchema, Type.Null()], { description: 'the role the template\'s SVIDs get on the admin API (mTLS); implies admin; default admin' })),
    federatesWith: Type.Optional(Type.Array(TrustDomainName, { maxItems: 32 })),
    allowUnknownSelectorTypes: Type.Optional(Type.Boolean({ description: 'accept required selectors of types Cairn does not know; not stored' })),
  },
  { additionalProperties: false },
);
export type CreateTemplateBody = Static<typeof CreateTemplateBody>;

export const TemplateParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' }) });

export const TemplateView = Type.Object({
  id: Type.String(),
  trustDomain: Type.String(),
  parentId: Type.String(),
  selectors: Type.Array(Type.String()),
  spiffeIdTemplate: Type.String(),
  dnsTemplates: Type.Array(Type.String()),
  x509SvidTtl: Type.Union([Type.Integer(), Type.Null()]),
  jwtSvidTtl: Type.Union([Type.Integer(), Type.Null()]),
  hint: Type.Union([Type.String(), Type.Null()]),
  admin: Type.Boolean(),
  adminRole: Type.Union([AdminRoleSchema, Type.Null()]),
  federatesWith: Type.Array(Type.String()),
  revision: Type.Integer(),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
export type TemplateView = Static<typeof TemplateView>;

export const TemplateListQuery = Type.Object(
  { ...PageQuery, trustDomain: Type.Optional(TrustDomainName), parentId: Type.Optional(SpiffeIdString) },
  { additionalProperties: false },
);
export type TemplateListQuery = Static<typeof TemplateListQuery>;
export const TemplateList = Type.Object({ templates: Type.Array(TemplateView), nextPageToken: Type.Optional(Type.String()) });

// ---- agent side: templates in sync, and issuance by template

/** A template as agents get it in sync: the admin view without bookkeeping fields. */
export const SyncTemplate = Type.Omit(TemplateView, ['trustDomain', 'createdAt', 'updatedAt']);
export type SyncTemplate = Static<typeof SyncTemplate>;

/** The selectors the agent vouches for: the template's required ones and those its placeholders read. */
const ClaimedSelectors = Type.Array(Selector, { minItems: 0, maxItems: 64 });
const TemplateId = Type.String({ minLength: 1, maxLength: 64 });

/**
 * Issuance by template: the agent names the template and the caller's selectors; the CA renders the
 * SPIFFE ID (and DNS names) itself. There is no field for an ID: an agent cannot ask for one.
 */
export const TemplateX509Body = Type.Object(
  {
    requests: Type.Array(
      Type.Object({ templateId: TemplateId, selectors: ClaimedSelectors, csr: Type.String({ minLength: 1, maxLength: 32768 }) }, { additionalProperties: false }),
      { minItems: 1, maxItems: 500 },
    ),
  },
  { additionalProperties: false },
);
export type TemplateX509Body = Static<typeof TemplateX509Body>;

const Der = Type.String({ maxLength: 65536, description: 'base64 DER' });
export const TemplateX509Response = Type.Object({
  bundle: Type.Array(Der),
  results: Type.Array(
    Type.Object({
      templateId: Type.String(),
      svid: Type.Optional(Type.Object({ spiffeId: Type.String(), chain: Type.Array(Der), expiresAt: Type.String(), serial: Type.String() })),
      error: Type.Optional(Type.Object({ code: Type.String(), message: Type.String() })),
    }),
  ),
});
export type TemplateX509Response = Static<typeof TemplateX509Response>;

export const TemplateJwtBody = Type.Object(
  { templateId: TemplateId, selectors: ClaimedSelectors, audience: Type.Array(Type.String({ minLength: 1, maxLength: 512 }), { minItems: 1, maxItems: 10 }) },
  { additionalProperties: false },
);
export type TemplateJwtBody = Static<typeof TemplateJwtBody>;
