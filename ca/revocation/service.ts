import type { AuditAppender } from '../audit/port.js';
import { createHash, type KeyObject } from 'node:crypto';
import type { Clock } from '../../lib/clock.js';
import { addSeconds } from '../../lib/clock.js';
import { CairnError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { SpiffeId } from '../../spiffe/id.js';
import { NOT_BEFORE_CUSHION_SECONDS } from '../authority/service.js';
import type { Sealer } from '../authority/sealing.js';
import { x509SignerOf } from '../authority/signers.js';
import type { AuthorityKey, AuthorityKeyStore } from '../authority/store.js';
import { notifyTrustDomain } from '../db/changes.js';
import type { Queryable } from '../db/database.js';
import type { TrustDomainStore } from '../trust-domains/store.js';
import type { TrustDomain } from '../trust-domains/model.js';
import { LookupBatcher } from '../../lib/lookup-batcher.js';
import { signCrl } from './crl.js';
import type { CurrentSvid, RevocationStore, RevokedSvid, StoredCrl } from './store.js';

export interface RevocationDeps {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly store: RevocationStore;
  readonly keys: AuthorityKeyStore;
  readonly trustDomains: TrustDomainStore;
  readonly sealer: Sealer;
  readonly audit: AuditAppender;
}

export interface RevokeRequest {
  readonly serial?: string | undefined;
  readonly spiffeId?: string | undefined;
  readonly trustDomain?: string | undefined;
  readonly reason?: string | undefined;
}

export interface RevokeOutcome {
  readonly trustDomain: string;
  /** Every SVID the request named, the ones revoked before included (with their first record). */
  readonly svids: readonly RevokedSvid[];
}

/** The CRLs of a trust domain as published now: one per published X.509 authority, the active one's first. */
export interface PublishedCrls {
  readonly crls: readonly StoredCrl[];
  /** The active authority's CRL (GET /td/{td}/crl). */
  readonly active: StoredCrl | undefined;
  /** Changes whenever any CRL's bytes change; agents pass it back in sync. */
  readonly digest: string;
}

/**
 * How long a CRL is good for: half the trust domain's X.509-SVID TTL, so a relying party never holds
 * a CRL older than half an SVID's life; at least 5 minutes (re-signing runs every minute), at most
 * 12 hours. It is re-signed when less than half of that remains.
 */
export function crlValiditySeconds(x509SvidTtlSeconds: number): number {
  return Math.min(43_200, Math.max(300, Math.floor(x509SvidTtlSeconds / 2)));
}

export const SERIAL_PATTERN = /^[0-9a-f]{1,64}$/;

const isX509 = (k: AuthorityKey): boolean => k.kind === 'x509' && k.certificate !== null;

export function crlDigest(crls: readonly StoredCrl[]): string {
  const h = createHash('sha256');
  for (const c of crls) h.update(c.der);
  return h.digest('base64url').slice(0, 27);
}

/**
 * Revocation of single X.509-SVIDs. A revoked serial is refused for node mTLS and renewal
 * (enrollment), announced to the agent holding it (sync), and listed until it expires in a CRL signed
 * by each published CA of its trust domain. Every CA's CRL lists all of the trust domain's revoked
 * serials: serials are random (16 bytes), so listing one under a CA that did not issue it names no
 * certificate, and no SVID is missed however the CAs rotated.
 */
export class RevocationService {
  /** Decrypted CRL-signing keys per authority id (the same material the issuer caches). */
  /** Opened CA keys by id, kept while their CA is published (a revoked authority's key is not kept). */
  private readonly signingKeys = new Map<string, { readonly trustDomain: string; readonly key: KeyObject }>();

  /** Every node mTLS request asks, and a whole fleet may ask at once: one query for all of them. */
  private readonly revokedSerials: LookupBatcher<string, true>;
  /** Every agent asks after a CRL change, all of them together: one query for all of them. */
  private readonly held: LookupBatcher<string, string[]>;

  constructor(private readonly deps: RevocationDeps) {
    this.revokedSerials = new LookupBatcher(async (serials) => new Map([...(await deps.store.revokedAmong(serials))].map((s) => [s, true as const])));
    this.held = new LookupBatcher((agents) => deps.store.heldByMany(agents, deps.clock.now()));
  }

  async revoke(req: RevokeRequest, actor: string): Promise<RevokeOutcome> {
    const { store, clock } = this.deps;
    if ((req.serial === undefined) === (req.spiffeId === undefined)) {
      throw new CairnError('invalid_request', 'give either serial or spiffeId: the SVID to revoke, or a SPIFFE ID whose current SVIDs are all revoked');
    }
    const serial = req.serial?.toLowerCase();
    if (serial !== undefined && !SERIAL_PATTERN.test(serial)) throw new CairnError('invalid_request', `serial must be the certificate's serial number in hex, got "${req.serial}"`);
    const spiffeId = req.spiffeId === undefined ? undefined : SpiffeId.parse(req.spiffeId);
    if (spiffeId && req.trustDomain !== undefined && spiffeId.trustDomain !== req.trustDomain) {
      throw new CairnError('wrong_trust_domain', `${spiffeId.toString()} is not in trust domain ${req.trustDomain}`);
    }
    const reason = req.reason?.trim() || null;
    const now = clock.now();
    const outcome = await store.transaction(async (tx) => {
      const found = (await store.current(tx, serial !== undefined ? { serial } : { spiffeId: spiffeId!.toString() }, now)).filter(
        (s) => req.trustDomain === undefined || s.trustDomain === req.trustDomain,
      );
      if (found.length === 0) throw notFound(serial, spiffeId?.toString(), req.trustDomain);
      const trustDomain = found[0]!.trustDomain;
      await this.deps.trustDomains.lock(tx, trustDomain);
      const fresh = found.filter((s) => s.revokedAt === null).map((s): RevokedSvid => revokedRecord(s, reason, now, actor));
      await store.add(tx, fresh);
      await this.deps.audit.append(tx, fresh.map((s) => ({ event: 'svid.revoked', actor, subject: { trustDomain, serial: s.serial, spiffeId: s.spiffeId, notAfter: s.notAfter.toISOString(), issuedTo: s.issuedTo, reason: reason ?? undefined } })));
      if (fresh.length > 0) {
        await this.resign(tx, trustDomain, now);
        await notifyTrustDomain(tx, trustDomain);
      }
      const byserial = new Map((await store.unexpired(trustDomain, now, tx)).map((r) => [r.serial, r]));
      return { trustDomain, svids: found.map((s) => byserial.get(s.serial) ?? revokedRecord(s, reason, now, actor)), fresh: fresh.length };
    });
    this.deps.logger.info(
      { event: 'svid.revoked', trustDomain: outcome.trustDomain, serials: outcome.svids.map((s) => s.serial), spiffeId: spiffeId?.toString(), newlyRevoked: outcome.fresh, reason, actor },
      'X.509-SVIDs revoked',
    );
    return { trustDomain: outcome.trustDomain, svids: outcome.svids };
  }

  /**
   * One indexed lookup in the caller's transaction `q`; without one, joined with the lookups of other
   * requests (LookupBatcher). A store error propagates as store_unavailable (a 503, never a refusal).
   */
  async isRevoked(serial: string, q?: Queryable): Promise<boolean> {
    return q ? this.deps.store.isRevoked(serial, q) : (await this.revokedSerials.get(serial)) === true;
  }

  /** Unexpired revoked serials of the SVIDs issued to one agent (sync tells it which to replace). */
  async heldBy(agentId: string): Promise<string[]> {
    return (await this.held.get(agentId)) ?? [];
  }

  /** The trust domain's revoked serials that have not expired (admin list). */
  list(trustDomain: string): Promise<RevokedSvid[]> {
    return this.deps.store.unexpired(trustDomain, this.deps.clock.now());
  }

  /**
   * The CRLs for the authorities published now (`published`: their ids and which is active), as sync
   * reads them on every long-poll round: one read, and a re-signing only when one is missing or due
   * (a trust domain created since the last housekeeping pass).
   */
  async published(trustDomain: TrustDomain, published: readonly AuthorityKey[]): Promise<PublishedCrls> {
    const stored = await this.deps.store.crls(trustDomain.name);
    if (due(published, stored, this.deps.clock.now(), crlValiditySeconds(trustDomain.x509SvidTtlSeconds))) {
      try {
        await this.refresh(trustDomain.name);
      } catch (err) {
        // Sync must not fail for a CRL (housekeeping warns and retries every minute): the stored ones go out.
        this.deps.logger.debug({ err, trustDomain: trustDomain.name }, 'CRL re-signing failed during sync; sending the stored CRLs');
        return this.select(stored, published);
      }
      return this.stored(trustDomain.name, published);
    }
    return this.select(stored, published);
  }

  /** The CRLs as stored, restricted to the authorities published now. */
  async stored(trustDomain: string, published: readonly AuthorityKey[]): Promise<PublishedCrls> {
    return this.select(await this.deps.store.crls(trustDomain), published);
  }

  private select(stored: readonly StoredCrl[], published: readonly AuthorityKey[]): PublishedCrls {
    const x509 = published.filter(isX509);
    const crls = stored.filter((c) => x509.some((k) => k.id === c.authorityId));
    const activeId = x509.find((k) => k.status === 'active')?.id;
    const active = crls.find((c) => c.authorityId === activeId);
    const ordered = active ? [active, ...crls.filter((c) => c !== active)] : crls;
    return { crls: ordered, active, digest: crlDigest(ordered) };
  }

  /** The CRLs to publish now, re-signed first when due (GET /td/{td}/crl). */
  async current(trustDomain: string): Promise<PublishedCrls> {
    await this.refresh(trustDomain);
    return this.stored(trustDomain, await this.deps.keys.published(trustDomain, this.deps.clock.now()));
  }

  /**
   * Re-signs the trust domain's CRLs when one is missing (a new CA), one belongs to a CA no longer
   * published, or one has less than half its validity left. Run every minute by housekeeping on every
   * replica; the trust domain's row lock makes one of them do it. Returns whether it re-signed.
   */
  async refresh(trustDomain: string): Promise<boolean> {
    const { store, keys, trustDomains, clock } = this.deps;
    const td = await trustDomains.get(trustDomain);
    if (!td) throw new CairnError('trust_domain_not_found', `trust domain ${trustDomain} does not exist`);
    const now = clock.now();
    if (!due(await keys.published(trustDomain, now), await store.crls(trustDomain), now, crlValiditySeconds(td.x509SvidTtlSeconds))) return false;
    return store.transaction(async (tx) => {
      const locked = await trustDomains.lock(tx, trustDomain);
      if (!locked) return false;
      if (!due(await keys.published(trustDomain, now, tx), await store.crls(trustDomain, tx), now, crlValiditySeconds(locked.x509SvidTtlSeconds))) return false;
      await this.resign(tx, trustDomain, now);
      await notifyTrustDomain(tx, trustDomain);
      this.deps.logger.debug({ event: 'crl.signed', trustDomain }, 'CRLs re-signed');
      return true;
    });
  }

  /** Signs a new CRL for every published CA, under the trust domain's row lock held by `tx`. */
  private async resign(tx: Queryable, trustDomain: string, now: Date): Promise<void> {
    const { store, keys, trustDomains } = this.deps;
    const td = await trustDomains.get(trustDomain, tx);
    if (!td) return;
    await store.prune(tx, trustDomain, now);
    // One after another: a transaction is one connection, which runs one statement at a time.
    const published = await keys.published(trustDomain, now, tx);
    const revoked = await store.unexpired(trustDomain, now, tx);
    const previous = await store.crls(trustDomain, tx);
    const thisUpdate = new Date(Math.floor(addSeconds(now, -NOT_BEFORE_CUSHION_SECONDS).getTime() / 1000) * 1000);
    const nextUpdate = new Date(Math.floor(addSeconds(now, crlValiditySeconds(td.x509SvidTtlSeconds)).getTime() / 1000) * 1000);
    const crls: StoredCrl[] = [];
    for (const key of published.filter(isX509)) {
      const crlNumber = (previous.find((c) => c.authorityId === key.id)?.crlNumber ?? 0) + 1;
      const der = await signCrl({
        caCertificate: key.certificate!, keyType: key.keyType, signingKey: this.signingKeyOf(key), crlNumber, thisUpdate, nextUpdate,
        revoked: revoked.map((r) => ({ serial: r.serial, revokedAt: r.revokedAt })),
      });
      crls.push({ authorityId: key.id, trustDomain, crlNumber, thisUpdate, nextUpdate, der });
    }
    await store.replaceCrls(tx, trustDomain, crls);
    for (const [id, held] of this.signingKeys) {
      if (held.trustDomain === trustDomain && !published.some((k) => k.id === id)) this.signingKeys.delete(id);
    }
  }

  private signingKeyOf(key: AuthorityKey): KeyObject {
    const held = this.signingKeys.get(key.id);
    if (held) return held.key;
    const opened = x509SignerOf(key, this.deps.sealer).template.signingKey;
    this.signingKeys.set(key.id, { trustDomain: key.trustDomain, key: opened });
    return opened;
  }
}

function due(published: readonly AuthorityKey[], crls: readonly StoredCrl[], now: Date, validitySeconds: number): boolean {
  const x509 = published.filter(isX509);
  if (crls.some((c) => !x509.some((k) => k.id === c.authorityId))) return true;
  return x509.some((k) => {
    const crl = crls.find((c) => c.authorityId === k.id);
    return !crl || crl.nextUpdate.getTime() - now.getTime() < (validitySeconds * 1000) / 2;
  });
}

function revokedRecord(s: CurrentSvid, reason: string | null, now: Date, actor: string): RevokedSvid {
  return { serial: s.serial, trustDomain: s.trustDomain, spiffeId: s.spiffeId, issuedTo: s.issuedTo, notAfter: s.notAfter, reason, revokedAt: now, revokedBy: actor };
}

function notFound(serial: string | undefined, spiffeId: string | undefined, trustDomain: string | undefined): CairnError {
  const where = trustDomain ? ` in trust domain ${trustDomain}` : '';
  return serial !== undefined
    ? new CairnError('svid_not_found', `no current X.509-SVID has serial ${serial}${where} (unknown, or already expired)`)
    : new CairnError('svid_not_found', `${spiffeId} has no current X.509-SVID${where} (none issued, or all expired)`);
}
