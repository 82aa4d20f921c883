import { Type, type Static } from 'typebox';
import { EntryView } from './admin-api.js';
import { SyncTemplate } from './template-api.js';

// Path constants live in paths.ts, which loads no schema library (the node agent needs only them).
export { AgentPaths } from './paths.js';

const Der = Type.String({ maxLength: 65536, description: 'base64 DER' });
const Csr = Type.String({ minLength: 1, maxLength: 32768, description: 'PKCS#10 CSR, base64 DER or PEM; only its key is used' });

export const AttestBody = Type.Object({ token: Type.String({ minLength: 1, maxLength: 4096 }), csr: Csr }, { additionalProperties: false });
export type AttestBody = Static<typeof AttestBody>;

export const RenewBody = Type.Object({ csr: Csr }, { additionalProperties: false });

/** An X.509-SVID with its bundle, DER in base64: chain leaf first, bundle the trust domain's CAs. */
export const X509SvidMessage = Type.Object({
  spiffeId: Type.String(),
  chain: Type.Array(Der),
  bundle: Type.Array(Der),
  expiresAt: Type.String(),
  serial: Type.String(),
});
export type X509SvidMessage = Static<typeof X509SvidMessage>;

/**
 * What an agentless device is answered at redemption and renewal: its SVID, and the X.509 authorities
 * of each foreign trust domain its workload credential federates with (`cairn token create
 * --federates-with`), keyed by trust domain name, as they are now (the Workload API's
 * `federated_bundles`). Always present from a CA that knows it (empty: none); a trust domain absent
 * from it is no longer federated.
 */
export const DeviceSvidMessage = Type.Object({
  ...X509SvidMessage.properties,
  federatedBundles: Type.Optional(Type.Record(Type.String(), Type.Array(Der))),
});
export type DeviceSvidMessage = Static<typeof DeviceSvidMessage>;

export const SyncQuery = Type.Object(
  {
    revision: Type.Optional(Type.Integer({ minimum: 0 })),
    bundleSequence: Type.Optional(Type.Integer({ minimum: 0 })),
    /** Long-poll: wait up to this many seconds for a change when nothing is new. */
    wait: Type.Optional(Type.Integer({ minimum: 0, maximum: 60 })),
    /** The `revocation.digest` last received ('' at first). Absent: the agent takes no revocations. */
    crl: Type.Optional(Type.String({ maxLength: 64 })),
    /** The `federated.digest` last received ('' at first). Absent: the agent takes no foreign bundles. */
    federated: Type.Optional(Type.String({ maxLength: 64 })),
  },
  { additionalProperties: false },
);
export type SyncQuery = Static<typeof SyncQuery>;

/** An entry as agents see it: the admin view without bookkeeping fields. */
export const SyncEntry = Type.Omit(EntryView, ['trustDomain', 'createdAt', 'updatedAt']);
export type SyncEntry = Static<typeof SyncEntry>;

/**
 * An authority the operator tainted (`cairn authority taint`): still in the bundle (peers' SVIDs it
 * signed keep verifying until they are replaced), but the agent re-issues every X.509-SVID whose chain
 * it signed, renews its own SVID if it signed that, and drops and no longer validates JWT-SVIDs
 * with its `kid`. The key identifies what it signed: X.509 by verifying a certificate's signature
 * with it, JWT by `kid` (= id).
 */
export const TaintedAuthority = Type.Object({
  kind: Type.Union([Type.Literal('x509'), Type.Literal('jwt')]),
  id: Type.String(),
  /** SubjectPublicKeyInfo DER, base64. */
  publicKey: Der,
});
export type TaintedAuthority = Static<typeof TaintedAuthority>;

export const SyncBundle = Type.Object({
  sequence: Type.Integer(),
  x509Authorities: Type.Array(Der),
  jwtAuthorities: Type.Array(Type.Object({ kid: Type.String(), jwk: Type.Object({}, { additionalProperties: true }) })),
  /** The published authorities that are tainted (absent from a CA of an earlier release: none). */
  taintedAuthorities: Type.Optional(Type.Array(TaintedAuthority)),
});
export type SyncBundle = Static<typeof SyncBundle>;

export const SyncResponse = Type.Object({
  /** Pass back as `revision` next time. */
  revision: Type.Integer(),
  /** True when `entries` is the complete set (first sync, or the agent's parents changed). */
  full: Type.Boolean(),
  /** The agent's own ID and its node aliases: entries parented to any of these are the agent's. */
  parents: Type.Array(Type.String()),
  /** Apply `removed` first, then upsert `entries`. */
  entries: Type.Array(SyncEntry),
  removed: Type.Array(Type.String()),
  /** Workload identity templates of the agent's parents changed since `revision` (all of them when `full`); absent from a CA of an earlier release. */
  templates: Type.Optional(Type.Array(SyncTemplate)),
  /** Templates to drop (deleted, or no longer the agent's). */
  removedTemplates: Type.Optional(Type.Array(Type.String())),
  /** Present when the bundle changed since `bundleSequence`. */
  bundle: Type.Optional(SyncBundle),
  /**
   * Present when the trust domain's CRLs changed since the `crl` digest sent: the CRLs (DER, one per
   * published CA, the active one's first) and the unexpired revoked serials of SVIDs issued to this
   * agent, which it must replace at once.
   */
  revocation: Type.Optional(Type.Object({ digest: Type.String(), crls: Type.Array(Der), revokedSerials: Type.Array(Type.String()) })),
  /**
   * Present when the foreign bundles this agent delivers changed since the `federated` digest sent:
   * the complete set, one per foreign trust domain its entries federate with (SPIFFE federation).
   */
  federated: Type.Optional(Type.Object({ digest: Type.String(), bundles: Type.Array(Type.Object({ trustDomain: Type.String(), bundle: SyncBundle })) })),
});
export type SyncResponse = Static<typeof SyncResponse>;

export const BatchX509Body = Type.Object(
  { requests: Type.Array(Type.Object({ entryId: Type.String({ minLength: 1, maxLength: 64 }), csr: Csr }, { additionalProperties: false }), { minItems: 1, maxItems: 500 }) },
  { additionalProperties: false },
);
export type BatchX509Body = Static<typeof BatchX509Body>;

/** In a batch the trust domain's bundle is sent once, beside the results, not with every SVID. */
export const BatchX509Response = Type.Object({
  bundle: Type.Array(Der),
  results: Type.Array(
    Type.Object({
      entryId: Type.String(),
      svid: Type.Optional(Type.Omit(X509SvidMessage, ['bundle'])),
      error: Type.Optional(Type.Object({ code: Type.String(), message: Type.String() })),
    }),
  ),
});
export type BatchX509Response = Static<typeof BatchX509Response>;

export const AgentJwtBody = Type.Object(
  { entryId: Type.String({ minLength: 1, maxLength: 64 }), audience: Type.Array(Type.String({ minLength: 1, maxLength: 512 }), { minItems: 1, maxItems: 10 }) },
  { additionalProperties: false },
);
export const DeviceJwtBody = Type.Object(
  { audience: Type.Array(Type.String({ minLength: 1, maxLength: 512 }), { minItems: 1, maxItems: 10 }) },
  { additionalProperties: false },
);
export const JwtSvidMessage = Type.Object({ spiffeId: Type.String(), token: Type.String(), expiresAt: Type.String() });
export type JwtSvidMessage = Static<typeof JwtSvidMessage>;
