import type { Clock } from '../../lib/clock.js';
import { addSeconds } from '../../lib/clock.js';
import { CairnError, isCairnError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { randomAlphanumeric, randomSerial, type Random } from '../../lib/random.js';
import type { Database, Queryable } from '../db/database.js';
import type { TrustDomainStore } from '../trust-domains/store.js';
import type { TrustDomain } from '../trust-domains/model.js';
import { createCaCertificate } from './ca-certificate.js';
import { generateKeyPairOf, profileOf, type KeyType } from './key-types.js';
import type { Sealer } from './sealing.js';
import { jwtSignerOf, sealingContext, x509SignerOf, type JwtSigner, type X509Signer } from './signers.js';
import { activationDue, preparationPoint } from './schedule.js';
import { AUTHORITY_KINDS, type AuthorityKey, type AuthorityKeyStore, type AuthorityKind } from './store.js';
import type { AuditAppender } from '../audit/port.js';
import type { JsonValue } from '../../lib/canonical-json.js';
import { x509AnchorsOf } from '../upstream/published.js';
import type { UpstreamIssuer, UpstreamService } from '../upstream/service.js';

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
  /** Automatic rotations are recorded in the audit log, in their transaction. */
  readonly audit?: AuditAppender;
  /** Trust domains whose CA is an intermediate under an upstream authority (absent: all self-signed). */
  readonly upstream?: UpstreamService;
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
  /**
   * X.509: the upstream that signs the CA certificate; null: self-signed; absent: the trust domain's
   * stored upstream, if any (refused for an offline one: its certificates are imported).
   */
  readonly upstream?: UpstreamIssuer | null;
  /** X.509: generate the key only; its certificate is signed offline and imported (a CSR is made from it). */
  readonly awaitCertificate?: boolean;
}

/**
 * The per-trust-domain authority: generates and seals keys, hands out signers for the active keys
 * (decrypted once per key id and cached on this instance), publishes what verifiers need, and
 * rotates keys as they age. The operator's levers (prepare, activate, taint, revoke) are in lifecycle.ts.
 */
export class AuthorityService {
  private readonly x509Signers = new Map<string, X509Signer>();
  private readonly jwtSigners = new Map<string, JwtSigner>();
  /** Per JWT key: the expiry bound written to the store (or being written). */
  private readonly jwtRecorded = new Map<string, { until: number; written: Promise<void> }>();

  constructor(private readonly deps: AuthorityDeps) {}

