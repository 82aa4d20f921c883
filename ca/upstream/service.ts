import { createPrivateKey } from 'node:crypto';
import { addSeconds, type Clock } from '../../lib/clock.js';
import { CairnError } from '../../lib/errors.js';
import { splitDerCertificates } from '../../spiffe/svid/x509.js';
import type { CaIssuer } from '../authority/ca-certificate.js';
import { preparationPoint } from '../authority/schedule.js';
import type { AuthorityKey } from '../authority/store.js';
import type { Sealer } from '../authority/sealing.js';
import type { Logger } from '../../lib/log.js';
import type { TrustDomain } from '../trust-domains/model.js';
import type { Queryable } from '../db/database.js';
import {
  certificatesFromPem, chainNotAfter, checkCanSignCas, checkValidAt, checkOutlives, joinDer, keyMatches, keyTypeOfKey, pathToRoot, privateKeyFromPem,
} from './chain.js';
import { upstreamSealingContext, type UpstreamAuthority, type UpstreamStore } from './store.js';

/** What signs a new CA certificate of a trust domain with a disk upstream, and what follows it. */
export interface UpstreamIssuer {
  readonly issuer: CaIssuer;
  /** The upstream CA's certificate and its chain up to the root, DER (stored with each CA certificate). */
  readonly chain: readonly Buffer[];
}

export interface DiskUpstreamInput {
  /** PEM: the upstream CA's certificate first, then its chain up to the self-signed root. */
  readonly certificatePem: string;
  /** PEM: the upstream CA's private key, unencrypted. */
  readonly keyPem: string;
}

/** The API fields the disk upstream arrives in (the CLI maps them to --upstream-ca-cert and --upstream-ca-key). */
export const DISK_FIELDS = { certificate: 'upstreamCaCertificate', key: 'upstreamCaKey' } as const;

/**
 * Upstream authorities of trust domains. The admin hands over a disk upstream's certificate and key
 * as PEM content over the admin API; the CA never opens a path on an admin's behalf. The key is
 * sealed under the KEK like the CA's own keys (and re-sealed by `cairn kek rotate`); it is opened
 * only to sign a new CA certificate, and never leaves in an answer, a log line or an error.
 */
export class UpstreamService {
  /** Active CAs of offline-upstream trust domains whose due successor was logged (once each, per process). */
  private readonly successorDueLogged = new Set<string>();

  constructor(private readonly deps: { readonly clock: Clock; readonly sealer: Sealer; readonly store: UpstreamStore }) {}

  /** issuerFor, refusing an offline upstream: its CA certificates are signed elsewhere and imported. */
  async issuerForNewCa(trustDomain: string): Promise<UpstreamIssuer | undefined> {
    const found = await this.issuerFor(trustDomain);
    if (found !== 'offline') return found;
    throw new CairnError(
      'authority_invalid_state',
      `${trustDomain} has an offline upstream authority: its next CA certificate is signed there (cairn authority prepare --trust-domain ${trustDomain} --kind x509 --csr-out FILE, sign the CSR, then cairn authority import)`,
    );
  }

  /**
   * The end of a CA certificate the upstream signs now: `intended`, or the upstream's own end when
   * that comes first (logged: the operator must renew the upstream). Refused when the upstream can
   * sign nothing useful any more.
   */
  fitNotAfter(trustDomain: string, upstream: UpstreamIssuer, intended: Date, logger: Logger): Date {
    const capped = caNotAfterUnder(upstream.chain, intended);
    if (capped.notAfter.getTime() <= this.deps.clock.now().getTime() + 60_000) {
      throw new CairnError('upstream_expires_too_soon', `the upstream authority of ${trustDomain} expires at ${capped.notAfter.toISOString()}: it can sign no new CA certificate; renew it`);
    }
    if (capped.shortened) {
      logger.warn(
        { event: 'authority.upstream_expiring', trustDomain, upstreamNotAfter: capped.notAfter.toISOString() },
        'the upstream authority expires before a full-length CA certificate would: the new one ends with it; renew the upstream',
      );
    }
    return capped.notAfter;
  }

  /** Logs, once per active CA and process, that an offline upstream must sign its successor now. */
  noteSuccessorDue(td: TrustDomain, keys: readonly AuthorityKey[], now: Date, logger: Logger): void {
    const next = offlineSuccessor(keys, td.authorityPrepublishSeconds, now);
    const active = keys.find((k) => k.kind === 'x509' && k.status === 'active' && k.notAfter > now);
    if (!next?.due || !active || this.successorDueLogged.has(active.id)) return;
    this.successorDueLogged.add(active.id);
    logger.warn(
      { event: 'authority.successor_due', trustDomain: td.name, authorityId: active.id, dueAt: next.dueAt.toISOString(), activeNotAfter: active.notAfter.toISOString(), awaitingCertificate: next.awaitingCertificate },
      next.awaitingCertificate
        ? `a signed successor of the X.509 CA of ${td.name} is due: import the upstream-signed certificate for prepared authority ${next.awaitingCertificate} (cairn authority import)`
        : `a signed successor of the X.509 CA of ${td.name} is due: cairn authority prepare --trust-domain ${td.name} --kind x509 --csr-out FILE, have the upstream sign it, then cairn authority import`,
    );
  }

