import { X509Certificate } from 'node:crypto';
import type { Clock } from '../../lib/clock.js';
import { CairnError, isCairnError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { decodePageToken, pageSizeOf, type Page } from '../../lib/paging.js';
import { SpiffeId } from '../../spiffe/id.js';
import type { AuthorityService } from '../authority/service.js';
import { nodeSubjects, type BanService } from '../bans/service.js';
import { VerifiedConnections, type PeerCertificates } from '../authority/client-svid.js';
import type { AliasEntry, EntryStore } from '../entries/store.js';
import { checkCsrSignature, decodeCsrText, readCsr, verifyCsr } from '../issuance/csr.js';
import type { Queryable } from '../db/database.js';
import type { AuditAppender, AuditEvent } from '../audit/port.js';
import type { CsrRequest, IssuanceService, IssuedX509Svid, MintedJwtSvid, X509Issuer } from '../issuance/service.js';
import type { AttestedNode, NodeKind, NodeStore } from '../nodes/store.js';
import type { TokenService } from '../tokens/service.js';
import { defaultAgentId, invalidToken, isGuess, type TokenRefusal } from '../tokens/service.js';
import type { DeliveredBundle } from '../federation/service.js';
import type { FailureLimiter } from './failure-limiter.js';
import { NodeRefusals } from './refusals.js';
import { LookupBatcher } from '../../lib/lookup-batcher.js';

export interface EnrollmentDeps {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly tokens: TokenService;
  readonly nodes: NodeStore;
  readonly entries: EntryStore;
  readonly issuance: IssuanceService;
  readonly authority: AuthorityService;
  readonly limiter: FailureLimiter;
  readonly bans: BanService;
  /** Revoked serials (ca/revocation): a revoked SVID is refused for mTLS and renewal. */
  readonly revocations: { isRevoked(serial: string, q?: Queryable): Promise<boolean> };
  readonly audit: AuditAppender;
  /** The foreign bundles a device federating with `foreign` gets (ca/federation/, as agents' sync). */
  readonly federation: { deliverable(trustDomain: string, foreign: readonly string[]): Promise<{ bundles: DeliveredBundle[] }> };
  /**
   * Reuses a read until the next change notification (ChangeFeed.current): bundle changes notify, so a
   * removed authority stops counting as soon as its notification arrives. Absent, every call reads.
   */
  readonly shared?: <T>(key: string, load: () => Promise<T>) => Promise<T>;
}

/** What a device is answered at redemption and renewal: its SVID, and the foreign bundles its credential federates with, as they are now. */
export interface DeviceSvid {
  readonly svid: IssuedX509Svid;
  readonly federated: readonly DeliveredBundle[];
}

export interface BatchItemResult {
  readonly entryId: string;
  readonly svid?: IssuedX509Svid;
  readonly error?: { code: string; message: string };
}

export const serverId = (trustDomain: string): string => `spiffe://${trustDomain}/cairn/server`;

/**
 * The node's own ID, then (sorted) the node aliases whose selectors all belong to the node: the same
 * rule as `parentsOf`, over alias definitions read once for many nodes.
 */
export function parentsFrom(node: Pick<AttestedNode, 'spiffeId' | 'selectors'>, aliases: readonly AliasEntry[]): string[] {
  if (node.selectors.length === 0) return [node.spiffeId];
  const mine = new Set(node.selectors);
  const matching = new Set(aliases.filter((a) => a.selectors.every((s) => mine.has(s))).map((a) => a.spiffeId));
  matching.delete(node.spiffeId);
  return [node.spiffeId, ...[...matching].sort()];
}

/**
 * The trust bootstrap: one-time tokens become first SVIDs; from then on nodes prove themselves
 * only with the SVID they hold (mTLS), and only the node's current (or just-issued) serial counts.
 */
export class EnrollmentService {
  private readonly refusals: NodeRefusals;
  private readonly verified = new VerifiedConnections();
  /** Node records as every mTLS request reads them, joined across requests (a fleet asks at once). */
  private readonly records: LookupBatcher<string, AttestedNode>;

  constructor(private readonly deps: EnrollmentDeps) {
    this.refusals = new NodeRefusals(deps.audit, deps.logger, deps.clock);
    this.records = new LookupBatcher(async (ids) => new Map((await deps.nodes.getMany(ids)).map((n) => [n.spiffeId, n])));
  }

  /** A node agent's first SVID, from a join token. */
  async attestAgent(tokenText: string, csrText: string, source: string): Promise<IssuedX509Svid> {
    return (await this.enrollWithToken(tokenText, csrText, source, 'join')).svid;
  }

  /** An agentless device or sidecar's first SVID, from a workload credential, with the foreign bundles it federates with. */
  async redeemWorkload(tokenText: string, csrText: string, source: string): Promise<DeviceSvid> {
    const { svid, grant } = await this.enrollWithToken(tokenText, csrText, source, 'workload');
    return { svid, federated: await this.foreignBundles(grant.trustDomain, grant.federatesWith ?? []) };
  }

  /** A device's renewal, with the foreign bundles its credential federates with as they are now (a refreshed one arrives here). */
  async renewDevice(node: AttestedNode, csrText: string): Promise<DeviceSvid> {
    const svid = await this.renew(node, csrText);
    return { svid, federated: await this.foreignBundles(node.trustDomain, node.federatesWith) };
  }

  private async foreignBundles(trustDomain: string, foreign: readonly string[]): Promise<readonly DeliveredBundle[]> {
    return foreign.length === 0 ? [] : (await this.deps.federation.deliverable(trustDomain, foreign)).bundles;
  }

  /**
   * Redemption, signing, the inventory row and the node record commit together or not at all: a CA
   * killed anywhere in between leaves the token unspent, so the node simply retries. When the commit
   * happened but the answer was lost, the same key may redeem the token again (TokenStore.redeem).
   *
   * Refusals are cheap and a valid token is never refused for someone else's failures: the CSR's
   * structure and key are checked first (no cryptography), then the token with one indexed read.
   * Only a token that can be answered earns a signature check; guesses (unknown or malformed tokens)
   * are counted per source address and, past the limit, answered 429 — still without cryptography.
   */
  private async enrollWithToken(tokenText: string, csrText: string, source: string, kind: 'join' | 'workload'): Promise<{ svid: IssuedX509Svid; grant: NodeGrant }> {
    const request = readCsr(decodeCsrText(csrText));
    const screened = await this.deps.tokens.screen(tokenText, kind);
    if (!screened.ok) throw await this.refused(screened.reason, screened.tokenId, kind, source);
    // A spent token can only fetch the SVID it was redeemed for, by the key in that SVID.
    if (screened.issuedSvid && !spkiOf(screened.issuedSvid).equals(request.publicKey.spki)) throw await this.refused('used', screened.tokenId, kind, source);
    const csr = checkCsrSignature(request);
    const issuer = await this.deps.issuance.x509IssuerFor(screened.trustDomain);
    const nodeKind: NodeKind = kind === 'join' ? 'agent' : 'device';
    const attestationType = kind === 'join' ? 'join_token' : 'workload_credential';
    const outcome = await this.deps.nodes.transaction(async (tx) => {
      const r = await this.deps.tokens.redeem(tokenText, kind, tx);
      if (!r.ok) return r; // commits: a token presented expired or for the other purpose is spent
      const t = r.token;
      const grant: NodeGrant = {
        trustDomain: t.trustDomain,
        spiffeId: kind === 'join' ? (t.spiffeId ?? defaultAgentId(t.trustDomain, t.id)) : t.spiffeId!,
        selectors: t.selectors,
        issuedTo: `token:${t.id}`,
        federatesWith: t.federatesWith,
      };
      if (t.repeat) {
        const svid = await this.repeatedAnswer(tx, t.issuedSvid!, grant, csr, issuer.bundle, issuer.intermediates);
        return svid ? { ok: true as const, svid, grant, tokenId: t.id, repeat: true } : { ok: false as const, reason: 'used' as const, tokenId: t.id };
      }
      // the redemption's audit entry goes in with the node's, one write for both
      const redeemed = (svid: IssuedX509Svid): AuditEvent => ({ event: 'token.redeemed', actor: grant.issuedTo, subject: { tokenId: t.id, kind, trustDomain: t.trustDomain, spiffeId: grant.spiffeId, serial: svid.serial, source } });
      const svid = await this.enrollIn(tx, issuer, grant, csr, nodeKind, attestationType, redeemed);
      await this.deps.tokens.recordIssued(tx, t.id, svid.chain[0]!);
      return { ok: true as const, svid, grant, tokenId: t.id, repeat: false };
    }).catch(async (err: unknown) => {
      // a valid token for a banned node: nothing was spent or signed (rolled back), and it is on record
      if (isCairnError(err, 'agent_banned')) throw await this.refusals.refused(err, `token:${screened.tokenId}`, { tokenId: screened.tokenId, kind, trustDomain: screened.trustDomain, source });
      throw err;
    });
    if (!outcome.ok) throw await this.refused(outcome.reason, outcome.tokenId, kind, source);
    if (outcome.repeat) {
      this.deps.logger.info({ event: 'token.answer_repeated', tokenId: outcome.tokenId, spiffeId: outcome.grant.spiffeId, serial: outcome.svid.serial, issuedTo: outcome.grant.issuedTo }, 'one-time token presented again by its key: same SVID sent again');
    } else {
      this.deps.logger.info({ event: 'token.redeemed', tokenId: outcome.tokenId, kind, trustDomain: outcome.grant.trustDomain }, 'one-time token redeemed');
      this.attested(issuer, outcome.grant, outcome.svid, nodeKind, attestationType);
    }
    return { svid: outcome.svid, grant: outcome.grant };
  }

  /**
   * One answer to the caller whatever the reason (no oracle); the real reason goes to the log.
   * Guesses count toward the source's limit; past it they get 429 instead (logged at debug, so a
   * flood cannot flood the log). Replays of real tokens are not counted: they come from a holder.
   */
  private async refused(reason: TokenRefusal, tokenId: string | undefined, kind: 'join' | 'workload', source: string): Promise<CairnError> {
    if (isGuess(reason)) {
      try {
        this.deps.limiter.check(source);
      } catch (err) {
        this.deps.logger.debug({ event: 'token.refused', reason, tokenId, kind, source, limited: true }, 'one-time token refused');
        return err as CairnError;
      }
      this.deps.limiter.fail(source);
    }
    this.deps.logger.info({ event: 'token.refused', reason, tokenId, kind, source }, 'one-time token refused');
    // the real reason, which the caller is not told; refusals past the source's limit are not written (no log flood)
    await this.deps.audit.record([{ event: 'token.refused', actor: `bootstrap:${source}`, subject: { reason, tokenId, kind, source } }])
      .catch((err: unknown) => this.deps.logger.error({ err }, 'could not append a refused token to the audit log'));
    return invalidToken();
  }

  /**
   * A spent token presented again: the SVID it was redeemed for, if the CSR is for that SVID's key
   * and the node still stands where that redemption left it (not renewed since, not evicted: then the
   * first answer evidently arrived). Nothing new is signed or recorded.
   */
  private async repeatedAnswer(
    tx: Queryable, der: Buffer, grant: NodeGrant, csr: ReturnType<typeof verifyCsr>, bundle: Buffer[], intermediates: readonly Buffer[],
  ): Promise<IssuedX509Svid | undefined> {
    const cert = new X509Certificate(der);
    if (!cert.publicKey.export({ type: 'spki', format: 'der' }).equals(csr.publicKey.spki)) return undefined;
    const node = await this.deps.nodes.lock(tx, grant.spiffeId);
    const serial = serialOf(der);
    if (node?.banned) throw new CairnError('agent_banned', `${grant.spiffeId} is banned`);
    if (!node || node.serial !== serial || node.newSerial) return undefined;
    if (await this.deps.revocations.isRevoked(serial, tx)) return undefined;
    const notAfter = new Date(cert.validTo);
    if (notAfter <= this.deps.clock.now()) return undefined;
    // under an upstream the chain goes with it, when the authority that signed it is still the active one
    const signer = intermediates[0] ? new X509Certificate(intermediates[0]) : undefined;
    const chain = signer && cert.checkIssued(signer) && cert.verify(signer.publicKey) ? [der, ...intermediates] : [der];
    return { spiffeId: grant.spiffeId, chain, serial, notBefore: new Date(cert.validFrom), notAfter, bundle };
  }

  /**
   * Issues a node its SVID and records it as attested (again, for attestors that allow it: the new
   * serial becomes the current one), in one transaction with the inventory row and with `first`
   * (the attestor's own bookkeeping, such as marking its credential used). Banned nodes are refused.
   */
  async enroll(grant: NodeGrant, csr: ReturnType<typeof verifyCsr>, kind: NodeKind, attestationType: string, first?: (tx: Queryable) => Promise<void>): Promise<IssuedX509Svid> {
    await this.deps.bans.refuseBanned(grant.trustDomain, nodeSubjects(grant.spiffeId, grant.banSubjects));
    const issuer = await this.deps.issuance.x509IssuerFor(grant.trustDomain);
    const svid = await this.deps.nodes.transaction(async (tx) => {
      await first?.(tx);
      return this.enrollIn(tx, issuer, grant, csr, kind, attestationType);
    });
    this.attested(issuer, grant, svid, kind, attestationType);
    return svid;
  }

  /**
   * Sign and record the SVID, then the node, unless the deny-list names it (by ID, or by what its
   * attestor vouched for): whether it is attested now or was evicted, or never attested at all.
   * `alsoAudit`: the caller's own audit entry for this step (a token's redemption), written with the node's in one INSERT.
   */
  private async enrollIn(
    tx: Queryable, issuer: X509Issuer, grant: NodeGrant, csr: ReturnType<typeof verifyCsr>, kind: NodeKind, attestationType: string, alsoAudit?: (svid: IssuedX509Svid) => AuditEvent,
  ): Promise<IssuedX509Svid> {
    await this.deps.bans.refuseBanned(grant.trustDomain, nodeSubjects(grant.spiffeId, grant.banSubjects), tx);
    const [svid] = await issuer.issue([{ csr, policy: { spiffeId: SpiffeId.parse(grant.spiffeId), dnsNames: [] } }], grant.issuedTo, tx);
    await this.deps.nodes.upsert(tx, {
      spiffeId: grant.spiffeId, trustDomain: grant.trustDomain, kind, attestationType, selectors: grant.selectors, serial: svid!.serial, expiresAt: svid!.notAfter, banSubjects: grant.banSubjects ?? [],
      federatesWith: grant.federatesWith ?? [],
    }, this.deps.clock.now());
    await this.deps.audit.append(tx, [{
      event: 'node.attested',
      actor: grant.issuedTo,
      subject: { trustDomain: grant.trustDomain, spiffeId: grant.spiffeId, kind, attestationType, selectors: [...grant.selectors], serial: svid!.serial },
    }, ...(alsoAudit ? [alsoAudit(svid!)] : [])]);
    return svid!;
  }

  private attested(issuer: X509Issuer, grant: NodeGrant, svid: IssuedX509Svid, kind: NodeKind, attestationType: string): void {
    issuer.announce([svid], grant.issuedTo);
    this.deps.logger.info({ event: `${kind}.attested`, spiffeId: grant.spiffeId, attestationType, serial: svid.serial }, 'node attested');
  }

  /**
   * mTLS: the presented chain must verify against the bundle of its own trust domain, belong to a
   * known node of the right kind that is not banned, and carry its current or just-issued serial.
   * With `connection` (the TLS socket) the chain's verification is remembered for that connection
   * (VerifiedConnections); the node's record and the revocation list are read on every request,
   * in queries joined with other requests' (LookupBatcher), so a fleet's requests cost a few queries.
   */
  async authenticate(peer: PeerCertificates, kind: NodeKind, connection?: object): Promise<AttestedNode> {
    if (!peer.leaf) throw new CairnError('unauthenticated', 'a client certificate (the node SVID) is required');
    // A store that cannot be read is 503, not a refusal: an agent told "unauthenticated" during a
    // database outage would conclude it was evicted (a join-token agent then exits).
    const verified = await this.verified.verify(peer, connection, (td) => this.authoritiesOf(td), this.deps.clock.now());
    const id = verified.svid.spiffeId;
    const serial = verified.serial;
    const [node, revoked] = await Promise.all([this.records.get(id.toString()), this.deps.revocations.isRevoked(serial)]);
    // the chain verified: whoever is refused from here on proved to be this node
    const refuse = (err: CairnError): Promise<CairnError> => this.refusals.refused(err, id.toString(), { spiffeId: id.toString(), trustDomain: id.trustDomain, kind, serial });
    if (!node || node.kind !== kind) throw await refuse(new CairnError('unauthenticated', `${id.toString()} is not an attested ${kind}; attest again`));
    if (node.banned) throw await refuse(new CairnError('agent_banned', `${node.spiffeId} is banned`));
    if (revoked) throw await refuse(revokedRefusal(node, serial));
    if (serial === node.newSerial) {
      await this.deps.nodes.promote(node.spiffeId, serial, this.deps.clock.now());
    } else if (serial !== node.serial) {
      throw await refuse(new CairnError('agent_svid_superseded', 'this SVID has been superseded by a newer one; use the latest'));
    }
    return node;
  }

  /** The trust domain's X.509 authorities, read once per change notification when the feed allows. */
  private authoritiesOf(trustDomain: string): Promise<Buffer[]> {
    const read = (): Promise<Buffer[]> => this.deps.authority.x509Authorities(trustDomain);
    return this.deps.shared ? this.deps.shared(`x509 authorities ${trustDomain}`, read) : read();
  }

  /** A fresh SVID for an attested node; it becomes the node's next serial in the same transaction as its inventory row. */
  async renew(node: AttestedNode, csrText: string): Promise<IssuedX509Svid> {
    const csr = verifyCsr(decodeCsrText(csrText));
    const issuer = await this.deps.issuance.x509IssuerFor(node.trustDomain);
    const svid = await this.deps.nodes.transaction(async (tx) => {
      const [issued] = await issuer.issue([{ csr, policy: { spiffeId: SpiffeId.parse(node.spiffeId), dnsNames: [] } }], node.spiffeId, tx);
      await this.deps.nodes.setNewSerial(node.spiffeId, issued!.serial, issued!.notAfter, this.deps.clock.now(), tx);
      return issued!;
    });
    issuer.announce([svid], node.spiffeId);
    this.deps.logger.info({ event: `${node.kind}.renewed`, spiffeId: node.spiffeId, serial: svid.serial }, 'node SVID renewed');
    return svid;
  }

  /**
   * The agent's own ID and its node aliases: entries under any of these are the agent's to serve.
   * The selector match runs in SQL here; sync matches a shared read of every alias (`parentsFrom`),
   * and a test holds the two to the same answers.
   */
  async parentsOf(node: AttestedNode): Promise<string[]> {
    const aliases = await this.deps.entries.aliasesFor(node.trustDomain, serverId(node.trustDomain), node.selectors);
    return [node.spiffeId, ...aliases.filter((a) => a !== node.spiffeId)];
  }

  /** Batch issuance: identity, TTL and DNS names from each entry, only the key from each CSR. */
  async issueForEntries(node: AttestedNode, requests: readonly { entryId: string; csr: string }[]): Promise<BatchItemResult[]> {
    const parents = await this.parentsOf(node);
    const entries = new Map((await this.deps.entries.forParents(parents, requests.map((r) => r.entryId))).map((e) => [e.id, e]));
    const now = this.deps.clock.now();
    const results: BatchItemResult[] = new Array(requests.length);
    const toIssue: CsrRequest[] = [];
    const at: number[] = [];
    requests.forEach((r, index) => {
      const fail = (err: CairnError): void => {
        results[index] = { entryId: r.entryId, error: { code: err.code, message: err.message } };
      };
      const entry = entries.get(r.entryId);
      if (!entry) return fail(new CairnError('not_entry_parent', 'this agent is not authorized for that entry (unknown entry or another parent)'));
      if (entry.expiresAt && entry.expiresAt <= now) return fail(new CairnError('entry_not_found', 'the entry has expired'));
      try {
        toIssue.push({ der: decodeCsrText(r.csr), policy: { spiffeId: SpiffeId.parse(entry.spiffeId), ttlSeconds: entry.x509SvidTtlSeconds ?? undefined, dnsNames: entry.dnsNames }, entryId: entry.id });
        at.push(index);
      } catch (err) {
        if (!(err instanceof CairnError)) throw err;
        fail(err);
      }
    });
    if (toIssue.length > 0) {
      const issued = await this.deps.issuance.issueX509Batch(node.trustDomain, toIssue, node.spiffeId);
      issued.forEach((r, k) => {
        const entryId = requests[at[k]!]!.entryId;
        results[at[k]!] = 'svid' in r ? { entryId, svid: r.svid } : { entryId, error: { code: r.error.code, message: r.error.message } };
      });
    }
    return results;
  }

  bundleOf(node: AttestedNode): Promise<Buffer[]> {
    return this.deps.authority.x509Bundle(node.trustDomain);
  }

  async mintForEntry(node: AttestedNode, entryId: string, audience: readonly string[]): Promise<MintedJwtSvid> {
    const parents = await this.parentsOf(node);
    const [entry] = await this.deps.entries.forParents(parents, [entryId]);
    if (!entry) throw new CairnError('not_entry_parent', 'this agent is not authorized for that entry (unknown entry or another parent)');
    return this.deps.issuance.mintJwt(node.trustDomain, { spiffeId: SpiffeId.parse(entry.spiffeId), audience, ttlSeconds: entry.jwtSvidTtlSeconds ?? undefined }, node.spiffeId);
  }

  async mintForDevice(node: AttestedNode, audience: readonly string[]): Promise<MintedJwtSvid> {
    return this.deps.issuance.mintJwt(node.trustDomain, { spiffeId: SpiffeId.parse(node.spiffeId), audience }, node.spiffeId);
  }

  // ---- admin: cairn agent list | evict (bans: bans/service.ts)

  /** `trustDomains`: only those (a scoped admin credential's list). */
  list(trustDomain: string | undefined, pageSize: number | undefined, pageToken: string | undefined, trustDomains?: readonly string[]): Promise<Page<AttestedNode>> {
    const after = decodePageToken(pageToken, 1)?.[0] as string | undefined;
    return this.deps.nodes.list({ trustDomain, trustDomains }, pageSizeOf(pageSize), after);
  }

  /** Deletes the node record; a ban on the node stays in force (the deny-list is separate). */
  async evict(spiffeId: string, actor: string): Promise<void> {
    const deleted = await this.deps.nodes.transaction(async (tx) => {
      if (!(await this.deps.nodes.delete(spiffeId, tx))) return false;
      await this.deps.audit.append(tx, [{ event: 'node.evicted', actor, subject: { spiffeId, trustDomain: SpiffeId.parse(spiffeId).trustDomain } }]);
      return true;
    });
    if (!deleted) throw new CairnError('agent_not_found', `${spiffeId} is not an attested node`);
    this.deps.logger.info({ event: 'node.evicted', spiffeId, actor }, 'node evicted; it must attest again');
  }
}

/** What a node presenting a revoked SVID is told: it cannot renew it, only enroll again. */
function revokedRefusal(node: AttestedNode, serial: string): CairnError {
  const next = node.kind === 'device'
    ? 'bootstrap the device again with a new workload credential (cairn token create --spiffe-id, then cairn bootstrap --token)'
    : 'the agent must attest again (a join-token agent needs a new join token)';
  return new CairnError('svid_revoked', `the SVID ${serial} of ${node.spiffeId} has been revoked and cannot be renewed: ${next}`);
}

/** Who a node is after attestation: its SPIFFE ID, its selectors, and what vouched for it (for the inventory). */
export interface NodeGrant {
  readonly trustDomain: string;
  readonly spiffeId: string;
  readonly selectors: readonly string[];
  readonly issuedTo: string;
  /** What besides its SPIFFE ID a ban can name this node by: its x509pop fingerprint, its Kubernetes node UID. */
  readonly banSubjects?: readonly string[] | undefined;
  /** A device: the foreign trust domains its workload credential federates with. */
  readonly federatesWith?: readonly string[] | undefined;
}

const spkiOf = (der: Buffer): Buffer => new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' });

/** Serial of a DER certificate as lowercase hex, as the inventory stores it. */
export function serialOf(der: Buffer): string {
  return new X509Certificate(der).serialNumber.toLowerCase();
}
