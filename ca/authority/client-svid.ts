import { CairnError } from '../../lib/errors.js';
import { SpiffeError } from '../../spiffe/errors.js';
import type { SpiffeId } from '../../spiffe/id.js';
import { parseX509Svid, verifyX509SvidPath, type VerifiedX509Svid } from '../../spiffe/svid/x509.js';

/**
 * A TLS client's certificate chain checked as an X.509-SVID of a trust domain hosted here: against
 * the published X.509 authorities of its own trust domain only (never another's), valid at `now`.
 * A trust domain this CA does not host has no authorities, so its SVIDs never verify. Anything that
 * is not a valid SVID is `unauthenticated`.
 */
export async function verifyClientSvid(chain: readonly Buffer[], x509Authorities: (trustDomain: string) => Promise<Buffer[]>, now: Date): Promise<SpiffeId> {
  return (await verifyClientSvidPath(chain, x509Authorities, now)).svid.spiffeId;
}

/** verifyClientSvid, saying what the verification rested on. */
export async function verifyClientSvidPath(chain: readonly Buffer[], x509Authorities: (trustDomain: string) => Promise<Buffer[]>, now: Date): Promise<VerifiedX509Svid> {
  if (chain.length === 0) throw new CairnError('unauthenticated', 'a client certificate (an X.509-SVID) is required');
  try {
    const parsed = parseX509Svid(chain);
    const claimed = parsed.spiffeId.trustDomain;
    const authorities = await x509Authorities(claimed);
    return verifyX509SvidPath(chain, (td) => (td === claimed ? { trustDomain: td, x509Authorities: authorities, jwtAuthorities: [] } : undefined), now, parsed);
  } catch (err) {
    if (!(err instanceof SpiffeError)) throw err;
    throw new CairnError('unauthenticated', `client certificate is not a valid SVID: ${err.message}`, { cause: err });
  }
}

/** What a TLS client presented: its leaf certificate at once, the whole chain (DER, leaf first) on demand. */
export interface PeerCertificates {
  readonly leaf: Buffer | undefined;
  chain(): readonly Buffer[];
}

/** A chain already in hand, as PeerCertificates. */
export const presentedChain = (chain: readonly Buffer[]): PeerCertificates => ({ leaf: chain[0], chain: () => chain });

/**
 * Client SVIDs verified per connection. An agent's long-polls reuse one keep-alive connection, and
 * parsing and verifying its chain on every poll was most of the CPU a connected fleet cost. A later
 * request on the same connection skips that while its leaf is byte for byte the one verified (a TLS
 * renegotiation with another certificate is verified afresh), now lies inside every certificate's
 * validity on the path, and the authority the path ended at is still published. Everything else
 * about the caller (its node record, ban, serial, revocation) is the caller's to check every time.
 */
export class VerifiedConnections {
  private readonly known = new WeakMap<object, VerifiedX509Svid>();

  async verify(peer: PeerCertificates, connection: object | undefined, x509Authorities: (trustDomain: string) => Promise<Buffer[]>, now: Date): Promise<VerifiedX509Svid> {
    if (!peer.leaf) throw new CairnError('unauthenticated', 'a client certificate (an X.509-SVID) is required');
    const known = connection ? this.known.get(connection) : undefined;
    if (known && known.svid.certificates[0]!.equals(peer.leaf) && now >= known.notBefore && now <= known.notAfter) {
      const authorities = await x509Authorities(known.svid.spiffeId.trustDomain);
      if (authorities.some((a) => a.equals(known.anchor))) return known;
    }
    const chain = peer.chain();
    if (chain.length === 0 || !chain[0]!.equals(peer.leaf)) throw new CairnError('unauthenticated', 'a client certificate (an X.509-SVID) is required');
    const verified = await verifyClientSvidPath(chain, x509Authorities, now);
    if (connection) this.known.set(connection, verified);
    return verified;
  }
}
