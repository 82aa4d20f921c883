import { createHash } from 'node:crypto';
import { createLocalJWKSet, decodeJwt, jwtVerify, errors as joseErrors, type JSONWebKeySet } from 'jose';
import type { Clock } from '../../lib/clock.js';
import { CairnError } from '../../lib/errors.js';
import { UpstreamError } from './upstream-guard.js';

/**
 * Kubernetes projected service-account tokens (PSAT) as node credentials. Per cluster, either the
 * API server's TokenReview (binding-aware: a deleted pod's token is refused) or offline against the
 * cluster's OIDC JWKS (no API access needed, works across clusters, but blind to pod deletion).
 *
 * Nothing here names a file: the API credentials are the CA's own (a credential set it was started
 * with, chosen by name) or were given inline and are kept sealed under the KEK.
 */
export interface PsatClusterConfig {
  readonly mode: 'token_review' | 'jwks';
  /** The audience the agent's projected token was minted for. */
  readonly audience: string;
  /** `namespace:serviceaccount` pairs allowed to attest as agents. */
  readonly allowedServiceAccounts: readonly string[];
  /** token_review: a credential set of the CA's configuration, by name… */
  readonly kubeCredentials?: string | undefined;
  /** …or the API server with inline credentials: its CA certificates (PEM) and a token sealed under the KEK (base64). */
  readonly apiServer?: string | undefined;
  readonly apiCaCertificates?: string | undefined;
  readonly apiTokenSealed?: string | undefined;
  /** jwks: the service-account issuer and its public keys, given inline or fetched (and refreshed) from a URL. */
  readonly issuer?: string | undefined;
  readonly jwks?: JSONWebKeySet | undefined;
  readonly jwksUrl?: string | undefined;
  readonly jwksCaCertificates?: string | undefined;
  /** Set by the migration on configurations that named host files: never used until configured again. */
  readonly disabled?: string | undefined;
}

export interface PsatIdentity {
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly podName: string;
  readonly podUid: string;
  readonly nodeName: string;
  readonly nodeUid: string;
  /** From the API server (TokenReview mode only; offline validation has no API access). */
  readonly podLabels: Readonly<Record<string, string>>;
  readonly nodeLabels: Readonly<Record<string, string>>;
  /** What makes this token single-use: its jti, else its hash. */
  readonly credentialHash: Buffer;
  readonly expiresAt: Date;
}

interface KubernetesClaims {
  exp?: number;
  jti?: string;
  aud?: string | string[];
  'kubernetes.io'?: {
    namespace?: string;
    serviceaccount?: { name?: string; uid?: string };
    pod?: { name?: string; uid?: string };
    node?: { name?: string; uid?: string };
  };
}

const refused = (message: string): CairnError => new CairnError('unauthenticated', message);

interface TokenReviewStatus {
  authenticated?: boolean;
  audiences?: string[];
  user?: { username?: string; uid?: string; extra?: Record<string, string[]> };
}

/**
 * The cluster's API server with the CA's credentials. `expect`: the statuses that are answers; any
 * other status, and any transport error, is an UpstreamError (logged, never shown to the caller).
 */
export interface KubeApi {
  call(method: 'GET' | 'POST', path: string, body: unknown, expect: readonly number[]): Promise<{ status: number; body: unknown }>;
}

/** What a cluster's validation may reach outside the CA, each call bounded by the caller (UpstreamGuard). */
export interface PsatUpstreams {
  readonly kubeApi: () => KubeApi;
  /** The JWKS from the configured URL; `refresh` asks for a fresher copy (a token named an unknown key). */
  readonly jwks: (refresh: boolean) => Promise<JSONWebKeySet>;
}

/**
 * Clusters' JWKS fetched from their URL: cached for 5 minutes and fetched again early (at most every
 * 30 s) when a token names a key we do not have, since managed clusters rotate signing keys. One
 * fetch at a time per URL; while the issuer is away, the last good copy keeps validating.
 */
export class JwksCache {
  private readonly entries = new Map<string, { jwks: JSONWebKeySet; fetchedAt: number }>();
  private readonly pending = new Map<string, Promise<JSONWebKeySet>>();

  constructor(private readonly clock: Clock, private readonly ttlMs = 300_000, private readonly minRefreshMs = 30_000) {}

