import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Clock } from '../../lib/clock.js';
import { createLocalJWKSet, decodeJwt, jwtVerify, errors as joseErrors, type JSONWebKeySet } from 'jose';
import { CairnError } from '../../lib/errors.js';
import { requestJson } from '../../lib/tls-client.js';

/**
 * Kubernetes projected service-account tokens (PSAT) as node credentials. Per cluster, either the
 * API server's TokenReview (binding-aware: a deleted pod's token is refused) or offline against the
 * cluster's OIDC JWKS (no API access needed, works across clusters, but blind to pod deletion).
 */
export interface PsatClusterConfig {
  readonly mode: 'token_review' | 'jwks';
  /** The audience the agent's projected token was minted for. */
  readonly audience: string;
  /** `namespace:serviceaccount` pairs allowed to attest as agents. */
  readonly allowedServiceAccounts: readonly string[];
  /** token_review: the API server, and files read on each review (projected tokens rotate). */
  readonly apiServer?: string | undefined;
  readonly apiCaFile?: string | undefined;
  readonly apiTokenFile?: string | undefined;
  /** jwks: the service-account issuer and its public keys, given inline or fetched (and refreshed) from a URL. */
  readonly issuer?: string | undefined;
  readonly jwks?: JSONWebKeySet | undefined;
  readonly jwksUrl?: string | undefined;
  readonly jwksCaFile?: string | undefined;
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
  'kubernetes.io'?: {
    namespace?: string;
    serviceaccount?: { name?: string; uid?: string };
    pod?: { name?: string; uid?: string };
    node?: { name?: string; uid?: string };
  };
}

const refused = (message: string): CairnError => new CairnError('unauthenticated', message);

export const IN_CLUSTER = {
  apiServer: 'https://kubernetes.default.svc',
  apiCaFile: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt',
  apiTokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token',
} as const;

interface TokenReviewStatus {
  authenticated?: boolean;
  error?: string;
  audiences?: string[];
  user?: { username?: string; uid?: string; extra?: Record<string, string[]> };
}

/**
 * Clusters' JWKS fetched from their URL: cached for 5 minutes and fetched again early (at most every
 * 30 s) when a token names a key we do not have, since managed clusters rotate signing keys.
 */
export class JwksCache {
  private readonly entries = new Map<string, { jwks: JSONWebKeySet; fetchedAt: number }>();

  constructor(private readonly clock: Clock, private readonly ttlMs = 300_000, private readonly minRefreshMs = 30_000) {}

  async get(url: string, caFile: string | undefined, refresh = false): Promise<JSONWebKeySet> {
    const now = this.clock.now().getTime();
    const cached = this.entries.get(url);
    if (cached && now - cached.fetchedAt < (refresh ? this.minRefreshMs : this.ttlMs)) return cached.jwks;
    let res;
    try {
      res = await requestJson('GET', url, undefined, { ca: caFile ? readFileSync(caFile, 'utf8') : undefined, checkServerName: true, timeoutMs: 10_000 });
    } catch (err) {
      if (cached) return cached.jwks; // keep validating with what we have while the issuer is away
      throw new CairnError('store_unavailable', `cannot fetch the cluster JWKS from ${url}: ${(err as Error).message}`);
    }
    const keys = (res.body as { keys?: unknown } | undefined)?.keys;
    if (res.status !== 200 || !Array.isArray(keys)) {
      if (cached) return cached.jwks;
      throw new CairnError('store_unavailable', `the cluster JWKS at ${url} answered HTTP ${res.status} without a key set`);
    }
    const jwks = { keys } as JSONWebKeySet;
    if (this.entries.size > 100) this.entries.clear();
    this.entries.set(url, { jwks, fetchedAt: now });
    return jwks;
  }
}

/** The cluster's API server with the CA's own credentials, read on each use because projected tokens rotate. */
interface KubeApi {
  call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; body: unknown }>;
}

function kubeApi(config: PsatClusterConfig): KubeApi {
  const apiServer = (config.apiServer ?? IN_CLUSTER.apiServer).replace(/\/+$/, '');
  let bearer: string;
  let ca: string | undefined;
  try {
    bearer = readFileSync(config.apiTokenFile ?? IN_CLUSTER.apiTokenFile, 'utf8').trim();
    const caFile = config.apiCaFile ?? (config.apiServer ? undefined : IN_CLUSTER.apiCaFile);
    ca = caFile ? readFileSync(caFile, 'utf8') : undefined;
  } catch (err) {
    throw new CairnError('store_unavailable', `cannot read the credentials for the Kubernetes API: ${(err as Error).message}`);
  }
  return {
    async call(method, path, body) {
      try {
        return await requestJson(method, apiServer + path, body, { ca, bearer, checkServerName: true, timeoutMs: 10_000 });
      } catch (err) {
        throw new CairnError('store_unavailable', `the Kubernetes API did not answer ${method} ${path}: ${(err as Error).message}`);
      }
    },
  };
}

