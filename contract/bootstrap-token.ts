/**
 * The one-time token string: everything a bootstrapper needs to trust the CA on first contact
 * (its URL and a pin of the CA server's TLS trust anchor) plus the secret. Compare kubeadm's
 * --discovery-token-ca-cert-hash: the client checks the pin before it sends the secret.
 *
 *   cairn1.<base64url JSON {v, kind, id, td, url, pin}>.<base64url secret>
 */
export interface BootstrapTokenClaims {
  readonly v: 1;
  readonly kind: 'join' | 'workload';
  readonly id: string;
  readonly td: string;
  /** The CA's TLS endpoint, e.g. https://ca.example.com:8443 */
  readonly url: string;
  /** "sha256:<base64url>" of the DER SubjectPublicKeyInfo of the CA server's TLS trust anchor. */
  readonly pin: string;
}

export interface BootstrapToken {
  readonly claims: BootstrapTokenClaims;
  readonly secret: string;
}

const PREFIX = 'cairn1';

export function encodeBootstrapToken(claims: BootstrapTokenClaims, secret: string): string {
  return `${PREFIX}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${secret}`;
}

export class BootstrapTokenFormatError extends Error {
  override readonly name = 'BootstrapTokenFormatError';
}

export function parseBootstrapToken(text: string): BootstrapToken {
  const parts = typeof text === 'string' ? text.trim().split('.') : [];
  if (parts.length !== 3 || parts[0] !== PREFIX || !/^[A-Za-z0-9_-]+$/.test(parts[1]!) || !/^[A-Za-z0-9_-]{16,128}$/.test(parts[2]!)) {
    throw new BootstrapTokenFormatError('not a Cairn one-time token');
  }
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
  } catch {
    throw new BootstrapTokenFormatError('token claims are not JSON');
  }
  const c = claims as Partial<BootstrapTokenClaims>;
  if (
    c.v !== 1 || (c.kind !== 'join' && c.kind !== 'workload') || typeof c.id !== 'string' || !/^[A-Za-z0-9]{8,64}$/.test(c.id) ||
    typeof c.td !== 'string' || typeof c.url !== 'string' || typeof c.pin !== 'string' || !/^sha256:[A-Za-z0-9_-]{43}$/.test(c.pin)
  ) {
    throw new BootstrapTokenFormatError('token claims are incomplete');
  }
  return { claims: c as BootstrapTokenClaims, secret: parts[2]! };
}
