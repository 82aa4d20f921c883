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
import type { ChangeObserver } from '../admin-auth/record.js';

export interface CreateTrustDomainInput {
  readonly name: string;
  readonly caKeyType?: string;
  readonly caTtlSeconds?: number;
  readonly x509SvidTtlSeconds?: number;
  readonly jwtSvidTtlSeconds?: number;
  readonly jwtIssuer?: string | null;
}

/** Something that knows whether a trust domain still has registration entries. */
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

function checkTtls(t: { caTtlSeconds: number; x509SvidTtlSeconds: number; jwtSvidTtlSeconds: number }): void {
  checkTtl(t.caTtlSeconds, TTL_LIMITS.caTtlSeconds, 'caTtlSeconds');
  checkTtl(t.x509SvidTtlSeconds, TTL_LIMITS.x509SvidTtlSeconds, 'x509SvidTtlSeconds');
  checkTtl(t.jwtSvidTtlSeconds, TTL_LIMITS.jwtSvidTtlSeconds, 'jwtSvidTtlSeconds');
  if (t.x509SvidTtlSeconds > t.caTtlSeconds || t.jwtSvidTtlSeconds > t.caTtlSeconds) {
    throw new CairnError('invalid_ttl', 'SVID TTLs cannot exceed the CA TTL');
  }
}

export class TrustDomainService {
  constructor(private readonly deps: TrustDomainDeps) {}

  async create(input: CreateTrustDomainInput, actor: string): Promise<TrustDomain> {
    const name = validateTrustDomainName(input.name);
    const caKeyType = input.caKeyType ?? TRUST_DOMAIN_DEFAULTS.caKeyType;
    if (!isKeyType(caKeyType)) throw new CairnError('unsupported_key_type', 'caKeyType must be ec-p256, ec-p384 or rsa-2048');
    const ttls = {
      caTtlSeconds: input.caTtlSeconds ?? TRUST_DOMAIN_DEFAULTS.caTtlSeconds,
      x509SvidTtlSeconds: input.x509SvidTtlSeconds ?? TRUST_DOMAIN_DEFAULTS.x509SvidTtlSeconds,
      jwtSvidTtlSeconds: input.jwtSvidTtlSeconds ?? TRUST_DOMAIN_DEFAULTS.jwtSvidTtlSeconds,
    };
    checkTtls(ttls);
    checkCaTtlCap(ttls.caTtlSeconds, caKeyType);
    const jwtIssuer = validateIssuer(input.jwtIssuer);
    if (await this.deps.store.get(name)) throw new CairnError('trust_domain_exists', `trust domain ${name} already exists`);
    const keys = await Promise.all(
      (['x509', 'jwt'] as const).map((kind) =>
        this.deps.authority.generateKey({ trustDomain: name, kind, keyType: caKeyType as KeyType, ttlSeconds: ttls.caTtlSeconds, status: 'active' }),
      ),
    );
    const now = this.deps.clock.now();
    const td: TrustDomain = {
      name,
      caKeyType,
      ...ttls,
      jwtIssuer,
      bundleSequence: 1,
      bundleRefreshHintSeconds: TRUST_DOMAIN_DEFAULTS.bundleRefreshHintSeconds,
      createdAt: now,
      updatedAt: now,
    };
    await this.deps.db.transaction(async (tx) => {
      await this.deps.store.insert(tx, td);
      await this.deps.keys.insert(tx, keys);
    });
    this.deps.logger.info({ event: 'trust_domain.created', trustDomain: name, caKeyType, actor }, 'trust domain created');
    return td;
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

  async update(name: string, patch: TrustDomainPatch, actor: string, observe?: ChangeObserver<TrustDomain>): Promise<TrustDomain> {
    const current = await this.get(name);
    checkTtls({
      caTtlSeconds: patch.caTtlSeconds ?? current.caTtlSeconds,
      x509SvidTtlSeconds: patch.x509SvidTtlSeconds ?? current.x509SvidTtlSeconds,
      jwtSvidTtlSeconds: patch.jwtSvidTtlSeconds ?? current.jwtSvidTtlSeconds,
    });
    // Only a new value is held to the cap: one stored before the caps is capped at key generation.
    if (patch.caTtlSeconds !== undefined) checkCaTtlCap(patch.caTtlSeconds, current.caKeyType);
    const jwtIssuer = patch.jwtIssuer === undefined ? undefined : validateIssuer(patch.jwtIssuer);
    const updated = await this.deps.store.update(current.name, { ...patch, jwtIssuer }, this.deps.clock.now());
    if (!updated) throw new CairnError('trust_domain_not_found', `trust domain ${name} does not exist`);
    observe?.(current, updated);
    this.deps.logger.info({ event: 'trust_domain.updated', trustDomain: current.name, changes: Object.keys(patch), actor }, 'trust domain updated');
    return updated;
  }

  /** Refuses while registration entries exist, unless forced (then they go with it). */
  async delete(name: string, force: boolean, actor: string): Promise<void> {
    const td = validateTrustDomainName(name);
    const keyIds = (await this.deps.keys.all(td)).map((k) => k.id);
    await this.deps.db.transaction(async (tx) => {
      if (!(await this.deps.store.lock(tx, td))) throw new CairnError('trust_domain_not_found', `trust domain ${td} does not exist`);
      const entries = await this.deps.entries.countForTrustDomain(tx, td);
      if (entries > 0 && !force) {
        throw new CairnError('trust_domain_in_use', `trust domain ${td} still has ${entries} registration entries; delete them or pass force`, {
          details: { entries },
        });
      }
      await this.deps.store.delete(tx, td);
    });
    this.deps.authority.forget(keyIds);
    this.deps.logger.info({ event: 'trust_domain.deleted', trustDomain: td, force, actor }, 'trust domain deleted');
  }
}
