import { CairnError } from '../../lib/errors.js';
import type { SpiffeId } from '../../spiffe/id.js';

/**
 * What an authorization decided the caller may have. Issuance applies it; nothing in a CSR can
 * widen it.
 */
export interface X509Policy {
  readonly spiffeId: SpiffeId;
  /** Absent: the trust domain's default X.509-SVID TTL. */
  readonly ttlSeconds?: number | undefined;
  readonly dnsNames: readonly string[];
}

export const MAX_DNS_NAMES = 32;
export const MAX_AUDIENCES = 10;
export const MAX_AUDIENCE_LENGTH = 512;
const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** RFC 1123 host names, lower-cased; a single leading "*." wildcard label is allowed. */
export function normalizeDnsNames(names: readonly string[]): string[] {
  if (names.length > MAX_DNS_NAMES) throw new CairnError('invalid_dns_name', `at most ${MAX_DNS_NAMES} DNS names are allowed`);
  const out: string[] = [];
  for (const raw of names) {
    const name = raw.toLowerCase();
    const labels = name.split('.');
    const body = labels[0] === '*' ? labels.slice(1) : labels;
    if (name.length > 253 || body.length === 0 || !body.every((l) => LABEL.test(l))) {
      throw new CairnError('invalid_dns_name', `"${raw}" is not a valid DNS name`);
    }
    if (!out.includes(name)) out.push(name);
  }
  return out;
}

export function normalizeAudiences(audiences: readonly string[]): string[] {
  if (audiences.length === 0) throw new CairnError('invalid_audience', 'at least one audience is required');
  if (audiences.length > MAX_AUDIENCES) throw new CairnError('invalid_audience', `at most ${MAX_AUDIENCES} audiences are allowed`);
  for (const a of audiences) {
    if (typeof a !== 'string' || a.length === 0 || a.length > MAX_AUDIENCE_LENGTH || /[\u0000-\u001f]/.test(a)) {
      throw new CairnError('invalid_audience', `audience values must be 1 to ${MAX_AUDIENCE_LENGTH} printable characters`);
    }
  }
  return [...new Set(audiences)];
}

export function checkTtl(ttlSeconds: number, limit: { min: number; max: number }, what: string): number {
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < limit.min || ttlSeconds > limit.max) {
    throw new CairnError('invalid_ttl', `${what} must be between ${limit.min} and ${limit.max} seconds`);
  }
  return ttlSeconds;
}