  async get(key: string, fetch: () => Promise<JSONWebKeySet>, refresh = false): Promise<JSONWebKeySet> {
    const now = this.clock.now().getTime();
    const cached = this.entries.get(key);
    if (cached && now - cached.fetchedAt < (refresh ? this.minRefreshMs : this.ttlMs)) return cached.jwks;
    let inFlight = this.pending.get(key);
    if (!inFlight) {
      inFlight = fetch().finally(() => this.pending.delete(key));
      this.pending.set(key, inFlight);
    }
    try {
      const jwks = await inFlight;
      if (this.entries.size > 100) this.entries.clear();
      this.entries.set(key, { jwks, fetchedAt: now });
      return jwks;
    } catch (err) {
      if (cached) return cached.jwks;
      throw err;
    }
  }
}

/** Checks a fetched JWKS document; anything else is the upstream's failure. */
export function jwksOf(status: number, body: unknown): JSONWebKeySet {
  const keys = (body as { keys?: unknown } | undefined)?.keys;
  if (status !== 200 || !Array.isArray(keys)) throw new UpstreamError(`the JWKS URL answered HTTP ${status} without a key set`);
  return { keys } as JSONWebKeySet;
}

/** TokenReview against the cluster's API server; the token must still be bound to a live pod. */
async function review(api: KubeApi, token: string, config: PsatClusterConfig): Promise<{ username: string; extra: Record<string, string[]> }> {
  const res = await api.call('POST', '/apis/authentication.k8s.io/v1/tokenreviews', { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [config.audience] } }, [200, 201]);
  const status = ((res.body as { status?: TokenReviewStatus } | undefined)?.status ?? {}) as TokenReviewStatus;
  // The API server's own error text stays out of the answer: it is the upstream's, not ours to relay.
  if (!status.authenticated) throw refused('the cluster does not authenticate this token (expired, wrong audience, or its pod is gone)');
  if (!(status.audiences ?? []).includes(config.audience)) throw refused(`the token is not for audience "${config.audience}"`);
  return { username: status.user?.username ?? '', extra: status.user?.extra ?? {} };
}

interface ObjectMeta {
  metadata?: { uid?: string; labels?: Record<string, string> };
}

/**
 * The labels of the agent's pod and node, read from the API server (SPIRE's agent_pod_label and
 * agent_node_label): node aliases can then group agents by node pool or zone. The pod must still be
 * the one the token is bound to.
 */
async function labelsOf(api: KubeApi, who: { namespace: string; podName: string; podUid: string; nodeName: string }): Promise<{ pod: Record<string, string>; node: Record<string, string> }> {
  const get = async (path: string, what: string): Promise<ObjectMeta> => {
    const res = await api.call('GET', path, undefined, [200, 404]);
    if (res.status === 404) throw refused(`the ${what} the token is bound to no longer exists`);
    return (res.body ?? {}) as ObjectMeta;
  };
  const [pod, node] = await Promise.all([
    get(`/api/v1/namespaces/${encodeURIComponent(who.namespace)}/pods/${encodeURIComponent(who.podName)}`, 'pod'),
    get(`/api/v1/nodes/${encodeURIComponent(who.nodeName)}`, 'node'),
  ]);
  if (pod.metadata?.uid !== who.podUid) throw refused('the pod is not the pod the token is bound to');
  return { pod: pod.metadata?.labels ?? {}, node: node.metadata?.labels ?? {} };
}

async function verifyOffline(token: string, config: PsatClusterConfig, now: Date, upstreams: PsatUpstreams): Promise<KubernetesClaims> {
  if (!config.issuer || (!config.jwks && !config.jwksUrl)) throw new TypeError('an offline cluster configuration without issuer and JWKS was stored');
  const verifyWith = (jwks: JSONWebKeySet) =>
    jwtVerify(token, createLocalJWKSet(jwks), {
      issuer: config.issuer,
      audience: config.audience,
      currentDate: now,
      algorithms: ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'PS256'],
    });
  try {
    if (config.jwks) return (await verifyWith(config.jwks)).payload as KubernetesClaims;
    try {
      return (await verifyWith(await upstreams.jwks(false))).payload as KubernetesClaims;
    } catch (err) {
      if (!(err instanceof joseErrors.JWKSNoMatchingKey)) throw err;
      return (await verifyWith(await upstreams.jwks(true))).payload as KubernetesClaims;
    }
  } catch (err) {
    if (err instanceof joseErrors.JWTExpired) throw refused('the service-account token has expired');
    if (err instanceof joseErrors.JWTClaimValidationFailed) throw refused(`the service-account token was refused: ${err.claim} ${err.reason}`);
    if (err instanceof joseErrors.JOSEError) throw refused(`the service-account token was refused: ${err.message}`);
    throw err;
  }
}

const extraOf = (extra: Record<string, string[]>, key: string): string => extra[`authentication.kubernetes.io/${key}`]?.[0] ?? '';

