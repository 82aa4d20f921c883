import { createHash, X509Certificate as NodeX509 } from 'node:crypto';
import type { UpstreamStatus } from '../../contract/authority-api.js';
import type { Clock } from '../../lib/clock.js';
import { CairnError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { splitDerCertificates } from '../../spiffe/svid/x509.js';
import type { AuditAppender } from '../audit/port.js';
import type { Sealer } from '../authority/sealing.js';
import type { AuthorityService } from '../authority/service.js';
import type { AuthorityKey, AuthorityKeyStore } from '../authority/store.js';
import type { Database } from '../db/database.js';
import type { TrustDomainStore } from '../trust-domains/store.js';
import { certificatesFromPem, chainNotAfter, checkOutlives, joinDer, pathToRoot, rootsOf } from './chain.js';
import { checkImportedCertificate, csrForKey } from './csr.js';
import { offlineSuccessor, type UpstreamService } from './service.js';

export interface OfflineUpstreamDeps {
  readonly db: Database;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly sealer: Sealer;
  readonly keys: AuthorityKeyStore;
  readonly trustDomains: TrustDomainStore;
  readonly authority: AuthorityService;
  readonly upstream: UpstreamService;
  readonly audit?: AuditAppender;
  /** Request the trust domain's URI name constraint in CSRs (as the CA's own certificates carry it). */
  readonly caNameConstraints?: boolean;
}

/** A certificate not yet valid by more than this is refused (the upstream's clock is ahead). */
const SKEW_MS = 5 * 60_000;

const waiting = (keys: readonly AuthorityKey[], now: Date): AuthorityKey | undefined =>
  keys.find((k) => k.kind === 'x509' && k.status === 'prepared' && k.notAfter > now);

/**
 * The offline upstream flow, with no upstream key on the CA host: `authority prepare --csr-out`
 * generates a key and returns a CSR for it, the operator has the upstream sign it, `authority
 * import` checks the certificate and its chain and publishes it; rotation activates it on its
 * schedule (or `authority activate` at once). From the first import the trust domain's upstream is
 * offline: rotation makes no self-signed successor and reports when a signed one is due instead.
 */
export class OfflineUpstream {
  constructor(private readonly deps: OfflineUpstreamDeps) {}

  /** A prepared key awaiting its certificate, and its CSR; asking again returns the same key's CSR. */
  async prepareCsr(trustDomain: string, actor: string): Promise<{ key: AuthorityKey; csr: string; reused: boolean }> {
    const td = await this.deps.trustDomains.get(trustDomain);
    if (!td) throw new CairnError('trust_domain_not_found', `trust domain ${trustDomain} does not exist`);
    await this.refuseDisk(td.name);
    const now = this.deps.clock.now();
    let key = waiting(await this.deps.keys.all(td.name), now);
    let reused = true;
    if (!key) {
      const fresh = await this.deps.authority.generateKey({ trustDomain: td.name, kind: 'x509', keyType: td.caKeyType, ttlSeconds: td.caTtlSeconds, status: 'prepared', awaitCertificate: true });
      key = await this.deps.db.transaction(async (tx) => {
        if (!(await this.deps.trustDomains.lock(tx, td.name))) throw new CairnError('trust_domain_not_found', `trust domain ${td.name} does not exist`);
        const raced = waiting(await this.deps.keys.all(td.name, tx), now);
        if (raced) return raced;
        await this.deps.keys.insert(tx, [fresh]);
        await this.deps.audit?.append(tx, [{ event: 'authority.prepared', actor, subject: { trustDomain: td.name, kind: 'x509', authorityId: fresh.id, keyType: fresh.keyType, csr: true } }]);
        reused = false;
        return fresh;
      });
      if (!reused) this.deps.logger.info({ event: 'authority.prepared', trustDomain: td.name, kind: 'x509', authorityId: key.id, csr: true, actor }, 'authority key prepared for an upstream to sign');
    }
    if (key.certificate) {
      throw new CairnError('authority_invalid_state', `x509 authority ${key.id} of ${td.name} is already prepared with a certificate: activate it, or wait for rotation to`, { details: { id: key.id, kind: 'x509' } });
    }
    return { key, csr: await csrForKey(key, this.deps.sealer, this.deps.caNameConstraints ?? true), reused };
  }

  /**
   * The upstream-signed certificate for the prepared key: checked (its key, a CA, the trust domain's
   * SPIFFE ID, a chain to a self-signed root from `chainPem` or the chain imported before, nothing
   * above it expiring first), then published: the bundle carries the root from now on.
   */
  async import(trustDomain: string, certificatePem: string, chainPem: string | undefined, actor: string): Promise<AuthorityKey> {
    const now = this.deps.clock.now();
    const given = certificatesFromPem(certificatePem, 'certificate');
    const chainGiven = chainPem === undefined ? [] : certificatesFromPem(chainPem, 'chain');
    const td = await this.deps.trustDomains.get(trustDomain);
    if (!td) throw new CairnError('trust_domain_not_found', `trust domain ${trustDomain} does not exist`);
    const known = await this.refuseDisk(td.name);
    const key = waiting(await this.deps.keys.all(td.name), now);
    if (!key || key.certificate) {
      throw new CairnError('authority_invalid_state', `${td.name} has no prepared x509 authority awaiting a certificate: run cairn authority prepare --trust-domain ${td.name} --kind x509 --csr-out FILE first, and have the upstream sign that CSR`, {
        details: { kind: 'x509' },
      });
    }
    const der = given[0]!;
    checkImportedCertificate(der, key, 'certificate');
    const cert = new NodeX509(der);
    const notBefore = new Date(cert.validFrom);
    const notAfter = new Date(cert.validTo);
    if (notBefore.getTime() > now.getTime() + SKEW_MS) throw new CairnError('invalid_upstream_ca', `certificate: it is not valid before ${notBefore.toISOString()}`, { details: { field: 'certificate' } });
    if (notAfter.getTime() <= now.getTime() + 60_000) throw new CairnError('upstream_expires_too_soon', `certificate: it expires at ${notAfter.toISOString()}`, { details: { field: 'certificate' } });
    const pool = [...given.slice(1), ...chainGiven, ...(known ? splitDerCertificates(known.chain) : [])];
    const path = pathToRoot(der, pool, 'chain', now);
    checkOutlives(path, notAfter, 'chain', 'the upstream must outlive the CA certificate it signs: renew it, or sign a shorter certificate');
    await this.deps.db.transaction(async (tx) => {
      if (!(await this.deps.trustDomains.lock(tx, td.name))) throw new CairnError('trust_domain_not_found', `trust domain ${td.name} does not exist`);
      const still = waiting(await this.deps.keys.all(td.name, tx), now);
      if (still?.id !== key.id || still.certificate) throw new CairnError('conflict', `x509 authority ${key.id} of ${td.name} changed meanwhile; list the authorities and try again`);
      await this.deps.keys.setCertificate(tx, key.id, der, joinDer(path), notBefore, notAfter, now);
      await this.deps.upstream.put(tx, { trustDomain: td.name, mode: 'offline', chain: joinDer(path), createdAt: known?.createdAt ?? now, updatedAt: now });
      await this.deps.trustDomains.bumpBundleSequence(tx, td.name, now);
      await this.deps.audit?.append(tx, [{ event: 'authority.imported', actor, subject: { trustDomain: td.name, kind: 'x509', authorityId: key.id, notAfter: notAfter.toISOString(), issuer: cert.issuer.replace(/\n/g, ', ') } }]);
    });
    this.deps.logger.info(
      { event: 'authority.imported', trustDomain: td.name, kind: 'x509', authorityId: key.id, notAfter: notAfter.toISOString(), issuer: cert.issuer.replace(/\n/g, ', '), actor },
      'upstream-signed CA certificate imported and published; it signs once activated',
    );
    return { ...key, certificate: der, upstreamChain: joinDer(path), notBefore, notAfter, createdAt: now };
  }

  /** The trust domain's upstream for `authority list`: its roots, its end, and for an offline one when a successor is due. */
  async status(trustDomain: string, keys: readonly AuthorityKey[], prepublishSeconds: number): Promise<UpstreamStatus | undefined> {
    const u = await this.deps.upstream.get(trustDomain);
    if (!u) return undefined;
    const chain = splitDerCertificates(u.chain);
    const next = u.mode === 'offline' ? offlineSuccessor(keys, prepublishSeconds, this.deps.clock.now()) : undefined;
    return {
      mode: u.mode,
      roots: rootsOf(chain).map((d) => {
        const c = new NodeX509(d);
        return { subject: c.subject.replace(/\n/g, ', '), notAfter: new Date(c.validTo).toISOString(), fingerprint: `sha256:${createHash('sha256').update(d).digest('hex')}` };
      }),
      notAfter: chainNotAfter(chain).toISOString(),
      successorDueAt: next ? next.dueAt.toISOString() : null,
      successorDue: next?.due ?? false,
    };
  }

  /**
   * Every offline-upstream trust domain whose successor is not imported yet, and when it is (was)
   * due: the metric cairn_authority_successor_due_timestamp_seconds. One with a signed successor
   * waiting to activate is not listed.
   */
  async dueEverywhere(): Promise<{ trustDomain: string; dueAt: Date }[]> {
    const out: { trustDomain: string; dueAt: Date }[] = [];
    for (const name of await this.deps.upstream.offline()) {
      const td = await this.deps.trustDomains.get(name);
      if (!td) continue;
      const now = this.deps.clock.now();
      const keys = await this.deps.keys.all(name);
      const next = offlineSuccessor(keys, td.authorityPrepublishSeconds, now);
      if (next && !waiting(keys, now)?.certificate) out.push({ trustDomain: name, dueAt: next.dueAt });
    }
    return out;
  }

  /** A disk upstream signs successors itself: the offline levers are refused for it. Returns the offline upstream, if any. */
  private async refuseDisk(trustDomain: string) {
    const u = await this.deps.upstream.get(trustDomain);
    if (u?.mode === 'disk') {
      throw new CairnError('authority_invalid_state', `${trustDomain} has a disk upstream authority: each new CA certificate is signed by it automatically (cairn authority prepare --kind x509 without --csr-out)`);
    }
    return u;
  }
}
