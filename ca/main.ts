import { join } from 'node:path';
import { systemClock, type Clock } from '../lib/clock.js';
import { writeFileAtomic } from '../lib/fs.js';
import { createLogger, type Logger } from '../lib/log.js';
import { packageRoot } from '../lib/paths.js';
import { systemRandom, type Random } from '../lib/random.js';
import type { Database } from './db/database.js';
import { openEmbedded } from './db/embedded.js';
import { loadMigrations, migrate } from './db/migrate.js';
import { openPostgres } from './db/pg.js';
import { buildCaApp, type CaApp } from './http/app.js';
import { loadKek } from './keys-at-rest.js';
import { buildCaCore, type CaCore } from './services.js';

export interface CaConfig {
  readonly dataDir: string;
  /** PostgreSQL connection string; absent → the embedded PostgreSQL in <dataDir>/pgdata. */
  readonly databaseUrl?: string | undefined;
  readonly host: string;
  readonly port: number;
  readonly publicUrl?: string | undefined;
  readonly kekFile?: string | undefined;
  /** A known admin token to accept (CAIRN_ADMIN_TOKEN), e.g. shared by replicas. */
  readonly adminToken?: string | undefined;
  readonly rotationIntervalMs?: number;
}

export interface CaHandle {
  readonly url: string;
  readonly core: CaCore;
  readonly app: CaApp;
  readonly db: Database;
  readonly adminTokenFile: string;
  readonly logger: Logger;
  close(): Promise<void>;
}

export interface CaRuntime {
  readonly clock?: Clock;
  readonly random?: Random;
  readonly logger?: Logger;
}

export async function openDatabase(config: Pick<CaConfig, 'databaseUrl' | 'dataDir'>): Promise<Database> {
  return config.databaseUrl ? openPostgres({ connectionString: config.databaseUrl }) : openEmbedded(join(config.dataDir, 'pgdata'));
}

/** The CA process: database, migrations, keys at rest, admin bootstrap, HTTP, rotation loop. */
export async function startCa(config: CaConfig, runtime: CaRuntime = {}): Promise<CaHandle> {
  const logger = runtime.logger ?? createLogger();
  const clock = runtime.clock ?? systemClock;
  const random = runtime.random ?? systemRandom;
  const db = await openDatabase(config);
  try {
    const applied = await migrate(db, loadMigrations(join(packageRoot(import.meta.url), 'migrations')));
    if (applied.length > 0) logger.info({ event: 'db.migrated', versions: applied, store: db.kind }, 'database migrated');
    const { kek, source, generated } = loadKek(config.kekFile, config.dataDir, random);
    if (generated) logger.warn({ kekFile: source }, 'generated a new key-encryption key; replicas sharing this database need the same file (CAIRN_KEK_FILE)');
    const core = buildCaCore({ db, clock, random, logger, kek });
    const adminTokenFile = join(config.dataDir, 'admin-token');
    const bootstrapToken = await core.adminAuth.bootstrap(config.adminToken);
    if (bootstrapToken) {
      writeFileAtomic(adminTokenFile, bootstrapToken + '\n', 0o600);
      logger.info({ adminTokenFile }, 'bootstrap admin token written');
    }
    const app = await buildCaApp(core, { logger, publicUrl: config.publicUrl });
    await app.app.listen({ host: config.host, port: config.port });
    const address = app.app.server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
    logger.info({ url, store: db.kind }, 'CA listening');

    const rotation = setInterval(() => void rotateAll(core, logger), config.rotationIntervalMs ?? 60_000);
    rotation.unref();
    void rotateAll(core, logger);

    return {
      url,
      core,
      app,
      db,
      adminTokenFile,
      logger,
      async close() {
        clearInterval(rotation);
        await app.app.close();
        await db.close();
      },
    };
  } catch (err) {
    await db.close().catch(() => undefined);
    throw err;
  }
}

async function rotateAll(core: CaCore, logger: Logger): Promise<void> {
  try {
    let token: string | undefined;
    do {
      const page = await core.trustDomains.list(500, token);
      for (const td of page.items) await core.authority.rotate(td.name);
      token = page.nextPageToken;
    } while (token);
  } catch (err) {
    logger.warn({ err }, 'authority rotation pass failed; will retry');
  }
}
