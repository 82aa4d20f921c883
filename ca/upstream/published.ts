import { splitDerCertificates } from '../../spiffe/svid/x509.js';
import type { AuthorityKey } from '../authority/store.js';

/**
 * What verifiers get from a trust domain's X.509 authorities. A self-signed CA is its own trust
 * anchor. A CA under an upstream is not in the bundle: its upstream root is (SPIRE's UpstreamAuthority
 * model), and the CA certificate travels with each SVID instead. A stored upstream chain ends at its
 * root (ca/upstream/chain.ts pathToRoot builds it so), so no certificate is parsed here.
 */
export function x509AnchorsOf(keys: readonly AuthorityKey[]): Buffer[] {
  const out: Buffer[] = [];
  for (const k of keys) {
    if (k.kind !== 'x509' || !k.certificate) continue;
    const chain = k.upstreamChain ? splitDerCertificates(k.upstreamChain) : [];
    const anchor = chain.length > 0 ? chain[chain.length - 1]! : k.certificate;
    if (!out.some((o) => o.equals(anchor))) out.push(anchor);
  }
  return out;
}

/** The certificates that follow a leaf the key signs: none for a self-signed CA; else the CA certificate and the upstream intermediates (not the root). */
export function intermediatesOf(key: AuthorityKey): Buffer[] {
  if (!key.certificate || !key.upstreamChain) return [];
  const chain = splitDerCertificates(key.upstreamChain);
  return [key.certificate, ...chain.slice(0, -1)];
}
