import { createHash } from 'node:crypto';
import type { Clock } from '../../lib/clock.js';
import { CairnError, isCairnError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { encodeSpiffeBundle, parseSpiffeBundle, type Bundle, type SpiffeBundleDocument } from '../../spiffe/bundle/bundle.js';
import type { AuditAppender } from '../audit/port.js';
import type { AuthorityService } from '../authority/service.js';
import { bundleOf } from '../bundle/documents.js';
import { notifyChange } from '../db/changes.js';
import type { EntryStore } from '../entries/store.js';
import type { TrustDomainStore } from '../trust-domains/store.js';
import { validateTrustDomainName } from '../trust-domains/service.js';
import { parseForeignBundle } from './bundle-input.js';
import type { FederationStore, StoredForeignBundle } from './store.js';

export interface FederationDeps {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly store: FederationStore;
  readonly trustDomains: TrustDomainStore;
  readonly entries: EntryStore;
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

  private async names(trustDomain: string, foreign: string): Promise<{ td: string; foreign: string }> {
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
    const document = JSON.stringify(encodeSpiffeBundle(bundle));
    const result = await this.deps.store.transaction(async (tx) => {
      const before = await this.deps.store.get(names.td, names.foreign, tx, true);
      if (before?.sequence != null && bundle.sequence !== undefined && bundle.sequence < before.sequence) {
        throw new CairnError('bundle_sequence_older', `the bundle's spiffe_sequence ${bundle.sequence} is older than the ${before.sequence} held for ${names.foreign}: refusing to go back to an older bundle`, {
          details: { heldSequence: before.sequence },
        });
      }
      const after = await this.deps.store.put(tx, {
        trustDomain: names.td,
        foreignTrustDomain: names.foreign,
        document,
        sequence: bundle.sequence ?? null,
        refreshHintSeconds: bundle.refreshHintSeconds ?? null,
        digest: digestOf(document),
        source: 'static',
        updatedAt: this.deps.clock.now(),
        updatedBy: actor,
      });
      if (before?.digest !== after.digest) {
        await this.deps.audit.append(tx, [{
          event: 'federation.bundle_set',
          actor,
          subject: {
            trustDomain: names.td,
            foreignTrustDomain: names.foreign,
            source: 'static',
            sequence: after.sequence ?? undefined,
            previousSequence: before ? (before.sequence ?? undefined) : undefined,
            x509Authorities: bundle.x509Authorities.length,
            jwtAuthorities: bundle.jwtAuthorities.length,
            digest: after.digest,
          },
        }]);
        await notifyChange(tx, names.td);
      }
      return { before, after };
    });
    this.deps.logger.info(
      { event: 'federation.bundle_set', trustDomain: names.td, foreignTrustDomain: names.foreign, sequence: result.after.sequence, changed: result.before?.digest !== result.after.digest, actor },
      'foreign trust bundle set',
    );
    return result;
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
      const held = await this.deps.store.get(names.td, names.foreign, tx, true);
      if (!held) throw new CairnError('federated_bundle_not_found', `trust domain ${names.td} holds no bundle of ${names.foreign}`);
      const using = await this.deps.entries.federatingWith(names.td, names.foreign, tx);
      if (using.count > 0 && !force) {
        throw new CairnError(
          'federated_bundle_in_use',
          `${using.count} registration entr${using.count === 1 ? 'y' : 'ies'} of ${names.td} federate with ${names.foreign} (e.g. ${using.example}): update them first, or pass force to delete the bundle anyway (their workloads stop trusting ${names.foreign} at once)`,
          { details: { entries: using.count } },
        );
      }
      await this.deps.store.delete(tx, names.td, names.foreign);
      await this.deps.audit.append(tx, [{
        event: 'federation.bundle_deleted',
        actor,
        subject: { trustDomain: names.td, foreignTrustDomain: names.foreign, sequence: held.sequence ?? undefined, entriesFederating: using.count, forced: force },
      }]);
      await notifyChange(tx, names.td);
      return held;
    });
    this.deps.logger.info({ event: 'federation.bundle_deleted', trustDomain: names.td, foreignTrustDomain: names.foreign, actor }, 'foreign trust bundle deleted');
    return gone;
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
