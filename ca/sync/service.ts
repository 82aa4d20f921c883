import type { SyncBundle, SyncEntry, SyncResponse } from '../../contract/agent-api.js';
import type { Clock } from '../../lib/clock.js';
import type { SyncMetrics } from '../metrics/ca-metrics.js';
import { publicJwkOf } from '../../spiffe/bundle/jwk.js';
import type { AuthorityService } from '../authority/service.js';
import type { AuthorityKey } from '../authority/store.js';
import type { TrustDomain } from '../trust-domains/model.js';
import { x509AnchorsOf } from '../upstream/published.js';
import { parentsFrom, serverId } from '../enrollment/service.js';
import type { Entry } from '../entries/model.js';
import { entryView } from '../entries/view.js';
import type { EntryStore } from '../entries/store.js';
import type { TemplateStore } from '../templates/store.js';
import { templateView } from '../templates/view.js';
import type { SyncTemplate } from '../../contract/template-api.js';
import type { IdentityTemplate } from '../templates/model.js';
import type { AttestedNode } from '../nodes/store.js';
import type { PublishedCrls, RevocationService } from '../revocation/service.js';
import type { DeliveredBundle, FederationService } from '../federation/service.js';
import type { Bundle } from '../../spiffe/bundle/bundle.js';
import type { ChangeFeed, Woken } from './change-feed.js';
import { BatchedReads } from './batched-reads.js';
import { CairnError } from '../../lib/errors.js';
import { Turnstile } from '../../lib/turnstile.js';

