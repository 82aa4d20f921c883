import type { KeyType } from '../authority/key-types.js';

export interface TrustDomain {
  readonly name: string;
  readonly caKeyType: KeyType;
  readonly caTtlSeconds: number;
  readonly x509SvidTtlSeconds: number;
  readonly jwtSvidTtlSeconds: number;
  readonly jwtIssuer: string | null;
  readonly bundleSequence: number;
  readonly bundleRefreshHintSeconds: number;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export const TRUST_DOMAIN_DEFAULTS = {
  caKeyType: 'ec-p256' as KeyType,
  /** Long enough to run without rotation tooling; rotation prepares a successor at half life. */
  caTtlSeconds: 365 * 86400,
  x509SvidTtlSeconds: 3600,
  jwtSvidTtlSeconds: 300,
  bundleRefreshHintSeconds: 300,
} as const;

export const TTL_LIMITS = {
  caTtlSeconds: { min: 3600, max: 20 * 365 * 86400 },
  x509SvidTtlSeconds: { min: 60, max: 90 * 86400 },
  jwtSvidTtlSeconds: { min: 30, max: 86400 },
} as const;
