import { SpiffeError } from './errors.js';

/** SPIFFE-ID.md: IDs up to 2048 bytes must be supported and longer ones should not be generated. */
export const MAX_SPIFFE_ID_BYTES = 2048;
export const MAX_TRUST_DOMAIN_BYTES = 255;
const SCHEME = 'spiffe://';

const TD_CHAR = /^[a-z0-9._-]$/;
const PATH_CHAR = /^[a-zA-Z0-9._-]$/;

function tdError(message: string): SpiffeError {
  return new SpiffeError('invalid_trust_domain', message);
}
function idError(message: string): SpiffeError {
  return new SpiffeError('invalid_spiffe_id', message);
}

function checkTrustDomainName(name: string, fail: (m: string) => SpiffeError): void {
  if (name.length === 0) throw fail('trust domain is missing');
  if (Buffer.byteLength(name) > MAX_TRUST_DOMAIN_BYTES) throw fail('trust domain is longer than 255 bytes');
  if (name.includes('@')) throw fail('trust domain cannot contain userinfo');
  if (name.startsWith('[')) throw fail('trust domain cannot be an IPv6 address');
  if (name.includes(':')) throw fail('trust domain cannot contain a port');
  if (name.includes('%')) throw fail('trust domain cannot contain percent-encoding');
  for (const ch of name) {
    if (!TD_CHAR.test(ch)) {
      throw fail('trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores');
    }
  }
}

/**
 * Validates a trust domain name ("example.org"). Also accepts its ID form ("spiffe://example.org"),
 * as go-spiffe's TrustDomainFromString does.
 */
export function parseTrustDomain(text: string): string {
  if (text.startsWith(SCHEME)) {
    const id = parseSpiffeId(text);
    if (id.path !== '') throw tdError('a trust domain ID cannot have a path');
    return id.trustDomain;
  }
  checkTrustDomainName(text, tdError);
  return text;
}

export function trustDomainId(trustDomain: string): string {
  return SCHEME + trustDomain;
}

export class SpiffeId {
  private constructor(
    readonly trustDomain: string,
    /** "" for the trust domain itself, else "/seg/seg". */
    readonly path: string,
  ) {}

  static parse(text: string): SpiffeId {
    if (typeof text !== 'string') throw idError('SPIFFE ID must be a string');
    if (text.length === 0) throw idError('SPIFFE ID is empty');
    if (Buffer.byteLength(text) > MAX_SPIFFE_ID_BYTES) throw idError('SPIFFE ID is longer than 2048 bytes');
    if (!text.startsWith(SCHEME)) throw idError('scheme is missing or invalid (must be "spiffe")');
    const rest = text.slice(SCHEME.length);
    if (rest.includes('?')) throw idError('SPIFFE ID cannot contain a query');
    if (rest.includes('#')) throw idError('SPIFFE ID cannot contain a fragment');
    const slash = rest.indexOf('/');
    const td = slash === -1 ? rest : rest.slice(0, slash);
    const path = slash === -1 ? '' : rest.slice(slash);
    checkTrustDomainName(td, idError);
    checkPath(path);
    return new SpiffeId(td, path);
  }

  /** "spiffe://td" — the map key used across the Workload API and bundles. */
  get trustDomainId(): string {
    return SCHEME + this.trustDomain;
  }

  get isTrustDomainId(): boolean {
    return this.path === '';
  }

  memberOf(trustDomain: string): boolean {
    return this.trustDomain === trustDomain;
  }

  /** True when this ID is `prefix` itself or lies below it on a segment boundary. */
  hasPathPrefix(prefix: string): boolean {
    return this.path === prefix || this.path.startsWith(prefix + '/');
  }

  toString(): string {
    return SCHEME + this.trustDomain + this.path;
  }

  toJSON(): string {
    return this.toString();
  }
}

export function parseSpiffeId(text: string): SpiffeId {
  return SpiffeId.parse(text);
}

function checkPath(path: string): void {
  if (path === '') return;
  if (path.includes('%')) throw idError('path cannot contain percent-encoding');
  const segments = path.slice(1).split('/');
  segments.forEach((segment, i) => {
    if (segment === '') {
      throw idError(i === segments.length - 1 ? 'path cannot have a trailing slash' : 'path cannot contain empty segments');
    }
    if (segment === '.' || segment === '..') throw idError('path cannot contain dot segments');
    for (const ch of segment) {
      if (!PATH_CHAR.test(ch)) {
        throw idError('path segment characters are limited to letters, numbers, dots, dashes, and underscores');
      }
    }
  });
}