export interface SyncDeps {
  readonly clock: Clock;
  readonly entries: EntryStore;
  readonly templates: TemplateStore;
  readonly authority: AuthorityService;
  readonly feed: ChangeFeed;
  /** A uniform number in [0, 1): where in the last quarter of its wait an idle long-poll ends. */
  readonly jitter: () => number;
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

/** Woken long-polls let through per turn of the event loop. */
const WOKEN_PER_TURN = 100;

/**
 * Incremental entry sync for agents. The agent sends the revision it holds; it gets the entries
 * of its parents changed since then and the ids removed since then (the full set when it holds
 * nothing). With nothing new it long-polls: the database's NOTIFY wakes it the moment an admin
 * change that concerns it commits on any replica, and it re-reads only what the change touched.
 */
export class SyncService {
  /** The woken long-polls' own reads, one query per kind for all of them (see BatchedReads). */
  private readonly batched = new BatchedReads();
  /**
   * The bundle as sent, per shared read of the published keys: every agent's first sync carries it,
   * and converting each JWT key to a JWK (a key import and export) was a visible share of a join.
   */
  private readonly bundles = new WeakMap<object, SyncBundle>();
  /**
   * Woken long-polls answer a slice per turn: a change every agent receives wakes the whole fleet at
   * once, and its answers in one burst stalled the replica (10,000 agents: /healthz p99 3 s in the fleet
   * bench). Only the answers go through it: gating the woken polls' reads too split the reads they
   * share (BatchedReads) into many smaller ones, and a fleet-wide resync took longer.
   */
  private readonly turns = new Turnstile(WOKEN_PER_TURN);

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
    const { feed, clock } = this.deps;
    const signal = abandoned ? AbortSignal.any([abandoned, feed.closing]) : feed.closing;
    // A poll with nothing to say ends somewhere in the last quarter of its wait: after a change that
    // every agent receives, the fleet does not come back in one instant every 30 s.
    const deadline = clock.now().getTime() + req.waitSeconds * 1000 * (1 - 0.25 * this.deps.jitter());
    const td = node.trustDomain;
    const full = req.revision === 0;
    let since = req.revision;
    let latest = since;
    let firstParents: string[] | undefined;
    let aliasesChanged = false;
    let parents: string[] = [];
    let changed: Entry[] = [];
    let removed: string[] = [];
    let changedTemplates: IdentityTemplate[] = [];
    let removedTemplates: string[] = [];
    let wanted: string[] | undefined;
    let published: { trustDomain: TrustDomain; keys: AuthorityKey[] } | undefined;
    let crls: PublishedCrls | undefined;
    let federated: { digest: string; bundles: DeliveredBundle[] } | undefined;
    // The first round reads everything; later rounds what the change that woke them touched.
    let woken: Woken = { entries: true, bundle: true, all: true };
    let waited = false;
    for (;;) {
      // The agent went away (or we are shutting down): nobody will read an answer.
      if (signal.aborted) {
        // A full sync must not answer "nothing": the agent would take an empty set as the truth.
        if (full) throw new CairnError('store_unavailable', 'the CA is shutting down; retry');
        return { revision: since, full: false, parents, entries: [], removed: [], templates: [], removedTemplates: [] };
      }
      const waiter = feed.arm(td, node.spiffeId);
      const g = waiter.generation;
      if (woken.all) {
        const defs = await feed.shared(`aliases ${td}`, g, () => this.deps.entries.aliasEntries(td, serverId(td)));
        parents = parentsFrom(node, defs.aliases);
        firstParents ??= parents;
        // An alias changed after the agent's revision: the parents it holds may not be these. Whether
        // they are, only the agent knows (it compares and resyncs), so it hears at once.
        if (!full && defs.revision > req.revision) aliasesChanged = true;
      }
      waiter.watch(parents);
      if (woken.all || woken.entries) {
        // Read the high-water mark first: anything committed later is picked up next time.
        latest = await feed.shared('latest', g, async () => Math.max(await this.deps.entries.latestRevision(), await this.deps.templates.latestRevision()));
        const from = full ? 0 : since;
        // Nothing anywhere is newer than the agent's revision (a quiet fleet's every idle poll): its
        // own reads could only find rows committed after `latest`, whose notification wakes it anyway.
        const quiet = !full && latest <= since;
        const { entries, templates } = this.deps;
        const read = this.batched;
        [changed, removed, changedTemplates, removedTemplates, wanted] = await Promise.all([
          quiet ? [] : read.read('entries', from, parents, (ps) => entries.changedSince(ps, from)),
          full || quiet ? [] : idsOf(read.read('entry tombstones', since, parents, (ps) => entries.removedSince(ps, since))),
          quiet ? [] : read.read('templates', from, parents, (ps) => templates.changedSince(ps, from)),
          full || quiet ? [] : idsOf(read.read('template tombstones', since, parents, (ps) => templates.removedSince(ps, since))),
          req.federated === undefined ? undefined : quiet && wanted !== undefined ? wanted : this.federatedWith(parents),
        ]);
      }
      if (woken.all || woken.bundle || !published) {
        published = await feed.shared(`published ${td}`, g, () => this.deps.authority.published(td));
        crls = req.crl === undefined ? undefined : await feed.shared(`crls ${td}`, g, () => this.deps.revocation.published(published!.trustDomain, published!.keys));
      }
      if (wanted !== undefined) {
        const list = wanted;
        federated = await feed.shared(`federated ${td} ${list.join(' ')}`, g, () => this.deps.federation.deliverable(td, list));
      }
      const { trustDomain } = published;
      const bundleChanged = trustDomain.bundleSequence > req.bundleSequence;
      const crlChanged = crls !== undefined && crls.digest !== req.crl;
      const federatedChanged = federated !== undefined && federated.digest !== req.federated;
      const parentsChanged = aliasesChanged || parents.join() !== firstParents?.join();
      const remaining = deadline - clock.now().getTime();
      const templatesChanged = changedTemplates.length > 0 || removedTemplates.length > 0;
      if (full || changed.length > 0 || removed.length > 0 || templatesChanged || bundleChanged || crlChanged || federatedChanged || parentsChanged || remaining <= 0 || signal.aborted) {
        waiter.cancel();
        if (waited) await this.turns.pass();
        if (!full && changed.length > 0) {
          const newest = changed.reduce((n, e) => Math.max(n, e.updatedAt.getTime()), 0);
          this.deps.metrics?.delivered((clock.now().getTime() - newest) / 1000);
        }
        const revocation = crlChanged
          ? { digest: crls!.digest, crls: crls!.crls.map((c) => c.der.toString('base64')), revokedSerials: await this.deps.revocation.heldBy(node.spiffeId) }
          : undefined;
        return {
          ...(revocation ? { revocation } : {}),
          ...(federatedChanged ? { federated: { digest: federated!.digest, bundles: federated!.bundles.map((b) => ({ trustDomain: b.trustDomain, bundle: syncForeignBundleOf(b.bundle) })) } } : {}),
          revision: Math.max(latest, since),
          full,
          parents,
          entries: changed.map(syncEntryOf),
          removed,
          templates: changedTemplates.map(syncTemplateOf),
          removedTemplates,
          ...(bundleChanged ? { bundle: this.bundleOf(published) } : {}),
        };
      }
      // Nothing for this agent up to `latest`: move the cursor and wait for the next change.
      since = Math.max(since, latest);
      woken = await waiter.wait(remaining, signal);
      waited = true;
    }
  }

  private bundleOf(published: { trustDomain: TrustDomain; keys: AuthorityKey[] }): SyncBundle {
    let bundle = this.bundles.get(published);
    if (!bundle) this.bundles.set(published, (bundle = syncBundleOf(published.trustDomain.bundleSequence, published.keys)));
    return bundle;
  }

  /** The foreign trust domains the agent's entries and templates federate with (sorted, once each). */
  private async federatedWith(parents: readonly string[]): Promise<string[]> {
    const { entries, templates } = this.deps;
    const [viaEntries, viaTemplates] = await Promise.all([
      this.batched.read('entry federation', 0, parents, (ps) => entries.federatedWith(ps)),
      this.batched.read('template federation', 0, parents, (ps) => templates.federatedWith(ps)),
    ]);
    return [...new Set([...viaEntries, ...viaTemplates].map((f) => f.trustDomain))].sort();
  }
}

/** The ids of removed rows, once each (a row may have left several of the agent's parents). */
async function idsOf(rows: Promise<{ id: string }[]>): Promise<string[]> {
  return [...new Set((await rows).map((r) => r.id))];
}
