import type { Clock } from '../../lib/clock.js';
import { addSeconds } from '../../lib/clock.js';
import { CairnError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { randomAlphanumeric, randomSerial, type Random } from '../../lib/random.js';
import type { Database, Queryable } from '../db/database.js';
import type { TrustDomainStore } from '../trust-domains/store.js';
import type { TrustDomain } from '../trust-domains/model.js';
import { createCaCertificate } from './ca-certificate.js';
import { generateKeyPairOf, profileOf, type KeyType } from './key-types.js';
import type { Sealer } from './sealing.js';
import { jwtSignerOf, sealingContext, x509SignerOf, type JwtSigner, type X509Signer } from './signers.js';
import type { AuthorityKey, AuthorityKeyStore, AuthorityKind } from './store.js';

/** X.509 SVIDs and CA certificates start 10 s in the past to absorb clock skew (SPIRE's cushion). */
export const NOT_BEFORE_CUSHION_SECONDS = 10;

export interface AuthorityDeps {
  readonly db: Database;
  readonly clock: Clock;
  readonly random: Random;
  readonly sealer: Sealer;
  readonly keys: AuthorityKeyStore;
  readonly trustDomains: TrustDomainStore;
  readonly logger: Logger;
  /** Put the trust domain's URI name constraint into new CA certificates (default true). */
  readonly caNameConstraints?: boolean;
}

export interface ActiveAuthority {
  readonly trustDomain: TrustDomain;
  readonly x509: X509Signer;
  readonly jwt: JwtSigner;
}

export interface NewKeyRequest {
  readonly trustDomain: string;
  readonly kind: AuthorityKind;
  readonly keyType: KeyType;
  readonly ttlSeconds: number;
  readonly status: 'prepared' | 'active';
}

/**
 * The per-trust-domain authority: generates and seals keys, hands out signers for the active keys
 * (decrypted once per key id and cached on this instance), and rotates keys as they age.
 */
export class AuthorityService {
  private readonly x509Signers = new Map<string, X509Signer>();
  private readonly jwtSigners = new Map<string, JwtSigner>();

  constructor(private readonly deps: AuthorityDeps) {}

  async generateKey(req: NewKeyRequest): Promise<AuthorityKey> {
    const { clock, random, sealer } = this.deps;
    const now = clock.now();
    const notBefore = addSeconds(now, -NOT_BEFORE_CUSHION_SECONDS);
    // A trust domain created before the caps may hold a longer TTL: its next keys get the cap.
    const notAfter = addSeconds(now, Math.min(req.ttlSeconds, profileOf(req.keyType).maxCaTtlSeconds));
    const { privateKey, publicKey } = await generateKeyPairOf(req.keyType);
    const id = randomAlphanumeric(random, 32);
    const certificate =
      req.kind === 'x509'
        ? await createCaCertificate({
            trustDomain: req.trustDomain, keyType: req.keyType, privateKey, publicKey, serial: randomSerial(random), notBefore, notAfter,
            nameConstraints: this.deps.caNameConstraints ?? true,
          })
        : null;
    return {
      id,
      trustDomain: req.trustDomain,
      kind: req.kind,
      keyType: req.keyType,
      status: req.status,
      publicKey: publicKey.export({ format: 'der', type: 'spki' }),
      certificate,
      privateKeySealed: sealer.seal(privateKey.export({ format: 'der', type: 'pkcs8' }), sealingContext(req.trustDomain, id)),
      notBefore,
      notAfter,
      createdAt: now,
    };
  }

  /** The trust domain's settings and signers for its active keys: one read, then cached key material. */
  async active(trustDomainName: string): Promise<ActiveAuthority> {
    const [trustDomain, keys] = await Promise.all([
      this.deps.trustDomains.get(trustDomainName),
      this.deps.keys.active(trustDomainName),
    ]);
    if (!trustDomain) throw new CairnError('trust_domain_not_found', `trust domain ${trustDomainName} does not exist`);
    const x509Key = keys.find((k) => k.kind === 'x509');
    const jwtKey = keys.find((k) => k.kind === 'jwt');
    if (!x509Key || !jwtKey) throw new CairnError('authority_expired', `trust domain ${trustDomainName} has no active signing keys`);
    const now = this.deps.clock.now();
    if (x509Key.notAfter <= now || jwtKey.notAfter <= now) {
      throw new CairnError('authority_expired', `the signing keys of ${trustDomainName} have expired; rotation has not run`);
    }
    return { trustDomain, x509: this.x509SignerFor(x509Key), jwt: this.jwtSignerFor(jwtKey) };
  }

  private x509SignerFor(key: AuthorityKey): X509Signer {
    let signer = this.x509Signers.get(key.id);
    if (!signer) {
      signer = x509SignerOf(key, this.deps.sealer);
      this.x509Signers.set(key.id, signer);
    }
    return signer;
  }

  private jwtSignerFor(key: AuthorityKey): JwtSigner {
    let signer = this.jwtSigners.get(key.id);
    if (!signer) {
      signer = jwtSignerOf(key, this.deps.sealer);
      this.jwtSigners.set(key.id, signer);
    }
    return signer;
  }

  /** Every key a verifier must know now (prepared, active, and retired-but-unexpired). */
  async published(trustDomainName: string): Promise<{ trustDomain: TrustDomain; keys: AuthorityKey[] }> {
    const now = this.deps.clock.now();
    const [trustDomain, keys] = await Promise.all([
      this.deps.trustDomains.get(trustDomainName),
      this.deps.keys.published(trustDomainName, now),
    ]);
    if (!trustDomain) throw new CairnError('trust_domain_not_found', `trust domain ${trustDomainName} does not exist`);
    return { trustDomain, keys };
  }

  async x509Authorities(trustDomainName: string): Promise<Buffer[]> {
    const keys = await this.deps.keys.published(trustDomainName, this.deps.clock.now());
    return keys.filter((k) => k.kind === 'x509' && k.certificate).map((k) => k.certificate!);
  }

  /** Forgets cached key material for a trust domain's keys (after deletion). */
  forget(keyIds: readonly string[]): void {
    for (const id of keyIds) {
      this.x509Signers.delete(id);
      this.jwtSigners.delete(id);
    }
  }

  /**
   * SPIRE's schedule: at half of the active key's life a successor is prepared and published; at
   * one sixth of life remaining it becomes active and the old key stays published until it
   * expires; expired keys are dropped. Each change bumps the bundle's spiffe_sequence.
   * Returns whether anything changed.
   */
  async rotate(trustDomainName: string): Promise<boolean> {
    const { db, keys, trustDomains, clock } = this.deps;
    // Generating keys is slow; do it before taking row locks, and only when a successor is due.
    const now = clock.now();
    const current = await keys.all(trustDomainName);
    const td = await trustDomains.get(trustDomainName);
    if (!td) return false;
    const fresh: AuthorityKey[] = [];
    for (const kind of ['x509', 'jwt'] as const) {
      const active = current.find((k) => k.kind === kind && k.status === 'active');
      const prepared = current.find((k) => k.kind === kind && k.status === 'prepared');
      if (!active || prepared) continue;
      if (now >= midpoint(active)) {
        fresh.push(await this.generateKey({ trustDomain: td.name, kind, keyType: td.caKeyType, ttlSeconds: td.caTtlSeconds, status: 'prepared' }));
      }
    }
    const changed = await db.transaction(async (tx) => {
      const locked = await trustDomains.lock(tx, trustDomainName);
      if (!locked) return false;
      const latest = await keys.all(trustDomainName, tx);
      let dirty = false;
      const toInsert = fresh.filter((f) => !latest.some((k) => k.kind === f.kind && k.status === 'prepared'));
      if (toInsert.length > 0) {
        await keys.insert(tx, toInsert);
        dirty = true;
      }
      dirty = (await this.activateDue(tx, [...latest, ...toInsert], now)) || dirty;
      dirty = (await keys.deleteExpired(tx, trustDomainName, now)) > 0 || dirty;
      if (dirty) await trustDomains.bumpBundleSequence(tx, trustDomainName, now);
      return dirty;
    });
    if (changed) this.deps.logger.info({ event: 'authority.rotated', trustDomain: trustDomainName }, 'authority keys rotated');
    return changed;
  }

  private async activateDue(tx: Queryable, all: readonly AuthorityKey[], now: Date): Promise<boolean> {
    let dirty = false;
    for (const kind of ['x509', 'jwt'] as const) {
      const active = all.find((k) => k.kind === kind && k.status === 'active');
      const prepared = all.find((k) => k.kind === kind && k.status === 'prepared');
      if (!prepared) continue;
      if (!active || now >= activationPoint(active)) {
        if (active) await this.deps.keys.setStatus(tx, active.id, 'retired');
        await this.deps.keys.setStatus(tx, prepared.id, 'active');
        dirty = true;
      }
    }
    return dirty;
  }
}

const lifetime = (k: AuthorityKey): number => k.notAfter.getTime() - k.notBefore.getTime();
const midpoint = (k: AuthorityKey): Date => new Date(k.notBefore.getTime() + lifetime(k) / 2);
const activationPoint = (k: AuthorityKey): Date => new Date(k.notAfter.getTime() - lifetime(k) / 6);