  put(tx: Queryable, record: UpstreamAuthority): Promise<void> {
    return this.deps.store.put(tx, record);
  }

  offline(): Promise<string[]> {
    return this.deps.store.offline();
  }

  get(trustDomain: string): Promise<UpstreamAuthority | undefined> {
    return this.deps.store.get(trustDomain);
  }

  /**
   * Checks a disk upstream for a new trust domain whose CA certificates live `caTtlSeconds`: the
   * certificate parses, is a CA that may sign CAs, the key is its key, the chain reaches a
   * self-signed root, and nothing in it expires before a CA certificate made now would.
   */
  checkDisk(trustDomain: string, input: DiskUpstreamInput, caTtlSeconds: number): { record: UpstreamAuthority; upstream: UpstreamIssuer } {
    const now = this.deps.clock.now();
    const certs = certificatesFromPem(input.certificatePem, DISK_FIELDS.certificate);
    const key = privateKeyFromPem(input.keyPem, DISK_FIELDS.key);
    const keyType = keyTypeOfKey(key, DISK_FIELDS.key);
    const ca = certs[0]!;
    checkCanSignCas(ca, DISK_FIELDS.certificate, 'the upstream CA certificate (the first in the file)');
    if (!keyMatches(ca, key)) {
      throw new CairnError('upstream_key_mismatch', `${DISK_FIELDS.key}: the private key is not the key of the upstream CA certificate (the first certificate in ${DISK_FIELDS.certificate})`, {
        details: { field: DISK_FIELDS.key },
      });
    }
    checkValidAt(ca, now, DISK_FIELDS.certificate);
    const chain = [ca, ...pathToRoot(ca, certs.slice(1), DISK_FIELDS.certificate, now)];
    checkOutlives(chain, addSeconds(now, caTtlSeconds), DISK_FIELDS.certificate, 'renew the upstream CA, or lower --ca-ttl so that CA certificates end before it');
    const createdAt = now;
    const record: UpstreamAuthority = {
      trustDomain,
      mode: 'disk',
      chain: joinDer(chain),
      keyType,
      privateKeySealed: this.deps.sealer.seal(key.export({ format: 'der', type: 'pkcs8' }), upstreamSealingContext(trustDomain)),
      createdAt,
      updatedAt: createdAt,
    };
    return { record, upstream: { issuer: { certificate: ca, privateKey: key, keyType }, chain } };
  }

  /**
   * The signer of the trust domain's next CA certificate: its disk upstream, 'offline' when an
   * offline upstream must sign it (no key here), or undefined for a self-signed trust domain.
   */
  async issuerFor(trustDomain: string): Promise<UpstreamIssuer | 'offline' | undefined> {
    const u = await this.deps.store.get(trustDomain);
    if (!u) return undefined;
    if (u.mode === 'offline') return 'offline';
    const key = createPrivateKey({ key: this.deps.sealer.open(u.privateKeySealed, upstreamSealingContext(trustDomain)), format: 'der', type: 'pkcs8' });
    const chain = splitDerCertificates(u.chain);
    return { issuer: { certificate: chain[0]!, privateKey: key, keyType: u.keyType }, chain };
  }
}

/** When the CA certificate made now under `chain` must end: its intended end, or the chain's if that is earlier. */
export function caNotAfterUnder(chain: readonly Buffer[], intended: Date): { notAfter: Date; shortened: boolean } {
  const end = chainNotAfter(chain);
  return end < intended ? { notAfter: end, shortened: true } : { notAfter: intended, shortened: false };
}

/**
 * For a trust domain with an offline upstream: when its next CA certificate should be signed (the
 * point at which rotation would prepare a successor itself), and whether that is now, i.e. no
 * signed successor has been imported yet. Undefined when there is no active X.509 CA to follow.
 */
export function offlineSuccessor(keys: readonly AuthorityKey[], prepublishSeconds: number, now: Date): { dueAt: Date; due: boolean; awaitingCertificate: string | undefined } | undefined {
  const active = keys.find((k) => k.kind === 'x509' && k.status === 'active' && k.notAfter > now);
  if (!active) return undefined;
  const prepared = keys.find((k) => k.kind === 'x509' && k.status === 'prepared' && k.notAfter > now);
  const dueAt = preparationPoint(active, prepublishSeconds);
  return { dueAt, due: now >= dueAt && !prepared?.certificate, awaitingCertificate: prepared && !prepared.certificate ? prepared.id : undefined };
}
