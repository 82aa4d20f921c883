import { createHash } from 'node:crypto';
import type { AuthorityView, UpstreamStatus } from '../../contract/authority-api.js';
import type { OfflineUpstream } from '../upstream/offline.js';
import type { Clock } from '../../lib/clock.js';
import { humanDuration } from '../../lib/duration.js';
import { CairnError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import type { Database, Queryable } from '../db/database.js';
import type { InventoryStore } from '../inventory/store.js';
import type { TrustDomainStore } from '../trust-domains/store.js';
import type { AuthorityService } from './service.js';
import type { AuthorityKey, AuthorityKeyStore, AuthorityKind, RevokedAuthorityKey } from './store.js';
import type { AuditAppender } from '../audit/port.js';

export interface AuthorityLifecycleDeps {
  readonly db: Database;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly keys: AuthorityKeyStore;
  readonly trustDomains: TrustDomainStore;
  readonly authority: AuthorityService;
  readonly inventory: InventoryStore;
  /** Every lever is recorded in the audit log, in the transaction that pulls it. */
  readonly audit?: AuditAppender;
}

export interface ActivateOptions {
  readonly id?: string | undefined;
  readonly minPublishedSeconds?: number | undefined;
}

export interface Activation {
  readonly activated: AuthorityView;
  readonly previous: AuthorityView | null;
  readonly publishedSeconds: number;
}

/** `sha256:` and the hex SHA-256 of the SPKI DER (`openssl pkey -pubin -outform DER | sha256sum`). */
export function publicKeyFingerprint(spki: Buffer): string {
  return `sha256:${createHash('sha256').update(spki).digest('hex')}`;
}

interface InUse {
  readonly inUse: boolean;
  readonly message?: string;
  readonly details: Record<string, unknown>;
}

const iso = (d: Date | null | undefined): string | null => (d ? d.toISOString() : null);

/**
 * The operator's levers over a trust domain's keys (SPIRE's `localauthority`): list, prepare,
 * activate, taint, revoke. Each change runs under the trust domain's row lock, bumps the bundle's
 * spiffe_sequence (agents learn statuses, taints included, through sync) and is logged as an event.
 */
export class AuthorityLifecycle {
  constructor(private readonly deps: AuthorityLifecycleDeps) {}

  async list(trustDomain: string, kind?: AuthorityKind): Promise<AuthorityView[]> {
    const now = this.deps.clock.now();
    // published() prunes what expired (with a sequence bump), so the list and the bundle agree.
    const [{ keys }, revoked] = await Promise.all([this.deps.authority.published(trustDomain), this.deps.keys.revoked(trustDomain)]);
    const all: (AuthorityKey | RevokedAuthorityKey)[] = [...keys, ...revoked.filter((k) => k.notAfter > now)].filter((k) => !kind || k.kind === kind);
    const counts = await this.deps.inventory.unexpiredByAuthority(all.filter((k) => k.kind === 'x509').map((k) => k.id), now);
    const order = { x509: 0, jwt: 1 } as const;
    return all
      .sort((a, b) => order[a.kind] - order[b.kind] || a.notBefore.getTime() - b.notBefore.getTime() || a.id.localeCompare(b.id))
      .map((k) => this.view(k, counts.get(k.id), now));
  }

  private view(k: AuthorityKey | RevokedAuthorityKey, count: { count: number; lastExpiry: Date } | undefined, now: Date): AuthorityView {
    const signedUntil = k.kind === 'jwt' && k.signedUntil && k.signedUntil > now ? k.signedUntil : null;
    return {
      kind: k.kind,
      id: k.id,
      status: k.status,
      keyType: k.keyType,
      notBefore: k.notBefore.toISOString(),
      notAfter: k.notAfter.toISOString(),
      publishedAt: k.createdAt.toISOString(),
      activatedAt: iso(k.activatedAt),
      deactivatedAt: iso(k.deactivatedAt),
      taintedAt: iso(k.taintedAt),
      revokedAt: k.status === 'revoked' ? k.revokedAt.toISOString() : null,
      published: k.status !== 'revoked',
      publicKeyFingerprint: publicKeyFingerprint(k.publicKey),
      unexpiredSvids: k.kind === 'x509' ? (count?.count ?? 0) : null,
      lastSvidExpiresAt: k.kind === 'x509' ? iso(count?.lastExpiry) : iso(signedUntil),
      ...(k.kind === 'x509' ? { awaitingCertificate: !k.certificate, upstreamSigned: Boolean(k.upstreamChain) } : {}),
    };
  }

  /** The trust domain's upstream authority, if it has one (authority list shows it). */
  async upstreamStatus(trustDomain: string, offline: OfflineUpstream): Promise<UpstreamStatus | undefined> {
    const td = await this.deps.trustDomains.get(trustDomain);
    if (!td) return undefined;
    return offline.status(trustDomain, await this.deps.keys.all(trustDomain), td.authorityPrepublishSeconds);
  }

  /** Generates a successor and publishes it at once; it signs nothing until activated. */
  async prepare(trustDomain: string, kind: AuthorityKind, actor: string): Promise<AuthorityView> {
    const td = await this.deps.trustDomains.get(trustDomain);
    if (!td) throw new CairnError('trust_domain_not_found', `trust domain ${trustDomain} does not exist`);
    const key = await this.deps.authority.generateKey({
      trustDomain: td.name, kind, keyType: kind === 'jwt' ? td.jwtKeyType : td.caKeyType, ttlSeconds: td.caTtlSeconds, status: 'prepared',
    });
    await this.change(td.name, async (tx, all, now) => {
      const waiting = all.find((k) => k.kind === kind && k.status === 'prepared' && k.notAfter > now);
      if (waiting) {
        throw new CairnError(
          'authority_invalid_state',
          `${kind} authority ${waiting.id} of ${td.name} is already prepared (published ${humanDuration((now.getTime() - waiting.createdAt.getTime()) / 1000)} ago): activate it, or wait for rotation to`,
          { details: { id: waiting.id, kind } },
        );
      }
      await this.deps.keys.insert(tx, [key]);
      await this.deps.audit?.append(tx, [{ event: 'authority.prepared', actor, subject: { trustDomain: td.name, kind, authorityId: key.id, keyType: key.keyType, notAfter: key.notAfter.toISOString() } }]);
    });
    this.deps.logger.info({ event: 'authority.prepared', trustDomain: td.name, kind, authorityId: key.id, keyType: key.keyType, actor }, 'authority prepared and published');
    return this.view(key, undefined, this.deps.clock.now());
  }

  /**
   * Forced rotation: the prepared key signs from now on, the active one becomes old (still published
   * until it expires). Works at once by default — after a compromise the operator decides — and says
   * how long the key had been published; `minPublishedSeconds` refuses until it has been that long.
   */
  async activate(trustDomain: string, kind: AuthorityKind, options: ActivateOptions, actor: string): Promise<Activation> {
    const out = await this.change(trustDomain, async (tx, all, now) => {
      const prepared = all.find((k) => k.kind === kind && k.status === 'prepared' && k.notAfter > now);
      if (!prepared) {
        throw new CairnError('authority_invalid_state', `${trustDomain} has no prepared ${kind} authority: prepare one first (it is published before it signs)`, { details: { kind } });
      }
      if (kind === 'x509' && !prepared.certificate) {
        throw new CairnError('authority_invalid_state', `x509 authority ${prepared.id} of ${trustDomain} awaits its upstream-signed certificate: import it first (cairn authority import --trust-domain ${trustDomain} --cert FILE)`, {
          details: { id: prepared.id, awaitingCertificate: true },
        });
      }
      if (options.id !== undefined && options.id !== prepared.id) {
        const named = all.find((k) => k.id === options.id);
        if (!named || named.kind !== kind) throw notFound(trustDomain, kind, options.id);
        throw new CairnError('authority_invalid_state', `${kind} authority ${options.id} is ${named.status}, not prepared; only the prepared authority (${prepared.id}) can be activated`, {
          details: { id: options.id, status: named.status },
        });
      }
      const publishedSeconds = Math.floor((now.getTime() - prepared.createdAt.getTime()) / 1000);
      if (options.minPublishedSeconds !== undefined && publishedSeconds < options.minPublishedSeconds) {
        const wait = options.minPublishedSeconds - publishedSeconds;
        throw new CairnError(
          'authority_too_new',
          `${kind} authority ${prepared.id} has been published for ${humanDuration(publishedSeconds)}, less than the ${humanDuration(options.minPublishedSeconds)} asked for: it can be activated in ${humanDuration(wait)}`,
          { details: { id: prepared.id, publishedSeconds, minPublishedSeconds: options.minPublishedSeconds, retryAfterSeconds: wait } },
        );
      }
      const previous = all.find((k) => k.kind === kind && k.status === 'active');
      if (previous) await this.deps.keys.deactivate(tx, previous.id, now);
      await this.deps.keys.activate(tx, prepared.id, now);
      await this.deps.audit?.append(tx, [{ event: 'authority.activated', actor, subject: { trustDomain, kind, authorityId: prepared.id, previousId: previous?.id, publishedSeconds } }]);
      return {
        activated: this.view({ ...prepared, status: 'active', activatedAt: now }, undefined, now),
        previous: previous ? this.view({ ...previous, status: 'old', deactivatedAt: now }, undefined, now) : null,
        publishedSeconds,
      };
    });
    this.deps.logger.info(
      { event: 'authority.activated', trustDomain, kind, authorityId: out.activated.id, previousId: out.previous?.id, publishedSeconds: out.publishedSeconds, actor },
      'authority activated',
    );
    return out;
  }

  /**
   * An old authority is no longer trusted for what it signed: agents learn it through sync and
   * re-issue every SVID it signed at once, and drop (and stop validating) its JWT-SVIDs. As in SPIRE,
   * only an old authority can be tainted: the active one must be replaced first.
   */
  async taint(trustDomain: string, kind: AuthorityKind, id: string, actor: string): Promise<AuthorityView> {
    const view = await this.change(trustDomain, async (tx, all, now) => {
      const key = await this.find(tx, trustDomain, kind, id, all);
      if (key.status !== 'old') {
        const why =
          key.status === 'active'
            ? `it is the active ${kind} authority of ${trustDomain}, and the active authority cannot be tainted (as in SPIRE): prepare and activate a successor first, then taint this one`
            : key.status === 'prepared'
              ? 'it is prepared and has signed nothing: activate a successor, or let it be'
              : `it is already tainted (since ${key.taintedAt?.toISOString() ?? 'before'})`;
        throw new CairnError('authority_invalid_state', `cannot taint ${kind} authority ${id}: ${why}`, { details: { id, status: key.status } });
      }
      await this.deps.keys.taint(tx, key.id, now);
      await this.deps.audit?.append(tx, [{ event: 'authority.tainted', actor, subject: { trustDomain, kind, authorityId: key.id } }]);
      return this.view({ ...key, status: 'tainted', taintedAt: now }, undefined, now);
    });
    this.deps.logger.warn({ event: 'authority.tainted', trustDomain, kind, authorityId: id, actor }, 'authority tainted: agents re-issue what it signed');
    return (await this.list(trustDomain, kind)).find((v) => v.id === id) ?? view;
  }

  /**
   * A tainted authority leaves the bundle for good (its private key is not kept). Refused while
   * unexpired SVIDs it signed are still in use, unless forced: X.509 by the inventory and the
   * attested nodes' serials, JWT by the latest expiry recorded for its tokens.
   */
  async revoke(trustDomain: string, kind: AuthorityKind, id: string, force: boolean, actor: string): Promise<AuthorityView> {
    let use: InUse = { inUse: false, details: {} };
    const revoked = await this.change(trustDomain, async (tx, all, now) => {
      const key = await this.find(tx, trustDomain, kind, id, all);
      if (key.status !== 'tainted') {
        throw new CairnError(
          'authority_invalid_state',
          `cannot revoke ${kind} authority ${id}: it is ${key.status}; only a tainted authority can be revoked (taint it first, so that agents replace what it signed)`,
          { details: { id, status: key.status } },
        );
      }
      use = await this.inUse(tx, key, now);
      if (!force && use.inUse) {
        throw new CairnError('authority_in_use', `cannot revoke ${kind} authority ${id}: ${use.message}; wait until they are replaced or expire, or pass force to revoke anyway (they stop verifying at once)`, {
          details: { id, ...use.details },
        });
      }
      await this.deps.keys.revoke(tx, key, now, actor, force);
      await this.deps.audit?.append(tx, [{ event: 'authority.revoked', actor, subject: { trustDomain, kind, authorityId: key.id, force, svidsInUse: (use.details as { svidsInUse?: number }).svidsInUse } }]);
      const { privateKeySealed: _sealed, ...publicParts } = key;
      return this.view({ ...publicParts, status: 'revoked', revokedAt: now, revokedBy: actor, forced: force }, undefined, now);
    });
    this.deps.authority.forget([id]);
    this.deps.logger.warn({ event: 'authority.revoked', trustDomain, kind, authorityId: id, force, actor, ...use.details }, 'authority revoked: removed from the bundle');
    return revoked;
  }

  private async inUse(tx: Queryable, key: AuthorityKey, now: Date): Promise<InUse> {
    if (key.kind === 'jwt') {
      const until = key.signedUntil && key.signedUntil > now ? key.signedUntil : null;
      if (!until) return { inUse: false, details: {} };
      return {
        inUse: true,
        message: `JWT-SVIDs it signed may be valid until ${until.toISOString()} (in ${humanDuration((until.getTime() - now.getTime()) / 1000)})`,
        details: { jwtSvidsValidUntil: until.toISOString() },
      };
    }
    const u = await this.deps.inventory.inUse(key.id, key.trustDomain, now, tx);
    if (u.svids === 0 && u.unknownSigner > 0) {
      return {
        inUse: true,
        message: `${u.unknownSigner} unexpired SVID(s) of ${key.trustDomain} have no recorded signer (issued before this release recorded it, or by a replica of the previous one), and any of them may be this key's`,
        details: { svidsInUse: 0, unknownSigner: u.unknownSigner },
      };
    }
    if (u.svids === 0) return { inUse: false, details: { svidsInUse: 0 } };
    const held = u.nodeSvids > 0 ? `, ${u.nodeSvids} of them held by attested agents or devices as their own SVID` : '';
    return {
      inUse: true,
      message: `${u.svids} unexpired SVID(s) it signed are still in use${held} (e.g. ${u.examples.join(', ')}); the last expires at ${u.lastExpiry?.toISOString()}`,
      details: { svidsInUse: u.svids, nodeSvids: u.nodeSvids, lastExpiry: u.lastExpiry?.toISOString(), examples: u.examples },
    };
  }

  private async find(tx: Queryable, trustDomain: string, kind: AuthorityKind, id: string, all: readonly AuthorityKey[]): Promise<AuthorityKey> {
    const key = all.find((k) => k.id === id);
    if (key && key.kind === kind) return key;
    if (!key && (await this.deps.keys.revoked(trustDomain, tx)).some((k) => k.id === id && k.kind === kind)) {
      throw new CairnError('authority_invalid_state', `${kind} authority ${id} is already revoked`, { details: { id, status: 'revoked' } });
    }
    throw notFound(trustDomain, kind, id, key?.kind);
  }

  /** Runs `fn` under the trust domain's lock with its current keys; bumps the bundle sequence when it returns. */
  private async change<T>(trustDomain: string, fn: (tx: Queryable, all: AuthorityKey[], now: Date) => Promise<T>): Promise<T> {
    return this.deps.db.transaction(async (tx) => {
      const now = this.deps.clock.now();
      if (!(await this.deps.trustDomains.lock(tx, trustDomain))) throw new CairnError('trust_domain_not_found', `trust domain ${trustDomain} does not exist`);
      // Expired keys go first (the sequence is bumped below anyway): an expired prepared key would
      // otherwise hold the one-prepared-per-kind slot.
      await this.deps.keys.deleteExpired(tx, trustDomain, now);
      const result = await fn(tx, await this.deps.keys.all(trustDomain, tx), now);
      await this.deps.trustDomains.bumpBundleSequence(tx, trustDomain, now);
      return result;
    });
  }
}

function notFound(trustDomain: string, kind: AuthorityKind, id: string, actualKind?: AuthorityKind): CairnError {
  const hint = actualKind ? ` (${id} is a ${actualKind} authority)` : '';
  return new CairnError('authority_not_found', `${trustDomain} has no ${kind} authority ${id}${hint}`, { details: { id, kind } });
}
