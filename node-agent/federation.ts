import type { SyncResponse } from '../contract/agent-api.js';
import type { Bundle } from '../spiffe/bundle/bundle.js';

type FederatedMessage = NonNullable<SyncResponse['federated']>;

/**
 * The foreign trust domains' bundles this agent delivers (SPIFFE federation): the complete set for
 * the trust domains its entries federate with, as sync sends it when it changes. The Workload API
 * reads them through the agent's bundle(td): X509SVIDResponse.federated_bundles for callers whose
 * entries federate with them, FetchX509Bundles and FetchJWTBundles, and ValidateJWTSVID for tokens
 * of those trust domains.
 */
export class FederatedBundles {
  private readonly bundles = new Map<string, Bundle>();
  /** The digest of the set held, sent back with every sync ('' before the first). */
  digest = '';

  /** Replaces the set; whether anything a workload sees changed. */
  apply(message: FederatedMessage, ownTrustDomain: string): boolean {
    const before = this.fingerprint();
    this.bundles.clear();
    for (const { trustDomain, bundle } of message.bundles) {
      // our own trust domain's bundle comes only from the CA's own-bundle channel
      if (trustDomain === ownTrustDomain) continue;
      this.bundles.set(trustDomain, {
        trustDomain,
        x509Authorities: bundle.x509Authorities.map((b) => Buffer.from(b, 'base64')),
        jwtAuthorities: bundle.jwtAuthorities.map((a) => ({ kid: a.kid, jwk: a.jwk as unknown as Bundle['jwtAuthorities'][number]['jwk'] })),
        sequence: bundle.sequence,
      });
    }
    this.digest = message.digest;
    return this.fingerprint() !== before;
  }

  get(trustDomain: string): Bundle | undefined {
    return this.bundles.get(trustDomain);
  }

  /** The foreign trust domains held. */
  trustDomains(): string[] {
    return [...this.bundles.keys()].sort();
  }

  private fingerprint(): string {
    return JSON.stringify(
      [...this.bundles.values()]
        .sort((a, b) => a.trustDomain.localeCompare(b.trustDomain))
        .map((b) => [b.trustDomain, b.sequence, b.x509Authorities.map((d) => d.toString('base64')), b.jwtAuthorities]),
    );
  }
}
