import type { AuditAppender } from '../audit/port.js';
import { createHash } from 'node:crypto';
import type { JSONWebKeySet } from 'jose';
import type { Clock } from '../../lib/clock.js';
import type { Queryable } from '../db/database.js';
import { CairnError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { randomAlphanumeric, type Random } from '../../lib/random.js';
import { requestJson } from '../../lib/tls-client.js';
import type { Sealer } from '../authority/sealing.js';
import { fingerprintSubject, nodeSubjects, nodeUidSubject, type BanService } from '../bans/service.js';
import type { FailureLimiter } from '../enrollment/failure-limiter.js';
import type { EnrollmentService } from '../enrollment/service.js';
import { decodeCsrText, verifyCsr } from '../issuance/csr.js';
import type { IssuedX509Svid } from '../issuance/service.js';
import type { TrustDomainService } from '../trust-domains/service.js';
import { checkPsatInput, type PsatClusterInput } from './psat-config.js';
import { readCredentialSet, type KubeCredentialSet } from './kube-credentials.js';
import { JwksCache, jwksOf, validatePsat, type KubeApi, type PsatClusterConfig, type PsatUpstreams } from './psat.js';
import { WindowLimiter } from './rate-limit.js';
import type { AttestorKind, AttestorRecord, ChallengeCaps, NodeAttestationStore } from './store.js';
import { attestorUnavailable, UpstreamError, UpstreamGuard, type UpstreamGuardOptions } from './upstream-guard.js';
import { anchorStillTrusted, deviceIdentity, parseManufacturerCas, verifyDeviceChain, verifyPossession, type X509PopConfig } from './x509pop.js';

export { DEFAULT_PSAT_AUDIENCE, type PsatClusterInput } from './psat-config.js';

export interface NodeAttestationDeps {
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  readonly store: NodeAttestationStore;
  readonly enrollment: EnrollmentService;
  readonly trustDomains: TrustDomainService;
  readonly bans: BanService;
  readonly limiter: FailureLimiter;
  readonly audit: AuditAppender;
  /** Seals inline Kubernetes API tokens under the KEK. */
  readonly sealer: Sealer;
  /** The CA's own Kubernetes credential sets, by name (`in-cluster` and --kube-credentials). */
  readonly kubeCredentials: ReadonlyMap<string, KubeCredentialSet>;
  /** Where agents reach the TLS listener, and the pin of its authority. */
  readonly endpoint: () => Promise<{ url: string; pin: string }>;
  readonly limits?: Partial<NodeAttestationLimits>;
}

export interface NodeAttestationLimits {
  readonly challenges: ChallengeCaps;
  /** x509pop challenges handed out per source address per minute, successes included. */
  readonly challengesPerSourcePerMinute: number;
  readonly upstream: UpstreamGuardOptions;
}

const DEFAULT_LIMITS: Omit<NodeAttestationLimits, 'upstream'> = {
  challenges: { perCertificate: 5, total: 10_000 },
  challengesPerSourcePerMinute: 60,
};

const CHALLENGE_TTL_MS = 60_000;
/** Upstream answers are small JSON documents; a bigger one is the upstream's failure. */
const UPSTREAM_MAX_BYTES = 1024 * 1024;
const UPSTREAM_TIMEOUT_MS = 5_000;
/** Attestor names become SPIFFE ID path segments. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

function checkName(name: string, what: string): string {
  if (!NAME.test(name)) throw new CairnError('invalid_request', `${what} must be 1–63 letters, digits, ".", "_" or "-", starting with a letter or digit`);
  return name;
}

export const tokenKeyId = (trustDomain: string, cluster: string): string => `k8s-psat/${trustDomain}/${cluster}/api-token`;
const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

/** An attestor's configuration as the admin API shows it: sealed secrets are only said to be there. */
export function attestorConfigView(a: AttestorRecord): Record<string, unknown> {
  const { apiTokenSealed, ...rest } = a.config as Record<string, unknown>;
  return apiTokenSealed === undefined ? rest : { ...rest, apiTokenSealed: true };
}

/**
 * Node attestation that is re-attestable, unlike join tokens: Kubernetes PSAT and x509pop. Each
 * success goes through the same enrollment as a join token (ban check, node record, first SVID).
 * Anonymous callers reach this; what they can make the CA do outside itself is bounded
 * (UpstreamGuard) and they never hear why an upstream failed.
 */
export class NodeAttestationService {
  private readonly jwks: JwksCache;
  private readonly guard: UpstreamGuard;
  private readonly challengesPerSource: WindowLimiter;
  private readonly caps: ChallengeCaps;

  constructor(private readonly deps: NodeAttestationDeps) {
    this.jwks = new JwksCache(deps.clock);
    this.guard = new UpstreamGuard(deps.clock, deps.logger, deps.limits?.upstream);
    this.challengesPerSource = new WindowLimiter(deps.clock, deps.limits?.challengesPerSourcePerMinute ?? DEFAULT_LIMITS.challengesPerSourcePerMinute, 60, 'x509pop challenges');
    this.caps = deps.limits?.challenges ?? DEFAULT_LIMITS.challenges;
  }

  // ---- admin

  async configurePsatCluster(trustDomain: string, cluster: string, input: PsatClusterInput, actor: string): Promise<AttestorRecord> {
    await this.deps.trustDomains.get(trustDomain);
    checkName(cluster, 'the cluster name');
    const checked = checkPsatInput(input, this.deps.kubeCredentials);
    const { apiToken, ...rest } = checked;
    const full: PsatClusterConfig = apiToken === undefined ? rest : { ...rest, apiTokenSealed: this.deps.sealer.seal(Buffer.from(apiToken, 'utf8'), tokenKeyId(trustDomain, cluster)).toString('base64') };
    const rec = await this.deps.store.upsert(trustDomain, 'k8s_psat', cluster, full, this.deps.clock.now());
    this.deps.logger.info({ event: 'attestor.configured', trustDomain, kind: 'k8s_psat', name: cluster, mode: input.mode, kubeCredentials: full.kubeCredentials, actor }, 'k8s_psat cluster configured');
    return rec;
  }

  async configureX509Pop(trustDomain: string, name: string, input: X509PopConfig, actor: string): Promise<AttestorRecord> {
    await this.deps.trustDomains.get(trustDomain);
    checkName(name, 'the attestor name');
    parseManufacturerCas(input.caCertificates);
    const rec = await this.deps.store.upsert(trustDomain, 'x509pop', name, { caCertificates: input.caCertificates }, this.deps.clock.now());
    this.deps.logger.info({ event: 'attestor.configured', trustDomain, kind: 'x509pop', name, actor }, 'x509pop manufacturer CAs configured');
    return rec;
  }

  async list(trustDomain: string): Promise<AttestorRecord[]> {
    await this.deps.trustDomains.get(trustDomain);
    return this.deps.store.list(trustDomain);
  }

  async remove(trustDomain: string, kind: AttestorKind, name: string, actor: string): Promise<void> {
    if (!(await this.deps.store.delete(trustDomain, kind, name))) throw new CairnError('not_found', `no ${kind} attestor "${name}" in ${trustDomain}`);
    this.deps.logger.info({ event: 'attestor.removed', trustDomain, kind, name, actor }, 'attestor removed');
  }

  caTls(): Promise<{ url: string; pin: string }> {
    return this.deps.endpoint();
  }

  /** Housekeeping: expired challenges and used-credential records go (and their space, on the embedded store). */
  async reclaim(): Promise<{ challenges: number; credentials: number }> {
    const reclaimed = await this.deps.store.reclaim(this.deps.clock.now());
    if (reclaimed.challenges + reclaimed.credentials > 0) this.deps.logger.debug({ event: 'attestation.reclaimed', ...reclaimed }, 'expired attestation records reclaimed');
    return reclaimed;
  }

  // ---- attestation (no client certificate; failures rate-limited per source)

  private async guarded<T>(source: string, attempt: { method: string; trustDomain?: string }, fn: () => Promise<T>): Promise<T> {
    this.deps.limiter.check(source);
    try {
      return await fn();
    } catch (err) {
      // A CSR whose signature does not verify counts too: otherwise a flood of them would cost a
      // signature check each, with no limit ever applying before the cryptography.
      if (err instanceof CairnError && (err.code === 'unauthenticated' || err.code === 'permission_denied' || err.code === 'agent_banned' || err.code === 'csr_signature_invalid')) {
        this.deps.limiter.fail(source);
        // counted refusals only: past the source's limit nothing reaches here, so a flood cannot flood the log
        await this.deps.audit.record([{ event: 'node.refused', actor: `bootstrap:${source}`, subject: { method: attempt.method, trustDomain: attempt.trustDomain, reason: err.code, message: err.message, source } }])
          .catch((e: unknown) => this.deps.logger.error({ err: e }, 'could not append a refused attestation to the audit log'));
      }
      throw err;
    }
  }

  /** The cluster's API server with the credentials its configuration selects, each call guarded. */
  private kubeApi(key: string, trustDomain: string, cluster: string, config: PsatClusterConfig): KubeApi {
    const target = (): { apiServer: string; bearer: string; ca: string | undefined } => {
      if (config.kubeCredentials !== undefined) {
        const set = this.deps.kubeCredentials.get(config.kubeCredentials);
        if (!set) throw new UpstreamError(`no credential set "${config.kubeCredentials}" is configured on this CA (--kube-credentials)`);
        return readCredentialSet(set);
      }
      if (!config.apiServer || !config.apiTokenSealed) throw new UpstreamError('the cluster has neither a credential set nor inline credentials');
      let bearer: string;
      try {
        bearer = this.deps.sealer.open(Buffer.from(config.apiTokenSealed, 'base64'), tokenKeyId(trustDomain, cluster)).toString('utf8');
      } catch {
        throw new UpstreamError("the cluster's inline API token does not open with this CA's key-encryption key");
      }
      return { apiServer: config.apiServer, bearer, ca: config.apiCaCertificates };
    };
    return {
      call: (method, path, body, expect) =>
        this.guard.run(key, async () => {
          const t = target();
          let res;
          try {
            res = await requestJson(method, t.apiServer.replace(/\/+$/, '') + path, body, { ca: t.ca, bearer: t.bearer, checkServerName: true, timeoutMs: UPSTREAM_TIMEOUT_MS, maxBytes: UPSTREAM_MAX_BYTES });
          } catch (err) {
            throw new UpstreamError(`the Kubernetes API at ${t.apiServer} did not answer ${method} ${path}: ${(err as Error).message}`);
          }
          if (!expect.includes(res.status)) throw new UpstreamError(`the Kubernetes API at ${t.apiServer} answered ${method} ${path} with HTTP ${res.status}`);
          return res;
        }),
    };
  }

  private upstreams(trustDomain: string, cluster: string, config: PsatClusterConfig): PsatUpstreams {
    const key = `k8s_psat/${trustDomain}/${cluster}`;
    const url = config.jwksUrl ?? '';
    const fetchJwks = (): Promise<JSONWebKeySet> =>
      this.guard.run(key, async () => {
        let res;
        try {
          res = await requestJson('GET', url, undefined, { ca: config.jwksCaCertificates, checkServerName: true, timeoutMs: UPSTREAM_TIMEOUT_MS, maxBytes: UPSTREAM_MAX_BYTES });
        } catch (err) {
          throw new UpstreamError(`cannot fetch the cluster JWKS from ${url}: ${(err as Error).message}`);
        }
        return jwksOf(res.status, res.body);
      });
    return {
      kubeApi: () => this.kubeApi(key, trustDomain, cluster, config),
      jwks: (refresh) => this.jwks.get(`${url}\n${sha256(config.jwksCaCertificates ?? '')}`, fetchJwks, refresh),
    };
  }

  attestPsat(req: { trustDomain: string; cluster: string; token: string; csr: string }, source: string): Promise<IssuedX509Svid> {
    return this.guarded(source, { method: 'k8s_psat', trustDomain: req.trustDomain }, async () => {
      const csr = verifyCsr(decodeCsrText(req.csr));
      const rec = await this.deps.store.get(req.trustDomain, 'k8s_psat', req.cluster);
      if (!rec) throw new CairnError('unauthenticated', `no Kubernetes cluster "${req.cluster}" is configured for ${req.trustDomain}`);
      const config = rec.config as PsatClusterConfig;
      if (config.disabled) {
        this.deps.logger.warn({ event: 'attestor.disabled', trustDomain: req.trustDomain, cluster: req.cluster, reason: config.disabled }, 'attestation refused: the cluster configuration is disabled');
        throw attestorUnavailable(60);
      }
      const now = this.deps.clock.now();
      const who = await validatePsat(req.token, config, now, this.upstreams(req.trustDomain, req.cluster, config));
      const selectors = [
        `k8s_psat:cluster:${req.cluster}`,
        `k8s_psat:agent_ns:${who.namespace}`,
        `k8s_psat:agent_sa:${who.serviceAccount}`,
        `k8s_psat:agent_pod_name:${who.podName}`,
        `k8s_psat:agent_pod_uid:${who.podUid}`,
        `k8s_psat:agent_node_name:${who.nodeName}`,
        `k8s_psat:agent_node_uid:${who.nodeUid}`,
        ...Object.entries(who.podLabels).map(([k, v]) => `k8s_psat:agent_pod_label:${k}:${v}`),
        ...Object.entries(who.nodeLabels).map(([k, v]) => `k8s_psat:agent_node_label:${k}:${v}`),
      ];
      const spiffeId = `spiffe://${req.trustDomain}/cairn/agent/k8s_psat/${req.cluster}/${who.nodeUid}`;
      // The token is marked used in the enrollment's own transaction: a CA killed before it commits
      // leaves the token usable, so the agent's retry is not stuck until the kubelet rotates it.
      const markUsed = async (tx: Queryable): Promise<void> => {
        if (!(await this.deps.store.recordUse(who.credentialHash, who.expiresAt, now, tx))) {
          throw new CairnError('unauthenticated', 'this service-account token was already used to attest; the kubelet rotates it, send the fresh one');
        }
      };
      const grant = { trustDomain: req.trustDomain, spiffeId, selectors, issuedTo: `k8s_psat:${req.cluster}`, banSubjects: [nodeUidSubject(who.nodeUid)] };
      return this.deps.enrollment.enroll(grant, csr, 'agent', 'k8s_psat', markUsed);
    });
  }

  challengeX509Pop(req: { trustDomain: string; chain: string[] }, source: string): Promise<{ challengeId: string; nonce: string; expiresAt: string }> {
    return this.guarded(source, { method: 'x509pop', trustDomain: req.trustDomain }, async () => {
      // Counted before any certificate is parsed: every challenge asked for, answered or not.
      this.challengesPerSource.take(source);
      const chain = req.chain.map((c) => Buffer.from(c, 'base64'));
      const now = this.deps.clock.now();
      const attestors = await this.deps.store.list(req.trustDomain, 'x509pop');
      let matched: { name: string; verified: ReturnType<typeof verifyDeviceChain> } | undefined;
      let lastError: unknown;
      for (const a of attestors) {
        try {
          matched = { name: a.name, verified: verifyDeviceChain(chain, a.config as X509PopConfig, now) };
          break;
        } catch (err) {
          lastError = err;
        }
      }
      if (!matched) throw lastError instanceof CairnError ? lastError : new CairnError('unauthenticated', `no manufacturer CA is configured for ${req.trustDomain}`);
      const who = deviceIdentity(chain, matched.verified);
      // A banned device hears so now, before anything is stored for it.
      await this.deps.bans.refuseBanned(req.trustDomain, nodeSubjects(agentIdOf(req.trustDomain, who.fingerprint), [fingerprintSubject(who.fingerprint)]));
      const challenge = {
        id: randomAlphanumeric(this.deps.random, 24), trustDomain: req.trustDomain, attestor: matched.name, fingerprint: who.fingerprint, publicKey: who.publicKey,
        anchor: who.anchor, validUntil: who.validUntil, selectors: who.selectors, nonce: this.deps.random.bytes(32), expiresAt: new Date(now.getTime() + CHALLENGE_TTL_MS),
      };
      const stored = await this.deps.store.createChallenge(challenge, now, this.caps);
      if (!stored.created) {
        throw new CairnError('rate_limited', stored.scope === 'certificate' ? 'too many outstanding challenges for this device certificate; answer one or retry later' : 'too many outstanding x509pop challenges; retry later', {
          details: { retryAfterSeconds: Math.max(1, Math.ceil((stored.retryAt.getTime() - now.getTime()) / 1000)) },
        });
      }
      return { challengeId: challenge.id, nonce: challenge.nonce.toString('base64'), expiresAt: challenge.expiresAt.toISOString() };
    });
  }

  attestX509Pop(req: { challengeId: string; signature: string; csr: string }, source: string): Promise<IssuedX509Svid> {
    return this.guarded(source, { method: 'x509pop' }, async () => {
      const csr = verifyCsr(decodeCsrText(req.csr));
      const now = this.deps.clock.now();
      const challenge = await this.deps.store.getChallenge(req.challengeId, now);
      if (!challenge) throw new CairnError('unauthenticated', 'unknown, expired or already answered challenge; ask for a new one');
      try {
        verifyPossession(challenge.publicKey, challenge.nonce, Buffer.from(req.signature, 'base64'));
        // The configuration may have changed since the challenge: the CA it chained to must still be there.
        const rec = await this.deps.store.get(challenge.trustDomain, 'x509pop', challenge.attestor);
        if (!rec) throw new CairnError('unauthenticated', 'the manufacturer CA configuration was removed');
        if (challenge.validUntil <= now || !anchorStillTrusted(rec.config as X509PopConfig, challenge.anchor, now)) {
          throw new CairnError('unauthenticated', 'the device certificate no longer chains to a manufacturer CA of this trust domain');
        }
      } catch (err) {
        // One answer per challenge, right or wrong (the refusal is what the caller needs to hear).
        await this.deps.store.deleteChallenge(challenge.id).catch(() => undefined);
        throw err;
      }
      // Taken in the enrollment's transaction: a CA killed before it commits leaves the challenge
      // answerable, and of two racing answers only one commits.
      const answer = async (tx: Queryable): Promise<void> => {
        if (!(await this.deps.store.deleteChallenge(challenge.id, tx))) throw new CairnError('unauthenticated', 'unknown, expired or already answered challenge; ask for a new one');
      };
      const grant = {
        trustDomain: challenge.trustDomain, spiffeId: agentIdOf(challenge.trustDomain, challenge.fingerprint), selectors: challenge.selectors,
        issuedTo: `x509pop:${challenge.attestor}`, banSubjects: [fingerprintSubject(challenge.fingerprint)],
      };
      return this.deps.enrollment.enroll(grant, csr, 'agent', 'x509pop', answer);
    });
  }
}

const agentIdOf = (trustDomain: string, fingerprint: string): string => `spiffe://${trustDomain}/cairn/agent/x509pop/${fingerprint}`;
