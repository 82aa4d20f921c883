import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import type { Random } from '../lib/random.js';
import type { Database } from './db/database.js';
import { schemaVersion } from './db/migrate.js';
import { AdminAuthService } from './admin-auth/service.js';
import { AdminTokenStore } from './admin-auth/store.js';
import { createSealer } from './authority/sealing.js';
import { AuthorityService } from './authority/service.js';
import { AuthorityKeyStore } from './authority/store.js';
import { EntryStore } from './entries/store.js';
import type { CaServices } from './http/app.js';
import { InventoryStore } from './inventory/store.js';
import { IssuanceService } from './issuance/service.js';
import { TrustDomainService } from './trust-domains/service.js';
import { TrustDomainStore } from './trust-domains/store.js';

export interface CoreDeps {
  readonly db: Database;
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  readonly kek: Buffer;
}

export interface CaCore extends CaServices {
  readonly stores: {
    readonly trustDomains: TrustDomainStore;
    readonly keys: AuthorityKeyStore;
    readonly entries: EntryStore;
    readonly adminTokens: AdminTokenStore;
  };
}

/** Wires stores and services over one database. No I/O happens here. */
export function buildCaCore(deps: CoreDeps): CaCore {
  const { db, clock, random, logger } = deps;
  const trustDomainStore = new TrustDomainStore(db);
  const keys = new AuthorityKeyStore(db);
  const entries = new EntryStore(db);
  const adminTokens = new AdminTokenStore(db);
  const inventory = new InventoryStore(db);
  const sealer = createSealer(deps.kek, random);
  const authority = new AuthorityService({ db, clock, random, sealer, keys, trustDomains: trustDomainStore, logger });
  return {
    stores: { trustDomains: trustDomainStore, keys, entries, adminTokens },
    adminAuth: new AdminAuthService({ clock, random, logger, store: adminTokens }),
    authority,
    trustDomains: new TrustDomainService({ db, clock, logger, store: trustDomainStore, keys, authority, entries }),
    issuance: new IssuanceService({ clock, random, logger, authority, inventory }),
    inventory,
    ready: async () => (await schemaVersion(db)) > 0,
  };
}