function notAllowed(config: PsatClusterConfig, namespace: string, serviceAccount: string): CairnError | undefined {
  if (config.allowedServiceAccounts.includes(`${namespace}:${serviceAccount}`)) return undefined;
  return new CairnError('permission_denied', `service account ${namespace}:${serviceAccount} is not allowed to attest agents in this cluster`);
}

/**
 * Refusals that need no API server: a token whose own (unverified) claims already say it is
 * expired, for another audience or for a service account not on the allow-list is refused before
 * anything is sent to the cluster. A genuine token's claims are what TokenReview would confirm.
 */
function precheck(claims: KubernetesClaims, config: PsatClusterConfig, now: Date): void {
  if (typeof claims.exp !== 'number') throw refused('the token has no expiry');
  if (claims.exp * 1000 <= now.getTime()) throw refused('the service-account token has expired');
  const aud = Array.isArray(claims.aud) ? claims.aud : claims.aud === undefined ? [] : [claims.aud];
  if (!aud.includes(config.audience)) throw refused(`the token is not for audience "${config.audience}"`);
  const k8s = claims['kubernetes.io'];
  if (k8s?.namespace && k8s.serviceaccount?.name) {
    const denied = notAllowed(config, k8s.namespace, k8s.serviceaccount.name);
    if (denied) throw denied;
  }
}

/** Validates a PSAT for one configured cluster and returns who presented it. */
export async function validatePsat(token: string, config: PsatClusterConfig, now: Date, upstreams: PsatUpstreams): Promise<PsatIdentity> {
  let claims: KubernetesClaims;
  try {
    claims = decodeJwt(token) as KubernetesClaims;
  } catch {
    throw refused('the service-account token is not a JWT');
  }
  let k8s = claims['kubernetes.io'] ?? {};
  let namespace = k8s.namespace ?? '';
  let serviceAccount = k8s.serviceaccount?.name ?? '';
  let podName = k8s.pod?.name ?? '';
  let podUid = k8s.pod?.uid ?? '';
  let nodeName = k8s.node?.name ?? '';
  let nodeUid = k8s.node?.uid ?? '';
  let labels: { pod: Record<string, string>; node: Record<string, string> } = { pod: {}, node: {} };
  if (config.mode === 'token_review') {
    precheck(claims, config, now);
    const api = upstreams.kubeApi();
    const reviewed = await review(api, token, config);
    const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(reviewed.username);
    if (!m) throw refused('the token does not belong to a service account');
    [namespace, serviceAccount] = [m[1]!, m[2]!];
    const reviewedPodUid = extraOf(reviewed.extra, 'pod-uid');
    // The API server vouches for the pod binding; the claim must agree with it.
    if (!reviewedPodUid || reviewedPodUid !== podUid) throw refused('the token is not bound to the pod the cluster reports');
    podName = extraOf(reviewed.extra, 'pod-name') || podName;
    nodeName = extraOf(reviewed.extra, 'node-name') || nodeName;
    nodeUid = extraOf(reviewed.extra, 'node-uid') || nodeUid;
    const denied = notAllowed(config, namespace, serviceAccount);
    if (denied) throw denied;
    if (podName && nodeName) labels = await labelsOf(api, { namespace, podName, podUid, nodeName });
  } else {
    claims = await verifyOffline(token, config, now, upstreams);
    k8s = claims['kubernetes.io'] ?? {};
    [namespace, serviceAccount] = [k8s.namespace ?? '', k8s.serviceaccount?.name ?? ''];
    [podName, podUid, nodeName, nodeUid] = [k8s.pod?.name ?? '', k8s.pod?.uid ?? '', k8s.node?.name ?? '', k8s.node?.uid ?? ''];
  }
  const denied = notAllowed(config, namespace, serviceAccount);
  if (denied) throw denied;
  if (!podUid) throw refused('the token is not bound to a pod (use a projected service-account token)');
  if (!nodeUid || !/^[A-Za-z0-9-]{1,128}$/.test(nodeUid)) throw refused('the token carries no node binding (Kubernetes 1.30+ puts the node in pod-bound tokens)');
  if (typeof claims.exp !== 'number') throw refused('the token has no expiry');
  const credentialHash = createHash('sha256').update(claims.jti ? `jti:${claims.jti}` : `token:${token}`).digest();
  return { namespace, serviceAccount, podName, podUid, nodeName, nodeUid, podLabels: labels.pod, nodeLabels: labels.node, credentialHash, expiresAt: new Date(claims.exp * 1000) };
}
