import { CairnError } from '../../lib/errors.js';
import { SpiffeError } from '../../spiffe/errors.js';
import type { SpiffeId } from '../../spiffe/id.js';
import { parseX509Svid, verifyX509Svid } from '../../spiffe/svid/x509.js';

/**
 * A TLS client's certificate chain checked as an X.509-SVID of a trust domain hosted here: against
 * the published X.509 authorities of its own trust domain only (never another's), valid at `now`.
 * A trust domain this CA does not host has no authorities, so its SVIDs never verify. Anything that
 * is not a valid SVID is `unauthenticated`.
 */
export async function verifyClientSvid(chain: readonly Buffer[], x509Authorities: (trustDomain: string) => Promise<Buffer[]>, now: Date): Promise<SpiffeId> {
  if (chain.length === 0) throw new CairnError('unauthenticated', 'a client certificate (an X.509-SVID) is required');
  try {
    const claimed = parseX509Svid(chain).spiffeId.trustDomain;
    const authorities = await x509Authorities(claimed);
    return verifyX509Svid(chain, (td) => (td === claimed ? { trustDomain: td, x509Authorities: authorities, jwtAuthorities: [] } : undefined), now).spiffeId;
  } catch (err) {
    if (!(err instanceof SpiffeError)) throw err;
    throw new CairnError('unauthenticated', `client certificate is not a valid SVID: ${err.message}`, { cause: err });
  }
}
