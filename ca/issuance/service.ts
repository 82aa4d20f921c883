import type { Clock } from '../../lib/clock.js';
import { addSeconds, minDate } from '../../lib/clock.js';
import { CairnError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { randomSerial, randomSerials, type Random } from '../../lib/random.js';
import type { SpiffeId } from '../../spiffe/id.js';
import type { ActiveAuthority, AuthorityService } from '../authority/service.js';
import { NOT_BEFORE_CUSHION_SECONDS } from '../authority/service.js';
import type { Database, Queryable } from '../db/database.js';
import { NO_METRICS, type IssuanceMetrics } from '../metrics/ca-metrics.js';
import type { AuditAppender } from '../audit/port.js';
import type { InventoryStore } from '../inventory/store.js';
import type { VerifiedCsr } from './csr.js';
import { buildLeafTbs, signCertificate } from './leaf-template.js';
import type { BatchItem, IssuancePool } from './batch-pool.js';
import { normalizeAudiences, type X509Policy } from './policy.js';

export interface IssuanceDeps {
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  readonly authority: AuthorityService;
  readonly inventory: InventoryStore;
  readonly pool: IssuancePool;
  readonly metrics?: IssuanceMetrics;
  /** Every SVID issued is an audit entry, written with its inventory row. */
  readonly audit: AuditAppender;
  readonly db: Database;
}

/** The outcome label of a failed issuance: its error code when it has one. */
const failureOf = (err: unknown): string => (err instanceof CairnError ? err.code : 'internal');

/** A trust domain that does not exist is not counted: its name is the caller's, and would become a label. */
const countable = (err: unknown): boolean => !(err instanceof CairnError && err.code === 'trust_domain_not_found');

export interface CsrRequest {
  /** The CSR, DER; verified (proof of possession) as part of issuance. */
  readonly der: Buffer;
  readonly policy: X509Policy;
  /** The registration entry the SVID is for, recorded in the inventory (an admin entry's SVIDs are admin credentials). */
  readonly entryId?: string | undefined;
  /** The workload identity template it was rendered from, recorded likewise (an admin template's SVIDs are admin credentials). */
  readonly templateId?: string | undefined;
}

export type BatchIssueResult = { readonly svid: IssuedX509Svid } | { readonly error: CairnError };

export interface X509Request {
  readonly csr: VerifiedCsr;
  readonly policy: X509Policy;
}

export interface IssuedX509Svid {
  readonly spiffeId: string;
  /** DER, leaf first; under an upstream authority the CA certificate and the upstream intermediates follow. */
  readonly chain: Buffer[];
  readonly serial: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** DER of the trust domain's X.509 trust anchors at issuance time (under an upstream: its roots). */
  readonly bundle: Buffer[];
}

/** Signing for one trust domain, bound to its active authority; see IssuanceService.x509IssuerFor. */
export interface X509Issuer {
  /** DER of the trust domain's X.509 authorities, as sent with each SVID. */
  readonly bundle: Buffer[];
  /** What follows a leaf the active authority signs (its CA certificate and upstream intermediates; none when self-signed). */
  readonly intermediates: readonly Buffer[];
  /** Signs and writes the inventory rows, in `tx` when given (they commit with it or not at all). */
  issue(requests: readonly X509Request[], issuedTo: string, tx?: Queryable): Promise<IssuedX509Svid[]>;
  /** The audit log line, once the SVIDs are committed. */
  announce(issued: readonly IssuedX509Svid[], issuedTo: string): void;
}

export interface JwtRequest {
  readonly spiffeId: SpiffeId;
  readonly audience: readonly string[];
  /** Absent: the trust domain's default JWT-SVID TTL. */
  readonly ttlSeconds?: number | undefined;
}

export interface MintedJwtSvid {
  readonly spiffeId: string;
  readonly token: string;
  readonly issuedAt: Date;
  readonly expiresAt: Date;
}

/**
 * Issuance as a pipeline: the caller's authorization produced a policy; here it is checked against
 * the authority (trust domain, lifetime within the CA's), written into the template, signed, and
 * recorded in the inventory before anything leaves.
 */
export class IssuanceService {
  private readonly metrics: IssuanceMetrics;

  constructor(private readonly deps: IssuanceDeps) {
    this.metrics = deps.metrics ?? NO_METRICS;
  }

  async issueX509(trustDomain: string, requests: readonly X509Request[], issuedTo: string): Promise<IssuedX509Svid[]> {
    const issuer = await this.x509IssuerFor(trustDomain);
    const issued = await issuer.issue(requests, issuedTo);
    issuer.announce(issued, issuedTo);
    return issued;
  }

  /**
   * Reads what signing needs up front, so that signing and the inventory row can join a caller's
   * transaction (with a token's redemption, a node's record): a crash anywhere before its commit
   * leaves no trace, and nothing is recorded without the rest.
   */
  async x509IssuerFor(trustDomain: string): Promise<X509Issuer> {
    const authority = await this.deps.authority.active(trustDomain);
    const bundle = await this.deps.authority.x509Bundle(trustDomain);
    return {
      bundle,
      intermediates: authority.x509.intermediates ?? [],
      issue: async (requests, issuedTo, tx) => {
        const done = this.metrics.issuance('x509', trustDomain);
        try {
          const now = this.deps.clock.now();
          const issued = await Promise.all(requests.map((r) => this.signOne(authority, r, now, bundle)));
          await this.record(trustDomain, issued, issuedTo, now, authority.x509.id, tx);
          done('ok', issued.length);
          return issued;
        } catch (err) {
          if (countable(err)) done(failureOf(err), requests.length);
          throw err;
        }
      },
      announce: (issued, issuedTo) => this.announce(trustDomain, issued, issuedTo),
    };
  }

  /**
   * The inventory rows and the audit entries, one multi-row INSERT each, in `tx` or a transaction of their own.
   * Each SVID's row names the authority that signed it, so `authority list` and `revoke` can count what it signed.
   */
  private async record(trustDomain: string, issued: readonly IssuedX509Svid[], issuedTo: string, now: Date, authorityId: string, tx?: Queryable, sources?: readonly { readonly entryId?: string | undefined; readonly templateId?: string | undefined }[]): Promise<void> {
    if (issued.length === 0) return;
    const write = async (q: Queryable): Promise<void> => {
      await this.deps.inventory.record(
        issued.map((s, i) => ({ serial: s.serial, trustDomain, spiffeId: s.spiffeId, notBefore: s.notBefore, notAfter: s.notAfter, issuedTo, issuedAt: now, authorityId, entryId: sources?.[i]?.entryId ?? null, templateId: sources?.[i]?.templateId ?? null })),
        q,
      );
      await this.deps.audit.append(q, issued.map((s, i) => ({
        event: 'x509_svid.issued',
        actor: issuedTo,
        subject: { trustDomain, spiffeId: s.spiffeId, serial: s.serial, notAfter: s.notAfter.toISOString(), issuedTo, entryId: sources?.[i]?.entryId, templateId: sources?.[i]?.templateId },
      })));
    };
    if (tx) await write(tx);
    else await this.deps.db.transaction(write);
  }

  private announce(trustDomain: string, issued: readonly IssuedX509Svid[], issuedTo: string): void {
    if (issued.length === 1) {
      const s = issued[0]!;
      this.deps.logger.info(
        { event: 'x509_svid.issued', trustDomain, spiffeId: s.spiffeId, serial: s.serial, notAfter: s.notAfter.toISOString(), issuedTo },
        'X.509-SVID issued',
      );
    } else if (issued.length > 1) {
      // One structured event per batch, naming every SVID: a line per certificate costs more than signing it.
      this.deps.logger.info(
        { event: 'x509_svid.issued_batch', trustDomain, issuedTo, svids: issued.map((s) => ({ spiffeId: s.spiffeId, serial: s.serial, notAfter: s.notAfter.toISOString() })) },
        'X.509-SVIDs issued',
      );
    }
  }

  /** The policy checked against the authority, turned into the certificate's variable fields. */
  private fieldsFor(authority: ActiveAuthority, policy: X509Policy, now: Date, serial: Buffer = randomSerial(this.deps.random)) {
    const { spiffeId, ttlSeconds, dnsNames } = policy;
    if (!spiffeId.memberOf(authority.trustDomain.name)) {
      throw new CairnError('wrong_trust_domain', `${spiffeId.toString()} is not in trust domain ${authority.trustDomain.name}`);
    }
    if (spiffeId.isTrustDomainId) throw new CairnError('invalid_spiffe_id', 'an X.509-SVID needs a SPIFFE ID with a path');
    const ttl = ttlSeconds ?? authority.trustDomain.x509SvidTtlSeconds;
    return {
      serial,
      // Whole seconds, as the certificate encodes them: the API, the inventory and the DER agree.
      notBefore: wholeSeconds(addSeconds(now, -NOT_BEFORE_CUSHION_SECONDS)),
      notAfter: wholeSeconds(minDate(addSeconds(now, ttl), authority.x509.notAfter)),
      spiffeId: spiffeId.toString(),
      dnsNames,
    };
  }

  private async signOne(authority: ActiveAuthority, req: X509Request, now: Date, bundle: Buffer[]): Promise<IssuedX509Svid> {
    const f = this.fieldsFor(authority, req.policy, now);
    const tbs = buildLeafTbs(authority.x509.template, { ...f, publicKey: req.csr.publicKey });
    return { spiffeId: f.spiffeId, chain: [signCertificate(authority.x509.template, tbs), ...(authority.x509.intermediates ?? [])], serial: f.serial.toString('hex'), notBefore: f.notBefore, notAfter: f.notAfter, bundle };
  }

  /**
   * A batch from CSR bytes: policies are checked here, then proof of possession, templating and
   * signing run on the issuance pool. Per-item failures come back as errors; every success is in
   * the inventory before the batch returns.
   */
  async issueX509Batch(trustDomain: string, requests: readonly CsrRequest[], issuedTo: string): Promise<BatchIssueResult[]> {
    const done = this.metrics.issuance('x509', trustDomain);
    let results: BatchIssueResult[];
    try {
      results = await this.batch(trustDomain, requests, issuedTo);
    } catch (err) {
      if (countable(err)) done(failureOf(err), requests.length);
      throw err;
    }
    const failures = new Map<string, number>();
    for (const r of results) if ('error' in r) failures.set(r.error.code, (failures.get(r.error.code) ?? 0) + 1);
    done('ok', results.length - [...failures.values()].reduce((a, b) => a + b, 0));
    for (const [code, n] of failures) done(code, n);
    return results;
  }

  private async batch(trustDomain: string, requests: readonly CsrRequest[], issuedTo: string): Promise<BatchIssueResult[]> {
    const authority = await this.deps.authority.active(trustDomain);
    const bundle = await this.deps.authority.x509Bundle(trustDomain);
    const now = this.deps.clock.now();
    const results: BatchIssueResult[] = new Array(requests.length);
    const items: BatchItem[] = [];
    const at: number[] = [];
    const serials = randomSerials(this.deps.random, requests.length);
    requests.forEach((r, i) => {
      try {
        const f = this.fieldsFor(authority, r.policy, now, serials[i]);
        items.push({ der: r.der, serial: f.serial, notBefore: f.notBefore.getTime(), notAfter: f.notAfter.getTime(), spiffeId: f.spiffeId, dnsNames: [...f.dnsNames] });
        at.push(i);
      } catch (err) {
        if (!(err instanceof CairnError)) throw err;
        results[i] = { error: err };
      }
    });
    const signed = await this.deps.pool.issueAll(authority.x509.template, items);
    const issued: IssuedX509Svid[] = [];
    const sources: { entryId?: string | undefined; templateId?: string | undefined }[] = [];
    signed.forEach((s, k) => {
      if (!s.ok) {
        results[at[k]!] = { error: s.error };
        return;
      }
      const item = items[k]!;
      const svid: IssuedX509Svid = {
        spiffeId: item.spiffeId,
        chain: [s.cert, ...(authority.x509.intermediates ?? [])],
        serial: Buffer.from(item.serial).toString('hex'),
        notBefore: new Date(item.notBefore),
        notAfter: new Date(item.notAfter),
        bundle,
      };
      issued.push(svid);
      sources.push({ entryId: requests[at[k]!]!.entryId, templateId: requests[at[k]!]!.templateId });
      results[at[k]!] = { svid };
    });
    await this.record(trustDomain, issued, issuedTo, now, authority.x509.id, undefined, sources);
    this.announce(trustDomain, issued, issuedTo);
    return results;
  }

  async mintJwt(trustDomain: string, req: JwtRequest, issuedTo: string): Promise<MintedJwtSvid> {
    const done = this.metrics.issuance('jwt', trustDomain);
    try {
      const minted = await this.mint(trustDomain, req, issuedTo);
      done('ok');
      return minted;
    } catch (err) {
      if (countable(err)) done(failureOf(err));
      throw err;
    }
  }

  private async mint(trustDomain: string, req: JwtRequest, issuedTo: string): Promise<MintedJwtSvid> {
    const authority = await this.deps.authority.active(trustDomain);
    if (!req.spiffeId.memberOf(trustDomain)) {
      throw new CairnError('wrong_trust_domain', `${req.spiffeId.toString()} is not in trust domain ${trustDomain}`);
    }
    if (req.spiffeId.isTrustDomainId) throw new CairnError('invalid_spiffe_id', 'a JWT-SVID needs a SPIFFE ID with a path');
    const minted = mintJwtSvid(authority, req, this.deps.clock.now());
    // written before the token leaves: a JWT-SVID the log cannot record is not handed out
    await this.deps.audit.record([{
      event: 'jwt_svid.minted',
      actor: issuedTo,
      subject: { trustDomain, spiffeId: minted.spiffeId, audience: normalizeAudiences(req.audience), expiresAt: minted.expiresAt.toISOString(), issuedTo },
    }]);
    // Before the token leaves: revoking this key later must know how long its tokens can be valid.
    await this.deps.authority.recordJwtExpiry(authority.jwt.kid, minted.expiresAt);
    this.deps.logger.info(
      { event: 'jwt_svid.minted', trustDomain, spiffeId: minted.spiffeId, audience: req.audience, expiresAt: minted.expiresAt.toISOString(), issuedTo },
      'JWT-SVID minted',
    );
    return minted;
  }
}

const wholeSeconds = (d: Date): Date => new Date(Math.floor(d.getTime() / 1000) * 1000);

/**
 * JWT-SVID per JWT-SVID.md: header exactly {alg, kid, typ:"JWT"}; claims sub, aud (array), exp, iat,
 * and iss when the trust domain has an issuer. Lifetime capped at the signing key's expiry.
 */
export function mintJwtSvid(authority: ActiveAuthority, req: JwtRequest, now: Date): MintedJwtSvid {
  const audience = normalizeAudiences(req.audience);
  const iat = Math.floor(now.getTime() / 1000);
  const exp = Math.min(iat + (req.ttlSeconds ?? authority.trustDomain.jwtSvidTtlSeconds), Math.floor(authority.jwt.notAfter.getTime() / 1000));
  const claims: Record<string, unknown> = { sub: req.spiffeId.toString(), aud: audience, exp, iat };
  if (authority.trustDomain.jwtIssuer) claims.iss = authority.trustDomain.jwtIssuer;
  const signingInput = `${authority.jwt.encodedHeader}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  const signature = authority.jwt.sign(Buffer.from(signingInput, 'latin1'));
  return {
    spiffeId: req.spiffeId.toString(),
    token: `${signingInput}.${signature.toString('base64url')}`,
    issuedAt: new Date(iat * 1000),
    expiresAt: new Date(exp * 1000),
  };
}
