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
import { normalizeSelectors, parseId } from '../entries/validation.js';
import { checkSelectors } from '../entries/selectors.js';
import type { TrustDomainStore } from '../trust-domains/store.js';
import type { Queryable } from '../db/database.js';
import type { RedeemedToken, TokenKind, TokenStore } from './store.js';

export type RedeemResult = { readonly ok: true; readonly token: RedeemedToken } | { readonly ok: false; readonly guess: boolean };

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
}

export interface CreatedToken {
  readonly id: string;
  readonly kind: TokenKind;
  readonly token: string;
  readonly expiresAt: Date;
  readonly spiffeId: string;
}

export interface TokenDeps {
  readonly store: TokenStore;
  readonly trustDomains: TrustDomainStore;
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  /** Where bootstrappers reach the CA's TLS endpoint, and the pin of its trust anchor. */
  readonly endpoint: () => Promise<{ url: string; pin: string }>;
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
    const secret = this.deps.random.bytes(32).toString('base64url');
    const now = this.deps.clock.now();
    const expiresAt = addSeconds(now, ttl);
    await this.deps.store.insert({
      id, trustDomain: td.name, kind, secretHash: hashSecret(secret), spiffeId: bound?.toString() ?? null, selectors, expiresAt, createdBy: actor, createdAt: now,
    });
    const { url, pin } = await this.deps.endpoint();
    const spiffeId = bound?.toString() ?? defaultAgentId(td.name, id);
    this.deps.logger.info({ event: 'token.created', tokenId: id, kind, trustDomain: td.name, spiffeId, expiresAt: expiresAt.toISOString(), actor }, 'one-time token created');
    return { id, kind, token: encodeBootstrapToken({ v: 1, kind, id, td: td.name, url, pin }, secret), expiresAt, spiffeId };
  }

  recordIssued(q: Queryable, tokenId: string, svidDer: Buffer): Promise<void> {
    return this.deps.store.recordIssued(q, tokenId, svidDer);
  }

  /** The trust domain a token claims, read without the database; undefined when it is not a token at all. */
  claimedTrustDomain(text: string): string | undefined {
    try {
      return parseBootstrapToken(text).claims.td;
    } catch {
      return undefined;
    }
  }

  /**
   * Consumes the token (even an expired one) and returns what it grants. A failure says whether
   * it looked like a guess (no token with that id and secret) or a replay of a real one, so only
   * guesses count toward rate limiting; the client sees the same answer either way. A `repeat`
   * (see TokenStore.redeem) is the caller's to answer or refuse; `q` is the caller's transaction.
   */
  async redeem(text: string, kind: TokenKind, q?: Queryable): Promise<RedeemResult> {
    let parsed;
    try {
      parsed = parseBootstrapToken(text);
    } catch {
      return { ok: false, guess: true };
    }
    const now = this.deps.clock.now();
    const hash = hashSecret(parsed.secret);
    const redeemed = await this.deps.store.redeem(parsed.claims.id, hash, now, q);
    if (!redeemed) return { ok: false, guess: !(await this.deps.store.matches(parsed.claims.id, hash, q)) };
    if (!redeemed.repeat) this.deps.logger.info({ event: 'token.redeemed', tokenId: redeemed.id, kind: redeemed.kind, trustDomain: redeemed.trustDomain }, 'one-time token redeemed');
    if (redeemed.expiresAt <= now || redeemed.kind !== kind) return { ok: false, guess: false };
    return { ok: true, token: redeemed };
  }
}