  async generateKey(req: NewKeyRequest): Promise<AuthorityKey> {
    const { clock, random, sealer } = this.deps;
    const now = clock.now();
    const notBefore = addSeconds(now, -NOT_BEFORE_CUSHION_SECONDS);
    // A trust domain created before the caps may hold a longer TTL: its next keys get the cap.
    let notAfter = addSeconds(now, Math.min(req.ttlSeconds, profileOf(req.keyType).maxCaTtlSeconds));
    const upstream = req.kind === 'x509' && !req.awaitCertificate ? await this.upstreamFor(req) : null;
    if (upstream) notAfter = this.deps.upstream!.fitNotAfter(req.trustDomain, upstream, notAfter, this.deps.logger);
    const { privateKey, publicKey } = await generateKeyPairOf(req.keyType);
    const id = randomAlphanumeric(random, 32);
    const certificate =
      req.kind === 'x509' && !req.awaitCertificate
        ? await createCaCertificate({
            trustDomain: req.trustDomain, keyType: req.keyType, privateKey, publicKey, serial: randomSerial(random), notBefore, notAfter,
            nameConstraints: this.deps.caNameConstraints ?? true, ...(upstream ? { issuer: upstream.issuer } : {}),
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
      activatedAt: req.status === 'active' ? now : null,
      upstreamChain: upstream ? Buffer.concat(upstream.chain) : null,
    };
  }

  private async upstreamFor(req: NewKeyRequest): Promise<UpstreamIssuer | null> {
    if (req.upstream !== undefined) return req.upstream;
    return (await this.deps.upstream?.issuerForNewCa(req.trustDomain)) ?? null;
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

  /**
   * Every key a verifier must know now: prepared, active, old and tainted, not expired (revoked
   * keys are not in authority_keys at all). A key that expired since the last rotation pass is
   * pruned here first, with a sequence bump, so no reader ever sees the key set shrink under an
   * unchanged spiffe_sequence; keys and sequence come from one snapshot.
   */
  async published(trustDomainName: string): Promise<{ trustDomain: TrustDomain; keys: AuthorityKey[] }> {
    const now = this.deps.clock.now();
    const read = async () => {
      const [trustDomain, snapshot] = await Promise.all([this.deps.trustDomains.get(trustDomainName), this.deps.keys.snapshot(trustDomainName)]);
      if (!trustDomain || !snapshot) throw new CairnError('trust_domain_not_found', `trust domain ${trustDomainName} does not exist`);
      return { trustDomain: { ...trustDomain, bundleSequence: snapshot.sequence }, keys: snapshot.keys };
    };
    let current = await read();
    if (current.keys.some((k) => k.notAfter <= now)) {
      await this.deps.db.transaction(async (tx) => {
        if (!(await this.deps.trustDomains.lock(tx, trustDomainName))) return;
        if ((await this.deps.keys.deleteExpired(tx, trustDomainName, now)) > 0) await this.deps.trustDomains.bumpBundleSequence(tx, trustDomainName, now);
      });
      current = await read();
    }
    return { trustDomain: current.trustDomain, keys: current.keys.filter((k) => k.notAfter > now) };
  }

  /**
   * The trust domain's published CA certificates; none for a trust domain this CA does not host, so
   * a client certificate claiming one fails verification like any other (401), and nobody learns
   * from the answer which trust domains are hosted.
   */
  async x509Authorities(trustDomainName: string): Promise<Buffer[]> {
    try {
      const { keys } = await this.published(trustDomainName);
      return keys.filter((k) => k.kind === 'x509' && k.certificate).map((k) => k.certificate!);
    } catch (err) {
      if (isCairnError(err, 'trust_domain_not_found')) return [];
      throw err;
    }
  }

  /**
   * The trust domain's X.509 trust anchors as verifiers get them (the bundle): its self-signed CAs,
   * and for CAs under an upstream the upstream roots instead (see x509AnchorsOf).
   */
  async x509Bundle(trustDomainName: string): Promise<Buffer[]> {
    const { keys } = await this.published(trustDomainName);
    return x509AnchorsOf(keys);
  }

  /** Forgets cached key material for keys that will never sign again (deleted, revoked). */
  forget(keyIds: readonly string[]): void {
    for (const id of keyIds) {
      this.x509Signers.delete(id);
      this.jwtSigners.delete(id);
      this.jwtRecorded.delete(id);
    }
  }

  /**
   * Records that a JWT-SVID signed by `kid` expires at `expiresAt`, before the token leaves, so that
   * revoking the key can tell whether any token it signed may still be valid. The stored bound is
   * rounded up to the minute and only ever raised: about one write a minute per key and replica.
   */
  async recordJwtExpiry(kid: string, expiresAt: Date): Promise<void> {
    const known = this.jwtRecorded.get(kid);
    if (known && known.until >= expiresAt.getTime()) return known.written;
    const until = Math.ceil(expiresAt.getTime() / 60_000) * 60_000;
    const written = this.deps.keys.extendSignedUntil(kid, new Date(until));
    const entry = { until, written };
    this.jwtRecorded.set(kid, entry);
    try {
      await written;
    } catch (err) {
      if (this.jwtRecorded.get(kid) === entry) this.jwtRecorded.delete(kid);
      throw err;
    }
  }

  /**
   * Automatic rotation (schedule.ts): a successor is generated and published when due, activated when
   * due and published long enough, and expired keys are dropped; each change bumps the bundle's
   * spiffe_sequence. A kind with no usable key at all (the CA was down past its expiry) gets one
   * at once. Returns whether anything changed.
   */
  async rotate(trustDomainName: string): Promise<boolean> {
    const { db, keys, trustDomains, clock } = this.deps;
    // Generating keys is slow; do it before taking row locks, and only when a successor is due.
    const now = clock.now();
    const current = await keys.all(trustDomainName);
    const td = await trustDomains.get(trustDomainName);
    if (!td) return false;
    const fresh: AuthorityKey[] = [];
    const offline = (await this.deps.upstream?.get(trustDomainName))?.mode === 'offline';
    if (offline) this.deps.upstream!.noteSuccessorDue(td, current, now, this.deps.logger);
    for (const kind of AUTHORITY_KINDS) {
      const active = current.find((k) => k.kind === kind && k.status === 'active' && k.notAfter > now);
      if (current.some((k) => k.kind === kind && k.status === 'prepared' && k.notAfter > now)) continue;
      // An offline upstream signs the next CA: the operator is told when (noteOfflineSuccessor).
      if (kind === 'x509' && offline) continue;
      if (!active || now >= preparationPoint(active, td.authorityPrepublishSeconds)) {
        fresh.push(await this.generateKey({ trustDomain: td.name, kind, keyType: kind === 'jwt' ? td.jwtKeyType : td.caKeyType, ttlSeconds: td.caTtlSeconds, status: 'prepared' }));
      }
    }
    const changes: Record<string, unknown>[] = [];
    const changed = await db.transaction(async (tx) => {
      const locked = await trustDomains.lock(tx, trustDomainName);
      if (!locked) return false;
      let dirty = (await keys.deleteExpired(tx, trustDomainName, now)) > 0;
      const latest = await keys.all(trustDomainName, tx);
      const toInsert = fresh.filter((f) => !latest.some((k) => k.kind === f.kind && k.status === 'prepared'));
      if (toInsert.length > 0) {
        await keys.insert(tx, toInsert);
        for (const k of toInsert) changes.push({ event: 'authority.prepared', kind: k.kind, authorityId: k.id, keyType: k.keyType, notAfter: k.notAfter.toISOString() });
        dirty = true;
      }
      dirty = (await this.activateDue(tx, locked, [...latest, ...toInsert], now, changes)) || dirty;
      if (dirty) await trustDomains.bumpBundleSequence(tx, trustDomainName, now);
      if (changes.length > 0) {
        await this.deps.audit?.append(tx, changes.map(({ event, ...subject }) => ({ event: String(event), actor: 'cairn', subject: { trustDomain: trustDomainName, ...(subject as Record<string, JsonValue | undefined>) } })));
      }
      return dirty;
    });
    for (const c of changes) {
      const fields = { ...c, trustDomain: trustDomainName, actor: 'rotation' };
      if (c.event === 'authority.activated' && c.early) this.deps.logger.warn(fields, 'authority activated before its pre-publication window ended: the active key was expiring');
      else this.deps.logger.info(fields, c.event === 'authority.prepared' ? 'authority prepared and published' : 'authority activated');
    }
    if (changed) this.deps.logger.info({ event: 'authority.rotated', trustDomain: trustDomainName }, 'authority keys rotated');
    return changed;
  }

  private async activateDue(tx: Queryable, td: TrustDomain, all: readonly AuthorityKey[], now: Date, changes: Record<string, unknown>[]): Promise<boolean> {
    let dirty = false;
    for (const kind of AUTHORITY_KINDS) {
      const active = all.find((k) => k.kind === kind && k.status === 'active' && k.notAfter > now);
      // A key waiting for its upstream-signed certificate cannot sign yet.
      const prepared = all.find((k) => k.kind === kind && k.status === 'prepared' && k.notAfter > now && (kind !== 'x509' || k.certificate));
      if (!prepared) continue;
      const decision = activationDue(active, prepared, td.authorityPrepublishSeconds, now);
      if (decision === 'wait') continue;
      const previous = all.find((k) => k.kind === kind && k.status === 'active');
      if (previous) await this.deps.keys.deactivate(tx, previous.id, now);
      await this.deps.keys.activate(tx, prepared.id, now);
      changes.push({
        event: 'authority.activated', kind, authorityId: prepared.id, previousId: previous?.id, early: decision === 'activate_early',
        publishedSeconds: Math.floor((now.getTime() - prepared.createdAt.getTime()) / 1000),
      });
      dirty = true;
    }
    return dirty;
  }
}
