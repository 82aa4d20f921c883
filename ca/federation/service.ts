import { createHash } from 'node:crypto';
import type { Clock } from '../../lib/clock.js';
import { CairnError, isCairnError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { encodeSpiffeBundle, parseSpiffeBundle, type Bundle, type SpiffeBundleDocument } from '../../spiffe/bundle/bundle.js';
import type { AuditAppender } from '../audit/port.js';
import type { AuthorityService } from '../authority/service.js';
import { bundleOf } from '../bundle/documents.js';
import { notifyTrustDomain } from '../db/changes.js';
import type { EntryStore } from '../entries/store.js';
import type { TrustDomainStore } from '../trust-domains/store.js';
import { validateTrustDomainName } from '../trust-domains/service.js';
import { parseForeignBundle } from './bundle-input.js';
import type { RelationshipStore } from './store.js';
import type { FederationStore, StoredForeignBundle } from './store.js';
import type { Queryable } from '../db/database.js';

export interface FederationDeps {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly store: FederationStore;
  readonly relationships: RelationshipStore;
  readonly trustDomains: TrustDomainStore;
  readonly entries: EntryStore;
  /** Agentless devices federate through their credential (cairn token create --federates-with). */
  readonly nodes: { federatingWith(trustDomain: string, foreign: string, q?: Queryable): Promise<{ count: number; example: string | undefined }> };
  readonly authority: AuthorityService;
  readonly audit: AuditAppender;
}

/** A foreign bundle as agents get it: whose, and the bundle. */
export interface DeliveredBundle {
  readonly trustDomain: string;
  readonly bundle: Bundle;
}

const digestOf = (text: string): string => createHash('sha256').update(text).digest('base64url');

export const storedBundle = (b: StoredForeignBundle): Bundle => parseSpiffeBundle(b.foreignTrustDomain, b.document);

/**
 * SPIFFE federation for the trust domains this CA hosts: the bundles of foreign trust domains (set by
 * an admin), which the workloads of a local trust domain receive when their entries federate with
 * them. A trust domain hosted here federates with another one hosted here without any bundle being
 * set: its published bundle is delivered as it changes.
 */
export class FederationService {
  constructor(private readonly deps: FederationDeps) {}

  /** Runs `fn` in one transaction of the federation store (relationships write bundles in theirs). */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.deps.store.transaction(fn);
  }

  async names(trustDomain: string, foreign: string): Promise<{ td: string; foreign: string }> {
    const td = validateTrustDomainName(trustDomain);
    const f = validateTrustDomainName(foreign);
    if (f === td) throw new CairnError('invalid_request', `a trust domain does not federate with itself: ${td}'s own bundle is always delivered`);
    if (!(await this.deps.trustDomains.get(td))) throw new CairnError('trust_domain_not_found', `trust domain ${td} does not exist`);
    return { td, foreign: f };
  }

  /**
   * Sets (or replaces) the static bundle of a foreign trust domain. Refused: a document that is not a
   * bundle of that trust domain (bundle-input.ts), or one whose spiffe_sequence is older than the one
   * held (a replayed or out-of-date bundle would bring back keys the foreign domain removed).
   */
  async setBundle(trustDomain: string, foreign: string, text: string, actor: string): Promise<{ before: StoredForeignBundle | undefined; after: StoredForeignBundle }> {
    const names = await this.names(trustDomain, foreign);
    const bundle = parseForeignBundle(names.foreign, text);
    const result = await this.deps.store.transaction(async (tx) => {
      if (await this.deps.relationships.get(names.td, names.foreign, tx)) {
        throw new CairnError('conflict', `${names.td} fetches the bundle of ${names.foreign} from its bundle endpoint (cairn federation show): delete that relationship first to set a static bundle`);
      }
      return this.putBundle(tx, names.td, bundle, 'static', actor);
    });
    this.deps.logger.info(
      { event: 'federation.bundle_set', trustDomain: names.td, foreignTrustDomain: names.foreign, sequence: result.after.sequence, changed: result.before?.digest !== result.after.digest, actor },
      'foreign trust bundle set',
    );
    return result;
  }

  /**
   * Stores a foreign bundle in the caller's transaction: refused when its spiffe_sequence is older than
   * the one held (a replayed or out-of-date bundle would bring back keys the foreign domain removed);
   * a change is an audit entry and wakes the agents.
   */
  async putBundle(tx: Queryable, trustDomain: string, bundle: Bundle, source: 'static' | 'endpoint', actor: string): Promise<{ before: StoredForeignBundle | undefined; after: StoredForeignBundle }> {
    const foreign = bundle.trustDomain;
    const document = JSON.stringify(encodeSpiffeBundle(bundle));
    const before = await this.deps.store.get(trustDomain, foreign, tx, true);
    if (before?.sequence != null && bundle.sequence !== undefined && bundle.sequence < before.sequence) {
      throw new CairnError('bundle_sequence_older', `the bundle's spiffe_sequence ${bundle.sequence} is older than the ${before.sequence} held for ${foreign}: refusing to go back to an older bundle`, {
        details: { heldSequence: before.sequence },
      });
    }
    const digest = digestOf(document);
    if (before && before.digest === digest && before.source === source) return { before, after: before };
    const after = await this.deps.store.put(tx, {
      trustDomain,
      foreignTrustDomain: foreign,
      document,
      sequence: bundle.sequence ?? null,
      refreshHintSeconds: bundle.refreshHintSeconds ?? null,
      digest,
      source,
      updatedAt: this.deps.clock.now(),
      updatedBy: actor,
    });
    await this.deps.audit.append(tx, [{
      event: 'federation.bundle_set',
      actor,
      subject: {
        trustDomain,
        foreignTrustDomain: foreign,
        source,
        sequence: after.sequence ?? undefined,
        previousSequence: before ? (before.sequence ?? undefined) : undefined,
        x509Authorities: bundle.x509Authorities.length,
        jwtAuthorities: bundle.jwtAuthorities.length,
        digest: after.digest,
      },
    }]);
    await notifyTrustDomain(tx, trustDomain);
    return { before, after };
  }

  /** The bundle held for `foreign`, parsed (undefined: none). */
  async held(trustDomain: string, foreign: string): Promise<Bundle | undefined> {
    const stored = await this.deps.store.get(trustDomain, foreign);
    return stored ? storedBundle(stored) : undefined;
  }

  async getBundle(trustDomain: string, foreign: string): Promise<StoredForeignBundle> {
    const names = await this.names(trustDomain, foreign);
    const held = await this.deps.store.get(names.td, names.foreign);
    if (!held) throw new CairnError('federated_bundle_not_found', `trust domain ${names.td} holds no bundle of ${names.foreign} (set one with cairn bundle set)`);
    return held;
  }

  async listBundles(trustDomain: string): Promise<StoredForeignBundle[]> {
    const td = validateTrustDomainName(trustDomain);
    if (!(await this.deps.trustDomains.get(td))) throw new CairnError('trust_domain_not_found', `trust domain ${td} does not exist`);
    return this.deps.store.list(td);
  }

  /**
   * Removes a foreign bundle: workloads stop receiving it at once (their streams get the state
   * without it). Refused while entries federate with it unless forced, as SPIRE's `bundle delete`
   * restricts by default: those entries would silently lose the peer's trust.
   */
  async deleteBundle(trustDomain: string, foreign: string, force: boolean, actor: string): Promise<StoredForeignBundle> {
    const names = await this.names(trustDomain, foreign);
    const gone = await this.deps.store.transaction(async (tx) => {
      if (await this.deps.relationships.get(names.td, names.foreign, tx)) {
        throw new CairnError('conflict', `${names.td} fetches the bundle of ${names.foreign} from its bundle endpoint: delete the relationship instead (cairn federation delete)`);
      }
      const held = await this.removeBundle(tx, names.td, names.foreign, force, actor);
      if (!held) throw new CairnError('federated_bundle_not_found', `trust domain ${names.td} holds no bundle of ${names.foreign}`);
      return held;
    });
    this.deps.logger.info({ event: 'federation.bundle_deleted', trustDomain: names.td, foreignTrustDomain: names.foreign, actor }, 'foreign trust bundle deleted');
    return gone;
  }

  /** Removes a held bundle in the caller's transaction (refused while entries federate with it, unless forced); undefined: none held. */
  async removeBundle(tx: Queryable, trustDomain: string, foreign: string, force: boolean, actor: string): Promise<StoredForeignBundle | undefined> {
    if (!(await this.deps.store.get(trustDomain, foreign, tx, true))) return undefined;
    const using = await this.deps.entries.federatingWith(trustDomain, foreign, tx);
    const devices = await this.deps.nodes.federatingWith(trustDomain, foreign, tx);
    if ((using.count > 0 || devices.count > 0) && !force) {
      const who = [
        ...(using.count > 0 ? [`${using.count} registration entr${using.count === 1 ? 'y' : 'ies'}`] : []),
        ...(devices.count > 0 ? [`${devices.count} agentless device${devices.count === 1 ? '' : 's'}`] : []),
      ].join(' and ');
      throw new CairnError(
        'federated_bundle_in_use',
        `${who} of ${trustDomain} federate with ${foreign} (e.g. ${using.example ?? devices.example}): update them first, or pass force to delete anyway (their workloads stop trusting ${foreign} at once)`,
        { details: { entries: using.count, devices: devices.count } },
      );
    }
    const held = (await this.deps.store.delete(tx, trustDomain, foreign))!;
    await this.deps.audit.append(tx, [{
      event: 'federation.bundle_deleted',
      actor,
      subject: { trustDomain, foreignTrustDomain: foreign, sequence: held.sequence ?? undefined, entriesFederating: using.count, devicesFederating: devices.count, forced: force },
    }]);
    await notifyTrustDomain(tx, trustDomain);
    return held;
  }

  /** Whether entries of `trustDomain` may federate with `foreign`: it is hosted here, or a bundle of it is held. */
  async canFederate(trustDomain: string, foreign: string): Promise<boolean> {
    if (await this.deps.trustDomains.get(foreign)) return true;
    return (await this.deps.store.get(trustDomain, foreign)) !== undefined;
  }

  /**
   * The foreign bundles an agent of `trustDomain` delivers, for the foreign trust domains its entries
   * federate with: the held bundle, else the published bundle of a trust domain hosted here; a name
   * with neither (its bundle was deleted with force) delivers nothing. `digest` identifies the set.
   */
  async deliverable(trustDomain: string, foreign: readonly string[]): Promise<{ digest: string; bundles: DeliveredBundle[] }> {
    const wanted = [...new Set(foreign)].filter((f) => f !== trustDomain).sort();
    const held = new Map((await this.deps.store.list(trustDomain, wanted)).map((b) => [b.foreignTrustDomain, b]));
    const bundles: DeliveredBundle[] = [];
    const documents: { td: string; doc: SpiffeBundleDocument | string }[] = [];
    for (const name of wanted) {
      const stored = held.get(name);
      if (stored) {
        bundles.push({ trustDomain: name, bundle: storedBundle(stored) });
        documents.push({ td: name, doc: stored.digest });
        continue;
      }
      try {
        const { trustDomain: local, keys } = await this.deps.authority.published(name);
        const bundle = bundleOf(local, keys);
        bundles.push({ trustDomain: name, bundle });
        documents.push({ td: name, doc: encodeSpiffeBundle(bundle) });
      } catch (err) {
        if (!isCairnError(err, 'trust_domain_not_found')) throw err;
      }
    }
    return { digest: digestOf(JSON.stringify(documents)), bundles };
  }
}
