import { Type, type Static } from 'typebox';
import { SpiffeIdString, Timestamp, TrustDomainName } from './common.js';

// ---- revocation of single X.509-SVIDs (issue 13)

export const RevocationPaths = {
  revoke: '/v1/x509-svids/revoke',
  revoked: '/v1/x509-svids/revoked',
} as const;

const Serial = Type.String({ pattern: '^[0-9a-fA-F]{1,40}$', description: 'hex, either case (serials are printed lowercase)' });

export const RevokeBody = Type.Object(
  {
    serial: Type.Optional(Serial),
    spiffeId: Type.Optional(SpiffeIdString),
    trustDomain: Type.Optional(TrustDomainName),
    reason: Type.Optional(Type.String({ maxLength: 1024 })),
  },
  { additionalProperties: false, description: 'exactly one of serial (that SVID) or spiffeId (every current SVID of that ID); trustDomain, when given, must be theirs' },
);
export type RevokeBody = Static<typeof RevokeBody>;

export const RevokedSvidView = Type.Object({
  serial: Type.String(),
  trustDomain: Type.String(),
  spiffeId: Type.String(),
  issuedTo: Type.String(),
  notAfter: Timestamp,
  reason: Type.Union([Type.String(), Type.Null()]),
  revokedAt: Timestamp,
  revokedBy: Type.String(),
});
export type RevokedSvidView = Static<typeof RevokedSvidView>;

export const RevokeResponse = Type.Object({
  trustDomain: Type.String(),
  /** Every SVID the request named; one revoked earlier keeps its first record. */
  svids: Type.Array(RevokedSvidView),
});
export type RevokeResponse = Static<typeof RevokeResponse>;

export const RevokedListQuery = Type.Object({ trustDomain: TrustDomainName }, { additionalProperties: false });
export const RevokedList = Type.Object({ svids: Type.Array(RevokedSvidView) });
export type RevokedList = Static<typeof RevokedList>;
