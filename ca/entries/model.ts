import type { Role } from '../admin-auth/model.js';

export interface Entry {
  readonly id: string;
  readonly trustDomain: string;
  readonly spiffeId: string;
  readonly parentId: string;
  /** Sorted, deduplicated "type:value" strings. */
  readonly selectors: readonly string[];
  readonly x509SvidTtlSeconds: number | null;
  readonly jwtSvidTtlSeconds: number | null;
  readonly dnsNames: readonly string[];
  readonly hint: string | null;
  readonly admin: boolean;
  /** The role this entry's SVIDs get on the admin API (mTLS); null unless admin. */
  readonly adminRole: Role | null;
  readonly federatesWith: readonly string[];
  readonly expiresAt: Date | null;
  /** Global change counter: agents sync "everything after revision N". */
  readonly revision: number;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export type NewEntry = Omit<Entry, 'revision' | 'createdAt' | 'updatedAt'>;

export interface EntryFilter {
  readonly trustDomain?: string | undefined;
  /** Only these trust domains (a scoped admin credential's list). */
  readonly trustDomains?: readonly string[] | undefined;
  readonly parentId?: string | undefined;
  readonly spiffeId?: string | undefined;
  /** Entries whose selectors include all of these. */
  readonly selectors?: readonly string[] | undefined;
}
