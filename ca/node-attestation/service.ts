import type { JSONWebKeySet } from 'jose';
import type { Clock } from '../../lib/clock.js';
import type { Queryable } from '../db/database.js';
import { CairnError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { randomAlphanumeric, type Random } from '../../lib/random.js';
import { fingerprintSubject, nodeSubjects, nodeUidSubject, type BanService } from '../bans/service.js';
import type { FailureLimiter } from '../enrollment/failure-limiter.js';
import type { EnrollmentService } from '../enrollment/service.js';
import { decodeCsrText, verifyCsr } from '../issuance/csr.js';
import type { IssuedX509Svid } from '../issuance/service.js';
import type { TrustDomainService } from '../trust-domains/service.js';
import { JwksCache, validatePsat, type PsatClusterConfig } from './psat.js';
import { WindowLimiter } from './rate-limit.js';
import type { AttestorKind, AttestorRecord, ChallengeCaps, NodeAttestationStore } from './store.js';
import { anchorStillTrusted, deviceIdentity, parseManufacturerCas, verifyDeviceChain, verifyPossession, type X509PopConfig } from './x509pop.js';

export interface NodeAttestationDeps {
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  readonly store: NodeAttestationStore;
  readonly enrollment: EnrollmentService;
  readonly trustDomains: TrustDomainService;
  readonly bans: BanService;
  readonly limiter: FailureLimiter;
  /** Where agents reach the TLS listener, and the pin of its authority. */
  readonly endpoint: () => Promise<{ url: string; pin: string }>;
  readonly limits?: Partial<NodeAttestationLimits>;
}

export interface NodeAttestationLimits {
  readonly challenges: ChallengeCaps;
  /** x509pop challenges handed out per source address per minute, successes included. */
  readonly challengesPerSourcePerMinute: number;
}

const DEFAULT_LIMITS: NodeAttestationLimits = {
  challenges: { perCertificate: 5, total: 10_000 },
  challengesPerSourcePerMinute: 60,
};

/** A cluster as an admin sends it: the stored configuration before defaults and validation. */
export type PsatClusterInput = Omit<PsatClusterConfig, 'audience' | 'jwks'> & {
  readonly audience?: string | undefined;
  readonly jwks?: unknown;
};

export const DEFAULT_PSAT_AUDIENCE = 'cairn-ca';
const CHALLENGE_TTL_MS = 60_000;
/** Attestor names become SPIFFE ID path segments. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const SERVICE_ACCOUNT = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

function checkName(name: string, what: string): string {
  if (!NAME.test(name)) throw new CairnError('invalid_request', `${what} must be 1–63 letters, digits, ".", "_" or "-", starting with a letter or digit`);
  return name;
}

/**
 * Node attestation that is re-attestable, unlike join tokens: Kubernetes PSAT and x509pop. Each
 * success goes through the same enrollment as a join token (ban check, node record, first SVID).
 */
export class NodeAttestationService {
  private readonly jwks: JwksCache;
  private readonly challengesPerSource: WindowLimiter;
  private readonly caps: ChallengeCaps;

  constructor(private readonly deps: NodeAttestationDeps) {
    this.jwks = new JwksCache(deps.clock);
    this.challengesPerSource = new WindowLimiter(deps.clock, deps.limits?.challengesPerSourcePerMinute ?? DEFAULT_LIMITS.challengesPerSourcePerMinute, 60, 'x509pop challenges');
    this.caps = deps.limits?.challenges ?? DEFAULT_LIMITS.challenges;
  }

  // ---- admin

  async configurePsatCluster(trustDomain: string, cluster: string, input: PsatClusterInput, actor: string): Promise<AttestorRecord> {
    await this.deps.trustDomains.get(trustDomain);
    checkName(cluster, 'the cluster name');
    if (input.allowedServiceAccounts.length === 0) throw new CairnError('invalid_request', 'allowedServiceAccounts must name at least one namespace:serviceaccount (an empty list would authorize nobody)');
    for (const sa of input.allowedServiceAccounts) {
      if (!SERVICE_ACCOUNT.test(sa)) throw new CairnError('invalid_request', `"${sa}" is not namespace:serviceaccount`);
    }
    const config: PsatClusterConfig = { mode: input.mode, audience: input.audience ?? DEFAULT_PSAT_AUDIENCE, allowedServiceAccounts: [...new Set(input.allowedServiceAccounts)] };
    let full: PsatClusterConfig;
    if (input.mode === 'jwks' && input.jwksUrl !== undefined) {
      if (input.jwks !== undefined) throw new CairnError('invalid_request', 'give the JWKS inline or its URL, not both');
      if (!/^https:\/\/\S+$/.test(input.jwksUrl)) throw new CairnError('invalid_request', 'jwksUrl must be an https URL (e.g. <issuer>/openid/v1/jwks)');
      if (!input.issuer || !/^https:\/\/\S+$/.test(input.issuer)) throw new CairnError('invalid_request', 'offline validation needs the service-account issuer (an https URL, as in the tokens\' iss)');
      full = { ...config, issuer: input.issuer, jwksUrl: input.jwksUrl, jwksCaFile: input.jwksCaFile };
    } else if (input.mode === 'jwks') {
      const keys = (input.jwks as { keys?: unknown } | undefined)?.keys;
      if (!Array.isArray(keys) || keys.length === 0 || !keys.every((k) => typeof k === 'object' && k !== null && typeof (k as { kty?: unknown }).kty === 'string')) {
        throw new CairnError('invalid_request', 'offline validation needs the cluster JWKS ({"keys": [...]}, from <issuer>/openid/v1/jwks)');
      }
      if (keys.some((k) => 'd' in (k as object))) throw new CairnError('invalid_request', 'the JWKS must hold public keys only');
      if (!input.issuer || !/^https:\/\/\S+$/.test(input.issuer)) throw new CairnError('invalid_request', 'offline validation needs the service-account issuer (an https URL, as in the tokens\' iss)');
      full = { ...config, issuer: input.issuer, jwks: input.jwks as JSONWebKeySet };
    } else {
      if (input.apiServer !== undefined && !/^https:\/\/\S+$/.test(input.apiServer)) throw new CairnError('invalid_request', 'apiServer must be an https URL');
      full = { ...config, apiServer: input.apiServer, apiCaFile: input.apiCaFile, apiTokenFile: input.apiTokenFile };
    }
    const rec = await this.deps.store.upsert(trustDomain, 'k8s_psat', cluster, full, this.deps.clock.now());
    this.deps.logger.info({ event: 'attestor.configured', trustDomain, kind: 'k8s_psat', name: cluster, mode: input.mode, actor }, 'k8s_psat cluster configured');
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

  private async guarded<T>(source: string, fn: () => Promise<T>): Promise<T> {
    this.deps.limiter.check(source);
    try {
      return await fn();
    } catch (err) {
      if (err instanceof CairnError && (err.code === 'unauthenticated' || err.code === 'permission_denied' || err.code === 'agent_banned')) this.deps.limiter.fail(source);
      throw err;
    }
  }

  attestPsat(req: { trustDomain: string; cluster: string; token: string; csr: string }, source: string): Promise<IssuedX509Svid> {
    return this.guarded(source, async () => {
      const csr = verifyCsr(decodeCsrText(req.csr));
      const rec = await this.deps.store.get(req.trustDomain, 'k8s_psat', req.cluster);
      if (!rec) throw new CairnError('unauthenticated', `no Kubernetes cluster "${req.cluster}" is configured for ${req.trustDomain}`);
      const now = this.deps.clock.now();
      const who = await validatePsat(req.token, rec.config as PsatClusterConfig, now, this.jwks);
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
    return this.guarded(source, async () => {
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
    return this.guarded(source, async () => {
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
