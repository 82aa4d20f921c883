import type { Bundle } from '../spiffe/bundle/bundle.js';

/**
 * What the Workload API needs from whoever hosts it (the node agent). Declared here, by the
 * consumer, so the RPC handlers can be tested with fakes and the agent supplies the real thing.
 */

/** The kernel's word on the calling process, read when the connection was accepted. */
export interface PeerInfo {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

export interface X509Identity {
  readonly spiffeId: string;
  /** DER certificates, leaf first. */
  readonly chain: readonly Buffer[];
  /** Unencrypted PKCS#8 DER. */
  readonly privateKey: Buffer;
  readonly hint?: string | undefined;
}

export interface JwtSvidResult {
  readonly spiffeId: string;
  readonly token: string;
  readonly hint?: string | undefined;
}

/**
 * What one caller is entitled to at one moment. The host hands every caller with the same selectors
 * the same snapshot object until something changes (and a new one after), so the server encodes a
 * state once for all the streams that share it.
 */
export interface WorkloadSnapshot {
  /** Current X.509-SVIDs, default identity first; empty when the caller has no identity. */
  readonly x509Svids: readonly X509Identity[];
  /** Foreign trust domains this caller's entries federate with. */
  readonly federatedTrustDomains: readonly string[];
}

/** The identities one caller is entitled to, resolved by attestation. */
export interface Workload {
  snapshot(): WorkloadSnapshot;
  /** JWT-SVIDs for the audience (one per entitled identity, or the one asked for). */
  jwtSvids(audience: readonly string[], spiffeId: string | undefined): Promise<readonly JwtSvidResult[]>;
}

export interface WorkloadApiPorts {
  /** False until the agent holds its first sync; calls answer Unavailable meanwhile. */
  ready(): boolean;
  /** Attests the caller (may read /proc etc.); throws when the caller cannot be attested. */
  attest(peer: PeerInfo): Promise<Workload>;
  /** The agent's own trust domain (its bundle is always sent). */
  trustDomain(): string;
  /** Bundles the agent holds, by trust domain name. */
  bundle(trustDomain: string): Bundle | undefined;
  /** Registers a listener for any change that may alter a stream's state; returns the unsubscribe. */
  onChange(listener: () => void): () => void;
  now(): Date;
}

/** Whether the host serves workloads now, and if not, why (a short ASCII sentence for operators). */
export interface HealthState {
  readonly serving: boolean;
  readonly reason?: string | undefined;
}
