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

/**
 * Thrown by the host when the process that opened a connection is no longer the one it attested
 * (it exec'd another binary, or exited while another process holds the connection): the caller
 * gets PermissionDenied.
 */
export class CallerChangedError extends Error {
  override readonly name = 'CallerChangedError';
}

/** The identities one caller is entitled to, resolved by attestation. */
export interface Workload {
  /** May throw CallerChangedError (a stream then ends with PermissionDenied). */
  snapshot(): WorkloadSnapshot;
  /**
   * JWT-SVIDs for the audience (one per entitled identity, or the one asked for). The same request
   * gets the same array object for as long as its answer holds, so the server encodes it once.
   */
  jwtSvids(audience: readonly string[], spiffeId: string | undefined): Promise<readonly JwtSvidResult[]>;
}

export interface WorkloadApiPorts {
  /** False until the agent holds its first sync; calls answer Unavailable meanwhile. */
  ready(): boolean;
  /**
   * Called once per connection, when it is accepted: reads what identifies the caller right away
   * (before the caller can do anything else) and returns that connection's attestation.
   */
  attestConnection(peer: PeerInfo): ConnectionAttestation;
  /** The agent's own trust domain (its bundle is always sent). */
  trustDomain(): string;
  /** Bundles the agent holds, by trust domain name. */
  bundle(trustDomain: string): Bundle | undefined;
  /**
   * The agent's trust domain's CRLs (DER), for the `crl` fields of X509SVIDResponse and
   * X509BundlesResponse; a change is announced through onChange like any other. Absent: none.
   */
  crls?(): readonly Uint8Array[];
  /** Registers a listener for any change that may alter a stream's state; returns the unsubscribe. */
  onChange(listener: () => void): () => void;
  now(): Date;
}

/** Whether the host serves workloads now, and if not, why (a short ASCII sentence for operators). */
export interface HealthState {
  readonly serving: boolean;
  readonly reason?: string | undefined;
}

/** One connection's caller, attested at accept and reused by every call on it. */
export interface ConnectionAttestation {
  /**
   * The caller's workload, after checking that the process is still the one attested at accept;
   * throws CallerChangedError when it is not, any other error when attestation failed (retryable).
   */
  workload(): Promise<Workload>;
  /** The connection closed (frees what accept held, e.g. a pidfd). */
  release(): void;
}