/** TokenReview against the cluster's API server; the token must still be bound to a live pod. */
async function review(api: KubeApi, token: string, config: PsatClusterConfig): Promise<{ username: string; extra: Record<string, string[]> }> {
  const res = await api.call('POST', '/apis/authentication.k8s.io/v1/tokenreviews', { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [config.audience] } });
  if (res.status !== 201 && res.status !== 200) throw new CairnError('store_unavailable', `the Kubernetes API answered the TokenReview with HTTP ${res.status}`);
  const status = ((res.body as { status?: TokenReviewStatus } | undefined)?.status ?? {}) as TokenReviewStatus;
  if (!status.authenticated) throw refused(`the cluster does not authenticate this token${status.error ? `: ${status.error}` : ''} (expired, wrong audience, or its pod is gone)`);
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
    const res = await api.call('GET', path);
    if (res.status === 404) throw refused(`the cluster has no ${what} any more`);
    if (res.status !== 200) throw new CairnError('store_unavailable', `the Kubernetes API answered GET ${path} with HTTP ${res.status}`);
    return (res.body ?? {}) as ObjectMeta;
  };
  const [pod, node] = await Promise.all([
    get(`/api/v1/namespaces/${encodeURIComponent(who.namespace)}/pods/${encodeURIComponent(who.podName)}`, `pod ${who.namespace}/${who.podName}`),
    get(`/api/v1/nodes/${encodeURIComponent(who.nodeName)}`, `node ${who.nodeName}`),
  ]);
  if (pod.metadata?.uid !== who.podUid) throw refused(`pod ${who.namespace}/${who.podName} is not the pod the token is bound to`);
  return { pod: pod.metadata?.labels ?? {}, node: node.metadata?.labels ?? {} };
}

async function verifyOffline(token: string, config: PsatClusterConfig, now: Date, cache: JwksCache): Promise<KubernetesClaims> {
  if (!config.issuer || (!config.jwks && !config.jwksUrl)) throw new CairnError('invalid_request', 'this cluster is configured for offline validation without an issuer and JWKS');
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
      return (await verifyWith(await cache.get(config.jwksUrl!, config.jwksCaFile))).payload as KubernetesClaims;
    } catch (err) {
      if (!(err instanceof joseErrors.JWKSNoMatchingKey)) throw err;
      return (await verifyWith(await cache.get(config.jwksUrl!, config.jwksCaFile, true))).payload as KubernetesClaims;
    }
  } catch (err) {
    if (err instanceof joseErrors.JWTExpired) throw refused('the service-account token has expired');
    if (err instanceof joseErrors.JWTClaimValidationFailed) throw refused(`the service-account token was refused: ${err.claim} ${err.reason}`);
    if (err instanceof joseErrors.JOSEError) throw refused(`the service-account token was refused: ${err.message}`);
    throw err;
  }
}

const extraOf = (extra: Record<string, string[]>, key: string): string => extra[`authentication.kubernetes.io/${key}`]?.[0] ?? '';

/** Validates a PSAT for one configured cluster and returns who presented it. */
export async function validatePsat(token: string, config: PsatClusterConfig, now: Date, jwks: JwksCache): Promise<PsatIdentity> {
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
    const api = kubeApi(config);
    const reviewed = await review(api, token, config);
    const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(reviewed.username);
    if (!m) throw refused(`the token belongs to ${reviewed.username || 'nobody'}, not a service account`);
    [namespace, serviceAccount] = [m[1]!, m[2]!];
    const reviewedPodUid = extraOf(reviewed.extra, 'pod-uid');
    // The API server vouches for the pod binding; the claim must agree with it.
    if (!reviewedPodUid || reviewedPodUid !== podUid) throw refused('the token is not bound to the pod the cluster reports');
    podName = extraOf(reviewed.extra, 'pod-name') || podName;
    nodeName = extraOf(reviewed.extra, 'node-name') || nodeName;
    nodeUid = extraOf(reviewed.extra, 'node-uid') || nodeUid;
    if (podName && nodeName) labels = await labelsOf(api, { namespace, podName, podUid, nodeName });
  } else {
    claims = await verifyOffline(token, config, now, jwks);
    k8s = claims['kubernetes.io'] ?? {};
    [namespace, serviceAccount] = [k8s.namespace ?? '', k8s.serviceaccount?.name ?? ''];
    [podName, podUid, nodeName, nodeUid] = [k8s.pod?.name ?? '', k8s.pod?.uid ?? '', k8s.node?.name ?? '', k8s.node?.uid ?? ''];
  }
  if (!config.allowedServiceAccounts.includes(`${namespace}:${serviceAccount}`)) {
    throw new CairnError('permission_denied', `service account ${namespace}:${serviceAccount} is not allowed to attest agents in this cluster`);
  }
  if (!podUid) throw refused('the token is not bound to a pod (use a projected service-account token)');
  if (!nodeUid || !/^[A-Za-z0-9-]{1,128}$/.test(nodeUid)) throw refused('the token carries no node binding (Kubernetes 1.30+ puts the node in pod-bound tokens)');
  if (typeof claims.exp !== 'number') throw refused('the token has no expiry');
  const credentialHash = createHash('sha256').update(claims.jti ? `jti:${claims.jti}` : `token:${token}`).digest();
  return { namespace, serviceAccount, podName, podUid, nodeName, nodeUid, podLabels: labels.pod, nodeLabels: labels.node, credentialHash, expiresAt: new Date(claims.exp * 1000) };
}
