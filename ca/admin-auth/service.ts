import { createHash } from 'node:crypto';
import type { Clock } from '../../lib/clock.js';
import { CairnError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { randomAlphanumeric, type Random } from '../../lib/random.js';
import type { AdminTokenStore } from './store.js';

export const ADMIN_TOKEN_PREFIX = 'cairn-admin.';

export interface AdminAuthDeps {
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  readonly store: AdminTokenStore;
}

const hashToken = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();

/** Admin bearer tokens: high-entropy secrets, only their SHA-256 is stored. */
export class AdminAuthService {
  constructor(private readonly deps: AdminAuthDeps) {}

  /**
   * On first start there is no admin: create the bootstrap token and hand it back once so the
   * caller can write it to the data dir. Replicas racing here insert at most one; the losers get
   * undefined. A token given in configuration (CAIRN_ADMIN_TOKEN) is registered too, so replicas
   * and scripts can share a known token.
   */
  async bootstrap(configuredToken: string | undefined): Promise<string | undefined> {
    const now = this.deps.clock.now();
    if (configuredToken) {
      if (configuredToken.length < 32) throw new CairnError('invalid_request', 'CAIRN_ADMIN_TOKEN must be at least 32 characters');
      await this.deps.store.insertIfAbsent(randomAlphanumeric(this.deps.random, 16), `configured-${hashToken(configuredToken).toString('hex').slice(0, 12)}`, hashToken(configuredToken), now);
    }
    if ((await this.deps.store.count()) > (configuredToken ? 1 : 0)) return undefined;
    const token = ADMIN_TOKEN_PREFIX + randomAlphanumeric(this.deps.random, 43);
    const inserted = await this.deps.store.insertIfAbsent(randomAlphanumeric(this.deps.random, 16), 'bootstrap', hashToken(token), now);
    if (!inserted) return undefined;
    this.deps.logger.info({ event: 'admin_token.created', name: 'bootstrap' }, 'bootstrap admin token created');
    return token;
  }

  /** Returns the actor name for a valid token; throws unauthenticated otherwise. */
  async authenticate(authorization: string | undefined): Promise<string> {
    const m = /^Bearer ([\x21-\x7e]{1,512})$/.exec(authorization ?? '');
    if (!m) throw new CairnError('unauthenticated', 'an admin bearer token is required (Authorization: Bearer <token>)');
    const name = await this.deps.store.nameByHash(hashToken(m[1]!));
    if (!name) throw new CairnError('unauthenticated', 'the admin token is not valid');
    return `admin:${name}`;
  }
}
