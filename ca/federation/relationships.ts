import type { Clock } from '../../lib/clock.js';
import { CairnError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { pemToDerList, type Bundle } from '../../spiffe/bundle/bundle.js';
import { SpiffeId } from '../../spiffe/id.js';
import { X509Certificate } from 'node:crypto';
import type { AuditAppender } from '../audit/port.js';
import type { AuthorityService } from '../authority/service.js';
import { bundleOf } from '../bundle/documents.js';
import { notifyTrustDomain } from '../db/changes.js';
import type { TrustDomainStore } from '../trust-domains/store.js';
import { validateTrustDomainName } from '../trust-domains/service.js';
import { parseForeignBundle } from './bundle-input.js';
import { checkEndpointUrl, fetchBundleDocument, FETCH_LIMITS } from './fetch.js';
import type { EndpointAllowList } from './endpoint-allow.js';
import type { FederationProfile, Relationship, RelationshipStore } from './store.js';
import type { FederationService } from './service.js';
import type { StoredForeignBundle } from './store.js';

export interface RelationshipDeps {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly store: RelationshipStore;
  readonly federation: FederationService;
  readonly trustDomains: TrustDomainStore;
  readonly authority: AuthorityService;
  readonly audit: AuditAppender;
  /** [0,1) for refresh jitter. */
  readonly jitter: () => number;
  readonly fetch?: typeof fetchBundleDocument;
  /** The endpoints the operator allows the CA to fetch (checked at create and before every fetch). */
  readonly allowed: EndpointAllowList;
}

export interface RelationshipInput {
  readonly foreignTrustDomain: string;
  readonly bundleEndpointUrl: string;
  readonly profile: FederationProfile;
  readonly endpointSpiffeId?: string | undefined;
  /** https_spiffe: the bootstrap bundle (SPIFFE JSON or PEM). */
  readonly bundle?: string | undefined;
  /** https_web: PEM roots that authenticate the endpoint (default: the system's). */
  readonly webRoots?: string | undefined;
}

/** Poll bounds: a refresh hint below or above these is clamped (5 min without one, as the standard suggests). */
export const REFRESH = { defaultSeconds: 300, minSeconds: 5, maxSeconds: 3600, firstRetrySeconds: 2 } as const;

/** The default endpoint SPIFFE ID of a Cairn bundle endpoint (issue 15): spiffe://<td>/cairn/bundle-endpoint. */
export const defaultEndpointSpiffeId = (foreign: string): string => `spiffe://${foreign}/cairn/bundle-endpoint`;

/** Next poll after a success: the refresh hint, clamped, with ±10% jitter so replicas and relationships spread out. */
export function refreshDelaySeconds(hint: number | null | undefined, jitter: number): number {
  const base = Math.min(REFRESH.maxSeconds, Math.max(REFRESH.minSeconds, hint ?? REFRESH.defaultSeconds));
  return base * (0.9 + 0.2 * jitter);
}

/** Next attempt after `failures` consecutive failures: doubling from 2 s, never later than the refresh interval. */
export function retryDelaySeconds(failures: number, hint: number | null | undefined, jitter: number): number {
  const cap = Math.min(REFRESH.maxSeconds, Math.max(REFRESH.minSeconds, hint ?? REFRESH.defaultSeconds));
  return Math.min(cap, REFRESH.firstRetrySeconds * 2 ** Math.max(0, failures - 1)) * (0.9 + 0.2 * jitter);
}

/**
 * Federation relationships (SPIFFE Federation §4.2): a foreign trust domain's bundle endpoint, its
 * profile and, for https_spiffe, the endpoint's SPIFFE ID. The CA polls each endpoint (Refresher),
 * keeps the last good bundle while it is away, and refuses a document for another trust domain or with
 * an older spiffe_sequence.
 */
export class RelationshipService {
  constructor(private readonly deps: RelationshipDeps) {}

  async create(trustDomain: string, input: RelationshipInput, actor: string): Promise<{ relationship: Relationship; bundle: StoredForeignBundle | undefined }> {
    const names = await this.deps.federation.names(trustDomain, input.foreignTrustDomain);
    const parsed = checkEndpointUrl(input.bundleEndpointUrl);
    this.deps.allowed.check(parsed);
    const url = parsed.toString();
    let endpointSpiffeId: string | null = null;
    let webRoots: string | null = null;
    let bootstrap: Bundle | undefined;
    if (input.profile === 'https_spiffe') {
      if (input.webRoots !== undefined) throw new CairnError('invalid_request', 'webRoots is for https_web; https_spiffe authenticates the endpoint with the bootstrap bundle (body/bundle)');
      try {
        endpointSpiffeId = SpiffeId.parse(input.endpointSpiffeId ?? defaultEndpointSpiffeId(names.foreign)).toString();
      } catch (err) {
        throw new CairnError('invalid_spiffe_id', `endpointSpiffeId: ${(err as Error).message}`, { cause: err });
      }
      if (input.bundle !== undefined) bootstrap = parseForeignBundle(names.foreign, input.bundle);
      const endpointTd = SpiffeId.parse(endpointSpiffeId).trustDomain;
      // a trust domain hosted here needs none: the CA knows its bundle (endpointBundle)
      if (endpointTd === names.foreign && !bootstrap && !(await this.endpointBundle(names.td, names.foreign))) {
        throw new CairnError('invalid_request', `https_spiffe needs a bootstrap bundle of ${names.foreign} (body/bundle) to authenticate its endpoint the first time`);
      }
      if (endpointTd !== names.foreign && !(await this.endpointBundle(names.td, endpointTd))) {
        throw new CairnError('invalid_request', `the endpoint's SPIFFE ID is in ${endpointTd}, whose bundle ${names.td} does not hold: set it first (cairn bundle set) or federate with it`);
      }
    } else {
      if (input.bundle !== undefined) throw new CairnError('invalid_request', 'bundle (a bootstrap bundle) is for https_spiffe; https_web authenticates the endpoint with web PKI roots (webRoots)');
      if (input.endpointSpiffeId !== undefined) throw new CairnError('invalid_request', 'endpointSpiffeId is for https_spiffe');
      if (input.webRoots !== undefined) {
        const roots = pemToDerList(input.webRoots);
        if (roots.length === 0) throw new CairnError('invalid_request', 'webRoots holds no CERTIFICATE block');
        roots.forEach((d, i) => {
          try {
            new X509Certificate(d);
          } catch {
            throw new CairnError('invalid_request', `certificate ${i + 1} of webRoots does not parse`);
          }
        });
        webRoots = input.webRoots;
      }
    }
    const now = this.deps.clock.now();
    const created = await this.deps.federation.transaction(async (tx) => {
      const relationship = await this.deps.store.insert(tx, {
        trustDomain: names.td,
        foreignTrustDomain: names.foreign,
        bundleEndpointUrl: url,
        profile: input.profile,
        endpointSpiffeId,
        webRoots,
        nextRefreshAt: now,
        failures: 0,
        lastAttemptAt: null,
        lastRefreshAt: null,
        lastError: null,
        createdAt: now,
        createdBy: actor,
      });
      const bundle = bootstrap ? (await this.deps.federation.putBundle(tx, names.td, bootstrap, 'endpoint', actor)).after : undefined;
      await this.deps.audit.append(tx, [{
        event: 'federation.relationship_created',
        actor,
        subject: { trustDomain: names.td, foreignTrustDomain: names.foreign, bundleEndpointUrl: url, profile: input.profile, endpointSpiffeId: endpointSpiffeId ?? undefined },
      }]);
      await notifyTrustDomain(tx, names.td);
      return { relationship, bundle };
    });
    this.deps.logger.info({ event: 'federation.relationship_created', trustDomain: names.td, foreignTrustDomain: names.foreign, bundleEndpointUrl: url, profile: input.profile, actor }, 'federation relationship created');
    return created;
  }

  async get(trustDomain: string, foreign: string): Promise<Relationship> {
    const names = await this.deps.federation.names(trustDomain, foreign);
    const r = await this.deps.store.get(names.td, names.foreign);
    if (!r) throw new CairnError('not_found', `trust domain ${names.td} has no federation relationship with ${names.foreign}`);
    return r;
  }

  async list(trustDomain: string): Promise<Relationship[]> {
    const td = validateTrustDomainName(trustDomain);
    if (!(await this.deps.trustDomains.get(td))) throw new CairnError('trust_domain_not_found', `trust domain ${td} does not exist`);
    return this.deps.store.list(td);
  }

  /** Ends a relationship: stops polling and removes the bundle (refused while entries federate with it, unless forced). */
  async delete(trustDomain: string, foreign: string, force: boolean, actor: string): Promise<Relationship> {
    const names = await this.deps.federation.names(trustDomain, foreign);
    const gone = await this.deps.federation.transaction(async (tx) => {
      const r = await this.deps.store.delete(tx, names.td, names.foreign);
      if (!r) throw new CairnError('not_found', `trust domain ${names.td} has no federation relationship with ${names.foreign}`);
      await this.deps.federation.removeBundle(tx, names.td, names.foreign, force, actor);
      await this.deps.audit.append(tx, [{ event: 'federation.relationship_deleted', actor, subject: { trustDomain: names.td, foreignTrustDomain: names.foreign, forced: force } }]);
      await notifyTrustDomain(tx, names.td);
      return r;
    });
    this.deps.logger.info({ event: 'federation.relationship_deleted', trustDomain: names.td, foreignTrustDomain: names.foreign, actor }, 'federation relationship deleted');
    return gone;
  }

  /**
   * Refreshes one relationship now instead of at its next due time (`cairn federation refresh`, as
   * SPIRE's `federation refresh`): after a foreign rotation an operator need not wait for the refresh
   * hint. Answers the relationship as it stands afterwards (lastError says whether it worked).
   */
  async refreshNow(trustDomain: string, foreign: string, actor: string): Promise<Relationship> {
    const names = await this.deps.federation.names(trustDomain, foreign);
    const now = this.deps.clock.now();
    const claimed = await this.deps.store.claim(names.td, names.foreign, now, this.after(now, 60));
    if (!claimed) throw new CairnError('not_found', `trust domain ${names.td} has no federation relationship with ${names.foreign}`);
    this.deps.logger.info({ event: 'federation.refresh_requested', trustDomain: names.td, foreignTrustDomain: names.foreign, actor }, 'foreign bundle refresh requested');
    await this.refresh(claimed);
    return (await this.deps.store.get(names.td, names.foreign)) ?? claimed;
  }

  /** The bundle that authenticates an endpoint whose SVID is in `endpointTd`: held by `trustDomain`, or published here. */
  private async endpointBundle(trustDomain: string, endpointTd: string): Promise<Bundle | undefined> {
    const held = await this.deps.federation.held(trustDomain, endpointTd);
    if (held) return held;
    if (!(await this.deps.trustDomains.get(endpointTd))) return undefined;
    const { trustDomain: local, keys } = await this.deps.authority.published(endpointTd);
    return bundleOf(local, keys);
  }

  /**
   * One refresh of a claimed relationship: fetch, check, store (when changed), record the outcome and
   * when to try next. A failure keeps the bundle held (the last good one) and is reported as lastError.
   */
  async refresh(r: Relationship): Promise<void> {
    const now = this.deps.clock.now();
    let hint: number | null | undefined = (await this.deps.federation.held(r.trustDomain, r.foreignTrustDomain))?.refreshHintSeconds;
    try {
      // the allow-list may have shrunk since the relationship was made (a restart with other settings)
      this.deps.allowed.check(checkEndpointUrl(r.bundleEndpointUrl));
      const endpointTd = r.endpointSpiffeId ? SpiffeId.parse(r.endpointSpiffeId).trustDomain : undefined;
      const text = await (this.deps.fetch ?? fetchBundleDocument)(
        {
          url: r.bundleEndpointUrl,
          profile: r.profile,
          endpointSpiffeId: r.endpointSpiffeId,
          endpointBundle: endpointTd ? await this.endpointBundle(r.trustDomain, endpointTd) : undefined,
          webRoots: r.webRoots,
        },
        FETCH_LIMITS,
      );
      const bundle = parseForeignBundle(r.foreignTrustDomain, text);
      hint = bundle.refreshHintSeconds;
      const stored = await this.deps.federation.transaction(async (tx) => {
        // Deleted meanwhile: nothing to store. Locked, so a delete still in flight is waited out: read
        // without the lock, the row it is deleting was still seen, and the bundle it removed was written
        // back, orphaned (trusted by agents, refreshed by nobody, until deleted by hand).
        if (!(await this.deps.store.get(r.trustDomain, r.foreignTrustDomain, tx, true))) return undefined;
        const out = await this.deps.federation.putBundle(tx, r.trustDomain, bundle, 'endpoint', 'cairn');
        await this.deps.store.recordAttempt(r.trustDomain, r.foreignTrustDomain, { at: now, error: null, nextRefreshAt: this.after(now, refreshDelaySeconds(hint, this.deps.jitter())) }, tx);
        return out;
      });
      if (stored && stored.before?.digest !== stored.after.digest) {
        this.deps.logger.info({ event: 'federation.bundle_refreshed', trustDomain: r.trustDomain, foreignTrustDomain: r.foreignTrustDomain, sequence: stored.after.sequence }, 'foreign trust bundle refreshed from its endpoint');
      }
    } catch (err) {
      const message = (err as Error).message.slice(0, 1000);
      const delay = retryDelaySeconds(r.failures + 1, hint, this.deps.jitter());
      await this.deps.store.recordAttempt(r.trustDomain, r.foreignTrustDomain, { at: now, error: message, nextRefreshAt: this.after(now, delay) });
      const fields = { event: 'federation.refresh_failed', trustDomain: r.trustDomain, foreignTrustDomain: r.foreignTrustDomain, url: r.bundleEndpointUrl, reason: message, failures: r.failures + 1, retryInSeconds: Math.round(delay) };
      // once per streak at warn: an endpoint away for a day is one line, not thousands
      if (r.failures === 0) this.deps.logger.warn(fields, 'a foreign bundle endpoint could not be refreshed; keeping the last good bundle');
      else this.deps.logger.debug(fields, 'a foreign bundle endpoint could not be refreshed; keeping the last good bundle');
    }
  }

  private after(now: Date, seconds: number): Date {
    return new Date(now.getTime() + Math.round(seconds * 1000));
  }
}
