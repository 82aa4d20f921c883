import type { SyncBundle, SyncEntry, SyncResponse } from '../../contract/agent-api.js';
import type { Clock } from '../../lib/clock.js';
import type { SyncMetrics } from '../metrics/ca-metrics.js';
import { publicJwkOf } from '../../spiffe/bundle/jwk.js';
import type { AuthorityService } from '../authority/service.js';
import type { AuthorityKey } from '../authority/store.js';
import { x509AnchorsOf } from '../upstream/published.js';
import type { EnrollmentService } from '../enrollment/service.js';
import type { Entry } from '../entries/model.js';
import { entryView } from '../entries/view.js';
import type { EntryStore } from '../entries/store.js';
import type { TemplateStore } from '../templates/store.js';
import { templateView } from '../templates/view.js';
import type { SyncTemplate } from '../../contract/template-api.js';
import type { IdentityTemplate } from '../templates/model.js';
import type { AttestedNode } from '../nodes/store.js';
import type { RevocationService } from '../revocation/service.js';
import type { FederationService } from '../federation/service.js';
import type { Bundle } from '../../spiffe/bundle/bundle.js';
import type { ChangeFeed } from './change-feed.js';
import { CairnError } from '../../lib/errors.js';

export interface SyncDeps {
  readonly clock: Clock;
  readonly entries: EntryStore;
  readonly templates: TemplateStore;
  readonly enrollment: EnrollmentService;
  readonly authority: AuthorityService;
  readonly feed: ChangeFeed;
  readonly metrics?: SyncMetrics;
  readonly revocation: RevocationService;
  readonly federation: FederationService;
}

export interface SyncRequest {
  readonly revision: number;
  readonly bundleSequence: number;
  readonly waitSeconds: number;
  /** The CRL digest the agent holds; undefined: it takes no revocations. */
  readonly crl?: string | undefined;
  /** The digest of the foreign bundles the agent holds; undefined: it takes none. */
  readonly federated?: string | undefined;
}

export function syncEntryOf(e: Entry): SyncEntry {
  const { trustDomain: _td, createdAt: _c, updatedAt: _u, ...rest } = entryView(e);
  return rest;
}

export function syncTemplateOf(t: IdentityTemplate): SyncTemplate {
  const { trustDomain: _td, createdAt: _c, updatedAt: _u, ...rest } = templateView(t);
  return rest;
}

/** The bundle as agents get it: the published keys, and which of them are tainted. */
export function syncBundleOf(sequence: number, keys: readonly AuthorityKey[]): SyncBundle {
  return {
    sequence,
    x509Authorities: x509AnchorsOf(keys).map((d) => d.toString('base64')),
    jwtAuthorities: keys.filter((k) => k.kind === 'jwt').map((k) => ({ kid: k.id, jwk: { ...publicJwkOf(k.publicKey) } })),
    taintedAuthorities: keys.filter((k) => k.status === 'tainted').map((k) => ({ kind: k.kind, id: k.id, publicKey: k.publicKey.toString('base64') })),
  };
}

/** A foreign bundle as agents get it: the same shape as their own trust domain's. */
export function syncForeignBundleOf(bundle: Bundle): SyncBundle {
  return {
    sequence: bundle.sequence ?? 0,
    x509Authorities: bundle.x509Authorities.map((d) => d.toString('base64')),
    jwtAuthorities: bundle.jwtAuthorities.map((a) => ({ kid: a.kid, jwk: { ...a.jwk } })),
  };
}

/**
 * Incremental entry sync for agents. The agent sends the revision it holds; it gets the entries
 * of its parents changed since then and the ids removed since then (the full set when it holds
 * nothing). With nothing new it long-polls: the database's NOTIFY wakes it the moment an admin
 * change commits on any replica.
 */
export class SyncService {
  constructor(private readonly deps: SyncDeps) {}

