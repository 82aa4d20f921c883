import type { AuditAppender } from '../audit/port.js';
import { createHash } from 'node:crypto';
import { validateTrustDomainName } from '../trust-domains/service.js';
import { encodeBootstrapToken, parseBootstrapToken } from '../../contract/bootstrap-token.js';
import type { Clock } from '../../lib/clock.js';
import { addSeconds } from '../../lib/clock.js';
import { CairnError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { randomAlphanumeric, type Random } from '../../lib/random.js';
import { SpiffeId } from '../../spiffe/id.js';
import { checkTtl } from '../issuance/policy.js';
import { isReserved } from '../issuance/reserved.js';
import { normalizeSelectors, parseId, parseTrustDomains } from '../entries/validation.js';
import { checkFederatesWith, type FederationFacts } from '../entries/service.js';
import { checkSelectors } from '../entries/selectors.js';
import type { TrustDomainStore } from '../trust-domains/store.js';
import type { Queryable } from '../db/database.js';
import type { RedeemedToken, TokenKind, TokenStore } from './store.js';

/**
 * Why a token was refused. The caller always gets the same answer (invalid_token, no oracle); the
 * reason goes to the audit log. `malformed` and `unknown` are guesses; the others come from someone
 * holding a real token.
 */
export type TokenRefusal = 'malformed' | 'unknown' | 'used' | 'expired' | 'wrong_kind' | 'tampered';

export const isGuess = (reason: TokenRefusal): boolean => reason === 'malformed' || reason === 'unknown';

export type RedeemResult = { readonly ok: true; readonly token: RedeemedToken } | { readonly ok: false; readonly reason: TokenRefusal; readonly tokenId?: string | undefined };

/** A presented token that can be answered: unspent, or spent with an SVID its key may fetch again. */
export interface ScreenedToken {
  readonly ok: true;
  readonly tokenId: string;
  readonly trustDomain: string;
  /** Set when the token is spent: only a CSR for this SVID's key can be answered (with this SVID). */
  readonly issuedSvid: Buffer | undefined;
}

export type ScreenResult = ScreenedToken | { readonly ok: false; readonly reason: TokenRefusal; readonly tokenId?: string | undefined };

export const TOKEN_TTL = { default: 600, min: 30, max: 86400 } as const;

export interface CreateTokenInput {
  readonly trustDomain: string;
  readonly ttlSeconds?: number | undefined;
  /** Join token: the agent ID to issue instead of /cairn/agent/join_token/<id>. */
  readonly agentId?: string | undefined;
  /** Workload credential: the one SPIFFE ID it can ever obtain. */
  readonly spiffeId?: string | undefined;
  readonly selectors?: readonly string[] | undefined;
  /** Accept node selectors of types Cairn does not know (request-only). */
  readonly allowUnknownSelectorTypes?: boolean | undefined;
  /** Workload credential: foreign trust domains whose bundles the device gets at redemption and every renewal. */
  readonly federatesWith?: readonly string[] | undefined;
}

export interface CreatedToken {
  readonly id: string;
  readonly kind: TokenKind;
  readonly token: string;
  readonly expiresAt: Date;
  readonly spiffeId: string;
  readonly federatesWith: readonly string[];
}

export interface TokenDeps {
  readonly store: TokenStore;
  readonly trustDomains: TrustDomainStore;
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  /** Where bootstrappers reach the CA's TLS endpoint, and the pin of its trust anchor. */
  readonly endpoint: () => Promise<{ url: string; pin: string }>;
  readonly audit: AuditAppender;
  /** Which foreign trust domains a workload credential may federate with: the entries' rule. */
  readonly federation: FederationFacts;
}

const hashSecret = (secret: string): Buffer => createHash('sha256').update(secret, 'utf8').digest();

export const defaultAgentId = (trustDomain: string, tokenId: string): string => `spiffe://${trustDomain}/cairn/agent/join_token/${tokenId}`;

/** One answer for unknown, used, expired and malformed tokens: no oracle. */
export const invalidToken = (): CairnError => new CairnError('invalid_token', 'the token is not valid (unknown, already used, or expired)');

export class TokenService {
  constructor(private readonly deps: TokenDeps) {}

  async create(input: CreateTokenInput, actor: string): Promise<CreatedToken> {
    if (input.agentId && input.spiffeId) throw new CairnError('invalid_request', 'give either agentId (join token) or spiffeId (workload credential), not both');
    const td = await this.deps.trustDomains.get(validateTrustDomainName(input.trustDomain));
    if (!td) throw new CairnError('trust_domain_not_found', `trust domain ${input.trustDomain} does not exist`);
    const ttl = checkTtl(input.ttlSeconds ?? TOKEN_TTL.default, TOKEN_TTL, 'ttlSeconds');
    const kind: TokenKind = input.spiffeId ? 'workload' : 'join';
    const id = randomAlphanumeric(this.deps.random, 20);
    let bound: SpiffeId | undefined;
    const given = input.spiffeId ?? input.agentId;
    if (given) {
      bound = parseId(given, kind === 'workload' ? 'spiffeId' : 'agentId');
      if (!bound.memberOf(td.name)) throw new CairnError('wrong_trust_domain', `${bound.toString()} is not in trust domain ${td.name}`);
      if (bound.isTrustDomainId) throw new CairnError('invalid_spiffe_id', 'the SPIFFE ID must have a path');
      const agentNamespace = kind === 'join' && bound.hasPathPrefix('/cairn/agent');
      if (isReserved(bound) && !agentNamespace) throw new CairnError('reserved_spiffe_id', 'IDs under /cairn/ are reserved (agents may use /cairn/agent/…)');
    }
    const selectors = normalizeSelectors(input.selectors ?? [], { allowEmpty: true });
    checkSelectors(selectors, 'token', { allowUnknownTypes: input.allowUnknownSelectorTypes });
    if (kind === 'join' && (input.federatesWith?.length ?? 0) > 0) {
      throw new CairnError('invalid_request', 'federatesWith is for workload credentials (with spiffeId): an agent\'s workloads federate through their registration entries');
    }
    const federatesWith = parseTrustDomains(input.federatesWith ?? [], td.name);
    await checkFederatesWith(this.deps.federation, td.name, federatesWith);
    const secret = this.deps.random.bytes(32).toString('base64url');
    const now = this.deps.clock.now();
    const expiresAt = addSeconds(now, ttl);
    const spiffeId = bound?.toString() ?? defaultAgentId(td.name, id);
    await this.deps.store.transaction(async (tx) => {
      await this.deps.store.insert({
        id, trustDomain: td.name, kind, secretHash: hashSecret(secret), spiffeId: bound?.toString() ?? null, selectors, federatesWith, expiresAt, createdBy: actor, createdAt: now,
      }, tx);
      // never the token or its secret: its id names it
      await this.deps.audit.append(tx, [{ event: 'token.minted', actor, subject: { tokenId: id, kind, trustDomain: td.name, spiffeId, selectors: [...selectors], ...(federatesWith.length > 0 ? { federatesWith } : {}), expiresAt: expiresAt.toISOString() } }]);
    });
    const { url, pin } = await this.deps.endpoint();
    this.deps.logger.info({ event: 'token.created', tokenId: id, kind, trustDomain: td.name, spiffeId, expiresAt: expiresAt.toISOString(), actor }, 'one-time token created');
    return { id, kind, token: encodeBootstrapToken({ v: 1, kind, id, td: td.name, url, pin }, secret), expiresAt, spiffeId, federatesWith };
  }

  recordIssued(q: Queryable, tokenId: string, svidDer: Buffer): Promise<void> {
    return this.deps.store.recordIssued(q, tokenId, svidDer);
  }

  /**
   * Whether a presented token can be answered, from one indexed read and no cryptography, so that
   * refusals stay cheap and nothing costly (a CSR signature check, the issuer's keys) is done for a
   * guess. A real token that can never be answered but is still unspent (expired, or presented for
   * the other purpose) is spent here, as redemption would. Advisory for the rest: `redeem` decides.
   */
  async screen(text: string, kind: TokenKind): Promise<ScreenResult> {
    let parsed;
    try {
      parsed = parseBootstrapToken(text);
    } catch {
      return { ok: false, reason: 'malformed' };
    }
    const tokenId = parsed.claims.id;
    const hash = hashSecret(parsed.secret);
    const found = await this.deps.store.find(tokenId, hash);
    if (!found) return { ok: false, reason: 'unknown', tokenId };
    // The claims are not signed: one edited to name another trust domain is refused, and stays unspent.
    if (found.trustDomain !== parsed.claims.td) return { ok: false, reason: 'tampered', tokenId };
    const now = this.deps.clock.now();
    const unanswerable: TokenRefusal | undefined = found.kind !== kind ? 'wrong_kind' : found.expiresAt <= now ? 'expired' : undefined;
    if (unanswerable) {
      if (!found.used) await this.deps.store.redeem(tokenId, hash, found.trustDomain, now);
      return { ok: false, reason: unanswerable, tokenId };
    }
    if (found.used && !found.issuedSvid) return { ok: false, reason: 'used', tokenId };
    return { ok: true, tokenId, trustDomain: found.trustDomain, issuedSvid: found.used ? found.issuedSvid : undefined };
  }

  /**
   * Consumes the token (even an expired one) and returns what it grants, or why it was refused. A
   * `repeat` (see TokenStore.redeem) is the caller's to answer or refuse; `q` is the caller's
   * transaction.
   */
  async redeem(text: string, kind: TokenKind, q?: Queryable): Promise<RedeemResult> {
    let parsed;
    try {
      parsed = parseBootstrapToken(text);
    } catch {
      return { ok: false, reason: 'malformed' };
    }
    const tokenId = parsed.claims.id;
    const now = this.deps.clock.now();
    const hash = hashSecret(parsed.secret);
    const redeemed = await this.deps.store.redeem(tokenId, hash, parsed.claims.td, now, q);
    if (!redeemed) {
      const found = await this.deps.store.find(tokenId, hash, q);
      return { ok: false, reason: !found ? 'unknown' : found.trustDomain !== parsed.claims.td ? 'tampered' : 'used', tokenId };
    }
    if (redeemed.expiresAt <= now) return { ok: false, reason: 'expired', tokenId };
    if (redeemed.kind !== kind) return { ok: false, reason: 'wrong_kind', tokenId };
    return { ok: true, token: redeemed };
  }
}
