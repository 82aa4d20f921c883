/** Admin API roles, strongest first. Each includes what the weaker ones may do. */
export const ROLES = ['admin', 'operator', 'viewer'] as const;
export type Role = (typeof ROLES)[number];

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

/** Whether `held` may do what `needed` may. */
export function roleAtLeast(held: Role, needed: Role): boolean {
  return ROLES.indexOf(held) <= ROLES.indexOf(needed);
}

/** The role an admin entry's SVIDs get when the entry names none (SPIRE's `admin: true` is full admin). */
export const DEFAULT_ENTRY_ADMIN_ROLE: Role = 'admin';

/** The credential written to <data-dir>/admin-token on first start. */
export const BOOTSTRAP_NAME = 'bootstrap';
/** The credential CAIRN_ADMIN_TOKEN (or CAIRN_ADMIN_TOKEN_FILE) configures; each start replaces it. */
export const CONFIGURED_NAME = 'configured';
/** Before named credentials, the configured token was stored as configured-<hash prefix>, once per value ever used. */
export const LEGACY_CONFIGURED_PREFIX = 'configured-';

/** Names the CA manages itself; `cairn admin create` refuses them. */
export function isReservedAdminName(name: string): boolean {
  return name === BOOTSTRAP_NAME || name === CONFIGURED_NAME || name.startsWith(LEGACY_CONFIGURED_PREFIX);
}

/** A stored admin credential (never its secret). */
export interface AdminCredential {
  readonly id: string;
  readonly name: string;
  readonly role: Role;
  /** The trust domains it may act on; null: every trust domain. */
  readonly trustDomains: readonly string[] | null;
  readonly createdAt: Date;
  readonly createdBy: string | null;
  readonly expiresAt: Date | null;
  readonly lastUsedAt: Date | null;
}

/**
 * Who is calling the admin API, once authenticated: a named credential (bearer token) or the SPIFFE ID
 * of an admin entry's SVID (mTLS). `name` is the actor every record and log line carries.
 */
export interface AdminPrincipal {
  readonly name: string;
  readonly kind: 'token' | 'svid';
  readonly role: Role;
  /** null: every trust domain. */
  readonly trustDomains: readonly string[] | null;
}

export function inScope(principal: Pick<AdminPrincipal, 'trustDomains'>, trustDomain: string): boolean {
  return principal.trustDomains === null || principal.trustDomains.includes(trustDomain);
}

export function describeScope(trustDomains: readonly string[] | null): string {
  return trustDomains === null ? 'every trust domain' : trustDomains.join(', ');
}
