import type { UpstreamService } from '../upstream/service.js';
import type { Clock } from '../../lib/clock.js';
import { CairnError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { decodePageToken, pageSizeOf, type Page } from '../../lib/paging.js';
import { parseTrustDomain } from '../../spiffe/id.js';
import { SpiffeError } from '../../spiffe/errors.js';
import type { Database, Queryable } from '../db/database.js';
import type { AuthorityService } from '../authority/service.js';
import type { AuthorityKeyStore } from '../authority/store.js';
import { isKeyType, profileOf, type KeyType } from '../authority/key-types.js';
import { checkTtl } from '../issuance/policy.js';
import { TRUST_DOMAIN_DEFAULTS, TTL_LIMITS, type TrustDomain } from './model.js';
import type { TrustDomainPatch, TrustDomainStore } from './store.js';
import { bundleEndpointOf, type BundleEndpointInput } from '../bundle-endpoint/config.js';
import type { ChangeObserver } from '../admin-auth/record.js';
import type { WebCertDir } from '../bundle-endpoint/web-files.js';
import type { BundleEndpoint } from './model.js';

export interface CreateTrustDomainInput extends BundleEndpointInput {
  readonly name: string;
  readonly caKeyType?: string;
  readonly jwtKeyType?: string;
  readonly caTtlSeconds?: number;
  readonly authorityPrepublishSeconds?: number;
  readonly x509SvidTtlSeconds?: number;
  readonly jwtSvidTtlSeconds?: number;
  readonly jwtIssuer?: string | null;
  readonly bundleRefreshHintSeconds?: number;
  /** A disk upstream authority, as PEM content (the CLI reads the files; the CA opens no path for an admin). */
  readonly upstreamCaCertificate?: string;
  readonly upstreamCaKey?: string;
}

export interface UpdateTrustDomainInput extends Omit<TrustDomainPatch, 'jwtKeyType' | 'bundleEndpoint'>, BundleEndpointInput {
  readonly jwtKeyType?: string;
  /** A new disk upstream (a renewed enterprise CA): it signs the trust domain's next CA certificate. */
  readonly upstreamCaCertificate?: string;
  readonly upstreamCaKey?: string;
}

/** Something that knows whether a trust domain still has registration entries. */
/** Registration entries, or identity templates, of a trust domain: what deleting it would take along. */
export interface EntryCounter {
  countForTrustDomain(tx: Queryable, trustDomain: string): Promise<number>;
}

export interface TrustDomainDeps {
  readonly db: Database;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly store: TrustDomainStore;
  readonly keys: AuthorityKeyStore;
  readonly authority: AuthorityService;
  readonly entries: EntryCounter;
  readonly templates: EntryCounter;
  /** This host's name: the bundle endpoint's URL when it listens on every address and none is set. */
  readonly hostName: string;
  /** Checks and seals a disk upstream authority given at creation. */
  readonly upstream?: UpstreamService;
  /** Reads and checks an https_web endpoint's files (ca/bundle-endpoint/web-files.ts): refused when the operator allows none. */
  readonly webCerts: Pick<WebCertDir, 'loadPair'>;
}

export function validateTrustDomainName(name: string): string {
  try {
    return parseTrustDomain(name);
  } catch (err) {
    if (err instanceof SpiffeError) throw new CairnError('invalid_trust_domain', err.message, { cause: err });
    throw err;
  }
}

/** OIDC issuers are compared byte for byte with `iss`, so we validate but never rewrite them. */
export function validateIssuer(issuer: string | null | undefined): string | null {
  if (issuer === undefined || issuer === null || issuer === '') return null;
  let url: URL;
  try {
    url = new URL(issuer);
  } catch {
    throw new CairnError('invalid_request', 'jwtIssuer must be an absolute http(s) URL');
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.username || url.password || url.search || url.hash || issuer.length > 512) {
    throw new CairnError('invalid_request', 'jwtIssuer must be an http(s) URL without credentials, query or fragment');
  }
  return issuer;
}

/** A CA lives at most as long as its key type allows (see KeyTypeProfile.maxCaTtlSeconds). */
function checkCaTtlCap(caTtlSeconds: number, keyType: KeyType): void {
  const max = profileOf(keyType).maxCaTtlSeconds;
  if (caTtlSeconds > max) throw new CairnError('invalid_ttl', `caTtlSeconds must be at most ${max} seconds (${max / 86400} days) for ${keyType} keys`);
}

function checkTtls(t: { caTtlSeconds: number; x509SvidTtlSeconds: number; jwtSvidTtlSeconds: number; authorityPrepublishSeconds: number }): void {
  checkTtl(t.caTtlSeconds, TTL_LIMITS.caTtlSeconds, 'caTtlSeconds');
  checkTtl(t.x509SvidTtlSeconds, TTL_LIMITS.x509SvidTtlSeconds, 'x509SvidTtlSeconds');
  checkTtl(t.jwtSvidTtlSeconds, TTL_LIMITS.jwtSvidTtlSeconds, 'jwtSvidTtlSeconds');
  if (t.x509SvidTtlSeconds > t.caTtlSeconds || t.jwtSvidTtlSeconds > t.caTtlSeconds) {
    throw new CairnError('invalid_ttl', 'SVID TTLs cannot exceed the CA TTL');
  }
  // A successor is prepared at half life at the latest and activated at one sixth of life left; a
  // window longer than half the CA TTL could not be honoured without leaving the trust domain with
  // no valid signing key, so it is refused rather than silently shortened.
  if (!Number.isInteger(t.authorityPrepublishSeconds) || t.authorityPrepublishSeconds < 0 || t.authorityPrepublishSeconds > t.caTtlSeconds / 2) {
    throw new CairnError(
      'invalid_ttl',
      `authorityPrepublishSeconds must be between 0 and half the CA TTL (${Math.floor(t.caTtlSeconds / 2)} seconds for a CA TTL of ${t.caTtlSeconds}); raise the CA TTL for a longer window`,
    );
  }
}

function checkRefreshHint(seconds: number | undefined): void {
  if (seconds !== undefined) checkTtl(seconds, TTL_LIMITS.bundleRefreshHintSeconds, 'bundleRefreshHintSeconds');
}

function keyTypeOf(value: string, field: string): KeyType {
  if (!isKeyType(value)) throw new CairnError('unsupported_key_type', `${field} must be ec-p256, ec-p384 or rsa-2048`);
  return value;
}

export class TrustDomainService {
  constructor(private readonly deps: TrustDomainDeps) {}

  async create(input: CreateTrustDomainInput, actor: string): Promise<TrustDomain> {
    const name = validateTrustDomainName(input.name);
    const caKeyType = keyTypeOf(input.caKeyType ?? TRUST_DOMAIN_DEFAULTS.caKeyType, 'caKeyType');
    // Independent of the CA key: RS256 is what go-oidc and older cloud federation accept by default.
    const jwtKeyType = keyTypeOf(input.jwtKeyType ?? caKeyType, 'jwtKeyType');
    const caTtlSeconds = input.caTtlSeconds ?? TRUST_DOMAIN_DEFAULTS.caTtlSeconds;
    const ttls = {
      caTtlSeconds,
      x509SvidTtlSeconds: input.x509SvidTtlSeconds ?? TRUST_DOMAIN_DEFAULTS.x509SvidTtlSeconds,
      jwtSvidTtlSeconds: input.jwtSvidTtlSeconds ?? TRUST_DOMAIN_DEFAULTS.jwtSvidTtlSeconds,
      authorityPrepublishSeconds: input.authorityPrepublishSeconds ?? Math.min(TRUST_DOMAIN_DEFAULTS.authorityPrepublishSeconds, Math.floor(caTtlSeconds / 2)),
    };
    checkTtls(ttls);
    checkCaTtlCap(ttls.caTtlSeconds, caKeyType);
    checkRefreshHint(input.bundleRefreshHintSeconds);
    const jwtIssuer = validateIssuer(input.jwtIssuer);
    const bundleEndpoint = bundleEndpointOf(input, name, undefined, this.deps.hostName) ?? null;
    const upstream = this.diskUpstreamOf(input, name, Math.min(ttls.caTtlSeconds, profileOf(caKeyType).maxCaTtlSeconds));
    this.checkWebFiles(bundleEndpoint);
    if (await this.deps.store.get(name)) throw new CairnError('trust_domain_exists', `trust domain ${name} already exists`);
    const keys = await Promise.all(
      (['x509', 'jwt'] as const).map((kind) =>
        this.deps.authority.generateKey({
          trustDomain: name, kind, keyType: kind === 'jwt' ? jwtKeyType : caKeyType, ttlSeconds: ttls.caTtlSeconds, status: 'active', ...(kind === 'x509' ? { upstream: upstream?.upstream ?? null } : {}),
        }),
      ),
    );
    const now = this.deps.clock.now();
    const td: TrustDomain = {
      name,
      caKeyType,
      jwtKeyType,
      ...ttls,
      jwtIssuer,
      bundleSequence: 1,
      bundleRefreshHintSeconds: input.bundleRefreshHintSeconds ?? TRUST_DOMAIN_DEFAULTS.bundleRefreshHintSeconds,
      bundleEndpoint,
      createdAt: now,
      updatedAt: now,
    };
    await this.deps.db.transaction(async (tx) => {
      await this.deps.store.insert(tx, td);
      await this.deps.keys.insert(tx, keys);
      if (upstream) await this.deps.upstream!.put(tx, upstream.record);
    });
    this.deps.logger.info({ event: 'trust_domain.created', trustDomain: name, caKeyType, jwtKeyType, upstream: upstream ? 'disk' : undefined, actor }, 'trust domain created');
    return td;
  }

  /** Both halves of a disk upstream or neither; checked before anything is generated. */
  private diskUpstreamOf(input: { readonly upstreamCaCertificate?: string; readonly upstreamCaKey?: string }, name: string, caTtlSeconds: number): ReturnType<UpstreamService['checkDisk']> | undefined {
    const { upstreamCaCertificate: certificatePem, upstreamCaKey: keyPem } = input;
    if (certificatePem === undefined && keyPem === undefined) return undefined;
    if (certificatePem === undefined || keyPem === undefined) {
      const missing = certificatePem === undefined ? 'upstreamCaCertificate' : 'upstreamCaKey';
      throw new CairnError('invalid_request', `${missing} is required with ${missing === 'upstreamCaKey' ? 'upstreamCaCertificate' : 'upstreamCaKey'}: a disk upstream authority needs its certificate and its key`, { details: { field: missing } });
    }
    if (!this.deps.upstream) throw new TypeError('TrustDomainService needs the upstream service for a disk upstream');
    return this.deps.upstream.checkDisk(name, { certificatePem, keyPem }, caTtlSeconds);
  }

  /**
   * An https_web endpoint is stored only when this replica can serve it now: files in the operator's
   * directory, a certificate and its key. Replicas read them again themselves (and on every change).
   */
  private checkWebFiles(endpoint: BundleEndpoint | null | undefined): void {
    if (endpoint?.profile === 'https_web') this.deps.webCerts.loadPair(endpoint.certFile, endpoint.keyFile);
  }

  async get(name: string): Promise<TrustDomain> {
    const td = await this.deps.store.get(validateTrustDomainName(name));
    if (!td) throw new CairnError('trust_domain_not_found', `trust domain ${name} does not exist`);
    return td;
  }

  /** `names`: only those (a scoped admin credential's list). */
  list(pageSize: number | undefined, pageToken: string | undefined, names?: readonly string[]): Promise<Page<TrustDomain>> {
    const after = decodePageToken(pageToken, 1);
    return this.deps.store.list(pageSizeOf(pageSize), after?.[0] as string | undefined, names);
  }

  /** A new jwtKeyType applies to the next JWT key (rotation, or `authority prepare --kind jwt`). */
  async update(name: string, patch: UpdateTrustDomainInput, actor: string, observe?: ChangeObserver<TrustDomain>): Promise<TrustDomain> {
    const current = await this.get(name);
    checkTtls({
      caTtlSeconds: patch.caTtlSeconds ?? current.caTtlSeconds,
      x509SvidTtlSeconds: patch.x509SvidTtlSeconds ?? current.x509SvidTtlSeconds,
      jwtSvidTtlSeconds: patch.jwtSvidTtlSeconds ?? current.jwtSvidTtlSeconds,
      authorityPrepublishSeconds: patch.authorityPrepublishSeconds ?? current.authorityPrepublishSeconds,
    });
    // Only a new value is held to the cap: one stored before the caps is capped at key generation.
    if (patch.caTtlSeconds !== undefined) checkCaTtlCap(patch.caTtlSeconds, current.caKeyType);
    checkRefreshHint(patch.bundleRefreshHintSeconds);
    const jwtIssuer = patch.jwtIssuer === undefined ? undefined : validateIssuer(patch.jwtIssuer);
    const jwtKeyType = patch.jwtKeyType === undefined ? undefined : keyTypeOf(patch.jwtKeyType, 'jwtKeyType');
    const bundleEndpoint = bundleEndpointOf(patch, current.name, current.bundleEndpoint, this.deps.hostName);
    const upstream = this.diskUpstreamOf(patch, current.name, Math.min(patch.caTtlSeconds ?? current.caTtlSeconds, profileOf(current.caKeyType).maxCaTtlSeconds));
    this.checkWebFiles(bundleEndpoint);
    const { bundleEndpointListen: _l, bundleEndpointProfile: _p, bundleEndpointSpiffeId: _s, bundleEndpointUrl: _u, upstreamCaCertificate: _c, upstreamCaKey: _k, bundleEndpointCert: _bc, bundleEndpointKey: _bk, ...settings } = patch;
    const updated = await this.deps.store.update(current.name, { ...settings, jwtIssuer, jwtKeyType, bundleEndpoint }, this.deps.clock.now());
    if (!updated) throw new CairnError('trust_domain_not_found', `trust domain ${name} does not exist`);
    // Replaces any upstream (disk or offline): the next CA certificate, at rotation or prepare, is signed by it.
    if (upstream) await this.deps.db.transaction((tx) => this.deps.upstream!.put(tx, upstream.record));
    observe?.(current, updated);
    this.deps.logger.info({ event: 'trust_domain.updated', trustDomain: current.name, changes: Object.keys(patch), actor }, 'trust domain updated');
    return updated;
  }

  /** Refuses while registration entries or identity templates exist, unless forced (then they go with it). */
  async delete(name: string, force: boolean, actor: string): Promise<void> {
    const td = validateTrustDomainName(name);
    const keyIds = (await this.deps.keys.all(td)).map((k) => k.id);
    await this.deps.db.transaction(async (tx) => {
      if (!(await this.deps.store.lock(tx, td))) throw new CairnError('trust_domain_not_found', `trust domain ${td} does not exist`);
      const entries = await this.deps.entries.countForTrustDomain(tx, td);
      const templates = await this.deps.templates.countForTrustDomain(tx, td);
      if ((entries > 0 || templates > 0) && !force) {
        const what = [entries > 0 ? `${entries} registration entries` : '', templates > 0 ? `${templates} identity templates` : ''].filter(Boolean).join(' and ');
        throw new CairnError('trust_domain_in_use', `trust domain ${td} still has ${what}; delete them or pass force`, {
          details: { entries, templates },
        });
      }
      await this.deps.store.delete(tx, td);
    });
    this.deps.authority.forget(keyIds);
    this.deps.logger.info({ event: 'trust_domain.deleted', trustDomain: td, force, actor }, 'trust domain deleted');
  }
}