  async sync(node: AttestedNode, req: SyncRequest, abandoned?: AbortSignal): Promise<SyncResponse> {
    const ended = this.deps.metrics?.pollStarted();
    try {
      return await this.poll(node, req, abandoned);
    } finally {
      ended?.();
    }
  }

  private async poll(node: AttestedNode, req: SyncRequest, abandoned?: AbortSignal): Promise<SyncResponse> {
    const signal = abandoned ? AbortSignal.any([abandoned, this.deps.feed.closing]) : this.deps.feed.closing;
    const deadline = this.deps.clock.now().getTime() + req.waitSeconds * 1000;
    let since = req.revision;
    const full = req.revision === 0;
    for (;;) {
      // The agent went away (or we are shutting down): nobody will read an answer.
      if (signal.aborted) {
        // A full sync must not answer "nothing": the agent would take an empty set as the truth.
        if (full) throw new CairnError('store_unavailable', 'the CA is shutting down; retry');
        return { revision: since, full: false, parents: [], entries: [], removed: [], templates: [], removedTemplates: [] };
      }
      const waiter = this.deps.feed.arm();
      // Read the high-water mark first: anything committed later is picked up next time.
      const latest = Math.max(await this.deps.entries.latestRevision(), await this.deps.templates.latestRevision());
      const parents = await this.deps.enrollment.parentsOf(node);
      const [changed, removed, changedTemplates, removedTemplates] = await Promise.all([
        this.deps.entries.changedSince(parents, full ? 0 : since),
        full ? Promise.resolve([] as string[]) : this.deps.entries.removedSince(parents, since),
        this.deps.templates.changedSince(parents, full ? 0 : since),
        full ? Promise.resolve([] as string[]) : this.deps.templates.removedSince(parents, since),
      ]);
      const { trustDomain, keys } = await this.deps.authority.published(node.trustDomain);
      const bundleChanged = trustDomain.bundleSequence > req.bundleSequence;
      const crls = req.crl === undefined ? undefined : await this.deps.revocation.published(trustDomain, keys);
      const crlChanged = crls !== undefined && crls.digest !== req.crl;
      const federated = req.federated === undefined
        ? undefined
        : await this.deps.federation.deliverable(node.trustDomain, [...(await this.deps.entries.federatedWith(parents)), ...(await this.deps.templates.federatedWith(parents))]);
      const federatedChanged = federated !== undefined && federated.digest !== req.federated;
      const remaining = deadline - this.deps.clock.now().getTime();
      const templatesChanged = changedTemplates.length > 0 || removedTemplates.length > 0;
      if (full || changed.length > 0 || removed.length > 0 || templatesChanged || bundleChanged || crlChanged || federatedChanged || remaining <= 0 || signal.aborted) {
        waiter.cancel();
        if (!full && changed.length > 0) {
          const newest = changed.reduce((n, e) => Math.max(n, e.updatedAt.getTime()), 0);
          this.deps.metrics?.delivered((this.deps.clock.now().getTime() - newest) / 1000);
        }
        const revocation = crlChanged
          ? { digest: crls.digest, crls: crls.crls.map((c) => c.der.toString('base64')), revokedSerials: await this.deps.revocation.heldBy(node.spiffeId) }
          : undefined;
        return {
          ...(revocation ? { revocation } : {}),
          ...(federatedChanged ? { federated: { digest: federated.digest, bundles: federated.bundles.map((b) => ({ trustDomain: b.trustDomain, bundle: syncForeignBundleOf(b.bundle) })) } } : {}),
          revision: Math.max(latest, since),
          full,
          parents,
          entries: changed.map(syncEntryOf),
          removed,
          templates: changedTemplates.map(syncTemplateOf),
          removedTemplates,
          ...(bundleChanged ? { bundle: syncBundleOf(trustDomain.bundleSequence, keys) } : {}),
        };
      }
      // Nothing for this agent up to `latest`: move the cursor and wait for the next change.
      since = Math.max(since, latest);
      await waiter.wait(remaining, signal);
    }
  }
}
