import { createHash } from 'node:crypto';
import type { Clock } from '../../lib/clock.js';
import { addSeconds } from '../../lib/clock.js';
import { CairnError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { decodePageToken, pageSizeOf, type Page } from '../../lib/paging.js';
import { randomAlphanumeric, type Random } from '../../lib/random.js';
import { checkTtl } from '../issuance/policy.js';
import { validateTrustDomainName } from '../trust-domains/service.js';
import {
  BOOTSTRAP_NAME, CONFIGURED_NAME, isReservedAdminName, isRole, LEGACY_CONFIGURED_PREFIX, type AdminCredential, type AdminPrincipal,
} from './model.js';
import type { AdminTokenStore } from './store.js';

export const ADMIN_TOKEN_PREFIX = 'cairn-admin.';

/** `last used` is written at most this often per credential: a read-mostly API should not write on every request. */
export const LAST_USED_RESOLUTION_SECONDS = 60;

export const ADMIN_TTL = { min: 60, max: 315_360_000 } as const;
const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const MAX_SCOPE = 32;

export interface AdminAuthDeps {
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  readonly store: AdminTokenStore;
}

export interface NewAdminInput {
  readonly name: string;
  readonly role: string;
  /** Absent: every trust domain. */
  readonly trustDomains?: readonly string[] | undefined;
  readonly ttlSeconds?: number | undefined;
}

/** A failed authentication: what the client is told, and (for the record) which credential it was, when known. */
export type BearerResult =
  | { readonly ok: true; readonly principal: AdminPrincipal }
  | { readonly ok: false; readonly error: CairnError; readonly credential?: string };

const hashToken = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();

export const principalOf = (c: AdminCredential): AdminPrincipal => ({ name: c.name, kind: 'token', role: c.role, trustDomains: c.trustDomains });

/** Named admin credentials (bearer secrets): high-entropy, only their SHA-256 is stored. */
export class AdminAuthService {
  constructor(private readonly deps: AdminAuthDeps) {}

  /**
   * At start. With a configured token (CAIRN_ADMIN_TOKEN), it becomes the credential `configured`
   * (role admin), replacing the one configured before, which stops working; no bootstrap credential
   * is made. Without one, on first start (no credential at all) the bootstrap credential is created
   * and its secret handed back once for the data dir. Replicas starting together take turns.
   */
  async bootstrap(configuredToken: string | undefined): Promise<string | undefined> {
    const now = this.deps.clock.now();
    if (configuredToken !== undefined) {
      if (configuredToken.length < 32) throw new CairnError('invalid_request', 'CAIRN_ADMIN_TOKEN must be at least 32 characters');
      if (!/^[\x21-\x7e]{32,512}$/.test(configuredToken)) throw new CairnError('invalid_request', 'CAIRN_ADMIN_TOKEN must be at most 512 printable ASCII characters without spaces');
      const hash = hashToken(configuredToken);
      await this.deps.store.exclusive(async (tx) => {
        const holder = await this.deps.store.byHash(hash, tx);
        if (holder?.name === CONFIGURED_NAME) {
          const legacy = (await this.deps.store.deleteConfigured(tx, '', LEGACY_CONFIGURED_PREFIX));
          if (legacy.length > 0) this.deps.logger.info({ event: 'admin.configured_replaced', replaced: legacy }, 'earlier configured admin tokens removed');
          return;
        }
        const replaced = (await this.deps.store.deleteConfigured(tx, CONFIGURED_NAME, LEGACY_CONFIGURED_PREFIX)).filter((n) => n !== holder?.name);
        if (holder && !holder.name.startsWith(LEGACY_CONFIGURED_PREFIX)) {
          // The configured value is another credential's secret (say, the bootstrap one shared with replicas).
          this.deps.logger.info({ event: 'admin.configured_existing', name: holder.name, replaced }, 'CAIRN_ADMIN_TOKEN is the secret of an existing admin credential');
          return;
        }
        await this.deps.store.insert(
          { id: randomAlphanumeric(this.deps.random, 16), name: CONFIGURED_NAME, tokenHash: hash, role: 'admin', trustDomains: null, createdAt: now, createdBy: 'CAIRN_ADMIN_TOKEN', expiresAt: null },
          tx,
        );
        this.deps.logger.info(
          { event: 'admin.created', name: CONFIGURED_NAME, role: 'admin', actor: 'CAIRN_ADMIN_TOKEN', replaced },
          replaced.length > 0 ? 'configured admin credential replaced; the previous one no longer works' : 'configured admin credential registered',
        );
      });
      return undefined;
    }
    return this.deps.store.exclusive(async (tx) => {
      if ((await this.deps.store.count(tx)) > 0) return undefined;
      const token = ADMIN_TOKEN_PREFIX + randomAlphanumeric(this.deps.random, 43);
      await this.deps.store.insert(
        { id: randomAlphanumeric(this.deps.random, 16), name: BOOTSTRAP_NAME, tokenHash: hashToken(token), role: 'admin', trustDomains: null, createdAt: now, createdBy: null, expiresAt: null },
        tx,
      );
      this.deps.logger.info({ event: 'admin.created', name: BOOTSTRAP_NAME, role: 'admin' }, 'bootstrap admin credential created');
      return token;
    });
  }

  /** A new named credential; its secret is in the answer and nowhere else. */
  async create(input: NewAdminInput, actor: string): Promise<{ credential: AdminCredential; token: string }> {
    if (!NAME.test(input.name)) throw new CairnError('invalid_request', 'name must be 1-63 lowercase letters, digits, ".", "_" or "-", starting with a letter or digit');
    if (isReservedAdminName(input.name)) throw new CairnError('invalid_request', `the name ${input.name} is reserved for the credential the CA manages itself`);
    if (!isRole(input.role)) throw new CairnError('invalid_request', 'role must be admin, operator or viewer');
    let trustDomains: string[] | null = null;
    if (input.trustDomains !== undefined) {
      if (input.trustDomains.length === 0 || input.trustDomains.length > MAX_SCOPE) throw new CairnError('invalid_request', `trustDomains must name 1 to ${MAX_SCOPE} trust domains (leave it out for all)`);
      trustDomains = [...new Set(input.trustDomains.map(validateTrustDomainName))].sort();
    }
    const now = this.deps.clock.now();
    const expiresAt = input.ttlSeconds === undefined ? null : addSeconds(now, checkTtl(input.ttlSeconds, ADMIN_TTL, 'ttlSeconds'));
    const token = ADMIN_TOKEN_PREFIX + randomAlphanumeric(this.deps.random, 43);
    const credential = await this.deps.store.insert({
      id: randomAlphanumeric(this.deps.random, 16), name: input.name, tokenHash: hashToken(token), role: input.role, trustDomains, createdAt: now, createdBy: actor, expiresAt,
    });
    this.deps.logger.info(
      { event: 'admin.created', name: credential.name, role: credential.role, trustDomains, expiresAt: expiresAt?.toISOString() ?? null, actor },
      'admin credential created',
    );
    return { credential, token };
  }

  list(pageSize: number | undefined, pageToken: string | undefined): Promise<Page<AdminCredential>> {
    const after = decodePageToken(pageToken, 1)?.[0] as string | undefined;
    return this.deps.store.list(pageSizeOf(pageSize), after);
  }

  /** Deletes the credential: the next request with it fails on every replica (nothing caches it). */
  async revoke(name: string, actor: string): Promise<AdminCredential> {
    const gone = await this.deps.store.delete(name);
    if (!gone) throw new CairnError('admin_not_found', `there is no admin credential named ${name}`);
    this.deps.logger.info({ event: 'admin.revoked', name, role: gone.role, actor }, 'admin credential revoked');
    return gone;
  }

  /**
   * The credential an `Authorization: Bearer` header holds. Looked up in the store on every request,
   * so a revocation or expiry counts at once on every replica; `last used` is written at most once
   * per LAST_USED_RESOLUTION_SECONDS.
   */
  async verifyBearer(authorization: string): Promise<BearerResult> {
    const m = /^Bearer ([\x21-\x7e]{1,512})$/.exec(authorization);
    if (!m) return { ok: false, error: new CairnError('unauthenticated', 'the Authorization header must be "Bearer <admin token>"') };
    const credential = await this.deps.store.byHash(hashToken(m[1]!));
    if (!credential) return { ok: false, error: new CairnError('unauthenticated', 'the admin token is not valid') };
    const now = this.deps.clock.now();
    if (credential.expiresAt && credential.expiresAt <= now) {
      return { ok: false, credential: credential.name, error: new CairnError('unauthenticated', `the admin credential ${credential.name} expired at ${credential.expiresAt.toISOString()}`) };
    }
    const staleBefore = addSeconds(now, -LAST_USED_RESOLUTION_SECONDS);
    if (!credential.lastUsedAt || credential.lastUsedAt < staleBefore) {
      await this.deps.store.touch(credential.id, now, staleBefore).catch((err: unknown) => this.deps.logger.warn({ err, name: credential.name }, 'could not record an admin credential\'s use'));
    }
    return { ok: true, principal: principalOf(credential) };
  }
}


