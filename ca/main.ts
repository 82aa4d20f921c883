import type { Server as HttpsServer } from 'node:https';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { SERVER_CERT_TTL_SECONDS } from './server-tls/service.js';
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
import type { PlainAdminMode } from './http/plain-admin.js';
import { loadKek } from './keys-at-rest.js';
import { credentialSets, type KubeCredentialSet } from './node-attestation/kube-credentials.js';
import { buildCaCore, type CaCore } from './services.js';

export interface CaConfig {
  readonly dataDir: string;
  /** PostgreSQL connection string; absent → the embedded PostgreSQL in <dataDir>/pgdata. */
  readonly databaseUrl?: string | undefined;
  readonly host: string;
  readonly port: number;
  /** Admin routes on the plain listener: loopback callers only (default), or none. */
  readonly plainAdmin?: PlainAdminMode | undefined;
  readonly publicUrl?: string | undefined;
  readonly kekFile?: string | undefined;
  /** A known admin token to accept (CAIRN_ADMIN_TOKEN), e.g. shared by replicas. */
  readonly adminToken?: string | undefined;
  readonly rotationIntervalMs?: number;
  /** The TLS listener for agents and devices (token redemption, mTLS); also serves public and admin routes. */
  readonly tlsHost?: string;
  readonly tlsPort?: number;
  /** How bootstrappers reach the TLS listener (goes into tokens); default https://<tlsHost>:<port>. */
  readonly tlsPublicUrl?: string | undefined;
  /** Extra DNS names / IPs for the TLS server certificate. */
  readonly tlsSans?: readonly string[];
  /** Kubernetes API credential sets k8s_psat clusters may name (besides the built-in `in-cluster`). */
  readonly kubeCredentials?: readonly KubeCredentialSet[];
}

export interface CaHandle {
  readonly url: string;
  /** https URL of the TLS listener (agents, devices, admin clients). */
  readonly tlsUrl: string;
  /** sha256 pin of the installation's TLS authority (what tokens and admin clients pin). */
  readonly tlsPin: string;
  readonly core: CaCore;
  readonly app: CaApp;
  readonly tlsApp: CaApp;
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
    let tlsUrl = '';
    const kubeCredentials = credentialSets(config.kubeCredentials ?? [], process.env);
    const core = buildCaCore({ db, clock, random, logger, kek, kubeCredentials, tlsEndpoint: async () => ({ url: config.tlsPublicUrl ?? tlsUrl, pin: await core.serverTls.pin() }) });
    const adminTokenFile = join(config.dataDir, 'admin-token');
    const bootstrapToken = await core.adminAuth.bootstrap(config.adminToken);
    if (bootstrapToken) {
      writeFileAtomic(adminTokenFile, bootstrapToken + '\n', 0o600);
      logger.info({ adminTokenFile }, 'bootstrap admin token written');
    }
    const tlsHost = config.tlsHost ?? config.host;
    const sans = [...new Set([tlsHost, 'localhost', '127.0.0.1', '::1', hostname(), ...(config.tlsSans ?? [])])].filter((h) => h && h !== '0.0.0.0' && h !== '::');
    let credentials = await core.serverTls.serverCredentials(sans);
    await core.feed.start();
    const app = await buildCaApp(core, { logger, publicUrl: config.publicUrl, plainAdmin: config.plainAdmin ?? 'loopback', tlsUrl: () => config.tlsPublicUrl ?? tlsUrl });
    const tlsApp = await buildCaApp(core, { logger, publicUrl: config.publicUrl, tls: { key: credentials.keyPem, cert: credentials.certChainPem } });
    await app.app.listen({ host: config.host, port: config.port });
    await tlsApp.app.listen({ host: tlsHost, port: config.tlsPort ?? 8443 });
    const url = `http://${hostPort(config.host, app)}`;
    tlsUrl = `https://${hostPort(tlsHost, tlsApp)}`;
    const tlsPin = credentials.pin;
    logger.info({ url, tlsUrl, tlsPin, plainAdmin: config.plainAdmin ?? 'loopback', store: db.kind }, 'CA listening');

    const refreshTls = async (): Promise<void> => {
      const left = credentials.notAfter.getTime() - clock.now().getTime();
      if (left > (SERVER_CERT_TTL_SECONDS * 1000) / 3) return;
      credentials = await core.serverTls.serverCredentials(sans);
      (tlsApp.app.server as unknown as HttpsServer).setSecureContext({ key: credentials.keyPem, cert: credentials.certChainPem });
      logger.info({ notAfter: credentials.notAfter.toISOString() }, 'TLS server certificate renewed');
    };
    const housekeeping = async (): Promise<void> => {
      await rotateAll(core, logger);
      await refreshTls().catch((err: unknown) => logger.warn({ err }, 'TLS server certificate renewal failed; will retry'));
      await core.stores.tokens.purge(new Date(clock.now().getTime() - 86400_000)).catch(() => 0);
      await core.nodeAttestation.reclaim().catch((err: unknown) => logger.warn({ err }, 'reclaiming expired attestation records failed; will retry'));
    };
    const rotation = setInterval(() => void housekeeping(), config.rotationIntervalMs ?? 60_000);
    rotation.unref();
    void housekeeping();

    return {
      url,
      tlsUrl,
      tlsPin,
      core,
      app,
      tlsApp,
      db,
      adminTokenFile,
      logger,
      async close() {
        clearInterval(rotation);
        await core.feed.stop();
        await core.issuancePool.close();
        await Promise.all([app.app.close(), tlsApp.app.close()]);
        await db.close();
      },
    };
  } catch (err) {
    await db.close().catch(() => undefined);
    throw err;
  }
}

function hostPort(host: string, app: CaApp): string {
  const address = app.app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  return `${shown.includes(':') ? `[${shown}]` : shown}:${port}`;
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
