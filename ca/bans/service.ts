import type { AuditAppender } from '../audit/port.js';
import type { Clock } from '../../lib/clock.js';
import { CairnError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { decodePageToken, pageSizeOf, type Page } from '../../lib/paging.js';
import { SpiffeId } from '../../spiffe/id.js';
import type { Queryable } from '../db/database.js';
import type { TrustDomainStore } from '../trust-domains/store.js';
import { banSubject, type Ban, type BanKind, type BanStore } from './store.js';

export interface BanDeps {
  readonly audit: AuditAppender;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly store: BanStore;
  readonly trustDomains: TrustDomainStore;
}

/** What an admin bans: exactly one of a SPIFFE ID, a device certificate's fingerprint, a Kubernetes node UID. */
export interface BanTarget {
  readonly spiffeId?: string | undefined;
  readonly trustDomain?: string | undefined;
  /** SHA-1 of the x509pop device certificate, hex (colons and case as openssl prints them are fine). */
  readonly fingerprint?: string | undefined;
  readonly nodeUid?: string | undefined;
}

const NODE_UID = /^[A-Za-z0-9-]{1,128}$/;

export const fingerprintSubject = (sha1Hex: string): string => banSubject('x509pop_fingerprint', sha1Hex);
export const nodeUidSubject = (uid: string): string => banSubject('k8s_psat_node_uid', uid);
/** Everything a node can be banned by: its SPIFFE ID and what its attestor adds (fingerprint, node UID). */
export const nodeSubjects = (spiffeId: string, extra: readonly string[] = []): string[] => [banSubject('spiffe_id', spiffeId), ...extra];

function targetOf(t: BanTarget): { trustDomain: string | undefined; kind: BanKind; value: string } {
  const given = [t.spiffeId, t.fingerprint, t.nodeUid].filter((v) => v !== undefined).length;
  if (given !== 1) throw new CairnError('invalid_request', 'give exactly one of spiffeId, fingerprint (x509pop) or nodeUid (k8s_psat)');
  if (t.spiffeId !== undefined) {
    const id = SpiffeId.parse(t.spiffeId);
    if (t.trustDomain !== undefined && t.trustDomain !== id.trustDomain) throw new CairnError('wrong_trust_domain', `${t.spiffeId} is not in trust domain ${t.trustDomain}`);
    return { trustDomain: id.trustDomain, kind: 'spiffe_id', value: id.toString() };
  }
  if (t.fingerprint !== undefined) {
    const value = t.fingerprint.replace(/:/g, '').toLowerCase();
    if (!/^[0-9a-f]{40}$/.test(value)) throw new CairnError('invalid_request', 'fingerprint must be the SHA-1 of the device certificate in hex (openssl x509 -noout -fingerprint -sha1), as in its agent ID');
    return { trustDomain: t.trustDomain, kind: 'x509pop_fingerprint', value };
  }
  if (!NODE_UID.test(t.nodeUid!)) throw new CairnError('invalid_request', 'nodeUid must be a Kubernetes node UID (letters, digits and "-")');
  return { trustDomain: t.trustDomain, kind: 'k8s_psat_node_uid', value: t.nodeUid! };
}

function needTrustDomain(trustDomain: string | undefined, kind: BanKind): string {
  if (trustDomain === undefined) throw new CairnError('invalid_request', `a ban by ${kind === 'x509pop_fingerprint' ? 'fingerprint' : 'nodeUid'} needs trustDomain`);
  return trustDomain;
}

/**
 * The deny-list of nodes. A ban names a SPIFFE ID, an x509pop device certificate or a Kubernetes
 * node, whether or not it is attested now; every attestation and every mTLS request of an attested
 * node consults it, and evicting a node leaves its ban in place.
 */
export class BanService {
  constructor(private readonly deps: BanDeps) {}

  async ban(target: BanTarget & { reason?: string | undefined }, actor: string): Promise<Ban> {
    const t = targetOf(target);
    const trustDomain = needTrustDomain(t.trustDomain, t.kind);
    if (!(await this.deps.trustDomains.get(trustDomain))) throw new CairnError('trust_domain_not_found', `trust domain ${trustDomain} does not exist`);
    const ban = await this.deps.store.transaction(async (tx) => {
      const added = await this.deps.store.add({ trustDomain, kind: t.kind, value: t.value, reason: target.reason ?? null, createdBy: actor, createdAt: this.deps.clock.now() }, tx);
      await this.deps.audit.append(tx, [{ event: 'node.banned', actor, subject: { trustDomain, kind: t.kind, value: t.value, reason: added.reason ?? undefined, spiffeId: t.kind === 'spiffe_id' ? t.value : undefined } }]);
      return added;
    });
    this.deps.logger.info({ event: 'node.banned', trustDomain, kind: t.kind, value: t.value, actor }, 'node banned');
    return ban;
  }

  async unban(target: BanTarget, actor: string): Promise<Ban> {
    const t = targetOf(target);
    const trustDomain = needTrustDomain(t.trustDomain, t.kind);
    const lifted = await this.deps.store.transaction(async (tx) => {
      const removed = await this.deps.store.remove(trustDomain, t.kind, t.value, tx);
      if (removed) await this.deps.audit.append(tx, [{ event: 'node.unbanned', actor, subject: { trustDomain, kind: t.kind, value: t.value, spiffeId: t.kind === 'spiffe_id' ? t.value : undefined } }]);
      return removed;
    });
    if (!lifted) throw new CairnError('not_found', `no ban on ${t.kind === 'spiffe_id' ? t.value : `${t.kind} ${t.value} in ${trustDomain}`}`);
    this.deps.logger.info({ event: 'node.unbanned', trustDomain, kind: t.kind, value: t.value, actor }, 'node unbanned');
    return lifted;
  }

  /** `trustDomains`: only those (a scoped admin credential's list). */
  list(trustDomain: string | undefined, pageSize: number | undefined, pageToken: string | undefined, trustDomains?: readonly string[]): Promise<Page<Ban>> {
    const after = decodePageToken(pageToken, 3) as string[] | undefined;
    return this.deps.store.list(trustDomain, pageSizeOf(pageSize), after, trustDomains);
  }

  /** Throws agent_banned when any of the node's subjects is banned. `q`: the caller's transaction. */
  async refuseBanned(trustDomain: string, subjects: readonly string[], q?: Queryable): Promise<void> {
    const ban = await this.deps.store.find(trustDomain, subjects, q);
    if (ban) throw new CairnError('agent_banned', ban.kind === 'spiffe_id' ? `${ban.value} is banned` : `this node is banned (${ban.kind} ${ban.value})`);
  }
}
