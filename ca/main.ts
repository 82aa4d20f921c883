import { hostname } from 'node:os';
import { join } from 'node:path';
import { SERVER_CERT_TTL_SECONDS } from './server-tls/service.js';
import { systemClock, type Clock } from '../lib/clock.js';
import { writeFileAtomic } from '../lib/fs.js';
import { createLogger, type Logger } from '../lib/log.js';
import { isCairnError } from '../lib/errors.js';
import { packageRoot } from '../lib/paths.js';
import { systemRandom, type Random } from '../lib/random.js';
import { Resources } from '../lib/resources.js';
import { cairnVersion } from '../lib/version.js';
import type { Database } from './db/database.js';
import { openEmbedded } from './db/embedded.js';
import { describeSchema, loadMigrations, migrate, schemaServes, schemaStatus, type Migration } from './db/migrate.js';
import { openPostgres } from './db/pg.js';
import { buildCaApp, type CaApp } from './http/app.js';
import type { PlainAdminMode } from './http/plain-admin.js';
import { checkListenerLimits, DEFAULT_LISTENER_LIMITS, replaceTlsCredentials, type ListenerLimits } from './http/listener.js';
import { loadKek } from './keys-at-rest.js';
import { METRICS_PATH, startMetricsListener } from '../lib/metrics-listener.js';
import { credentialSets, IN_CLUSTER, type KubeCredentialSet } from './node-attestation/kube-credentials.js';
import { PinConfigMapPublisher, type PinConfigMapTarget } from './pin-configmap/publisher.js';
import { buildCaCore, defaultAuditOrigin, type CaCore } from './services.js';
import { BundleEndpoints } from './bundle-endpoint/server.js';
import { WebCertDir } from './bundle-endpoint/web-files.js';
import { listenForChanges } from './db/changes.js';

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
  /**
   * Never apply migrations: start only on a schema this version can serve, else refuse. The runtime
   * database user then needs no DDL rights, and a Job (`cairn migrate`) migrates before a rollout.
   */
  readonly noMigrate?: boolean | undefined;
  /**
   * URI name constraints in new CA certificates (default true). Off only for verifiers that refuse
   * URI constraints outright (pyca/cryptography's verifier, rustls-webpki before 0.102).
   */
  readonly caNameConstraints?: boolean | undefined;
  /** The audit log's origin (checkpoint first line), used when this replica creates the log; default <host of the TLS public URL>/cairn/audit. */
  readonly auditOrigin?: string | undefined;
  /** While the log grows, sign a checkpoint this often (default 10 s, at most a minute). */
  readonly auditCheckpointIntervalMs?: number | undefined;
  /** Write each checkpoint this replica signs to this file (atomically replaced). */
  readonly auditCheckpointFile?: string | undefined;
  /** POST each checkpoint this replica signs to this URL (text/plain; 5 s timeout). Configuration only. */
  readonly auditCheckpointWebhook?: string | undefined;
  /** Bundle endpoints federation relationships may point at (ca/federation/endpoint-allow.ts): none unless set. */
  readonly federationEndpoints?: readonly string[] | undefined;
  /** The only directory https_web bundle endpoints' certificate and key files may be in (ca/bundle-endpoint/web-files.ts): none unless set. */
  readonly webCertDir?: string | undefined;
  /** Request and keep-alive timeouts and the connection cap of both listeners (defaults: DEFAULT_LISTENER_LIMITS). */
  readonly limits?: Partial<ListenerLimits> | undefined;
  /** Prometheus metrics on a listener of their own, besides /metrics for loopback callers on the plain listener. */
  readonly metricsListen?: { readonly host: string; readonly port: number } | undefined;
  /**
   * Publish the TLS URL and pin to this ConfigMap (ca/pin-configmap), with the named Kubernetes
   * credential set (default in-cluster), for agent DaemonSets to read.
   */
  readonly pinConfigMap?: { readonly namespace: string; readonly name: string; readonly credentials?: string | undefined } | undefined;
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
  /** This installation's version (package.json), as /healthz reports it. */
  readonly version: string;
  /** Where Prometheus scrapes this CA: the metrics listener's, else the plain listener's /metrics (loopback callers). */
  readonly metricsUrl: string;
  /** The federation bundle endpoints this replica serves (ca/bundle-endpoint). */
  readonly bundleEndpoints: BundleEndpoints;
  /** SIGHUP: takes a new KEK from the KEK file and re-seals what is still under the old one. */
  reloadKek(): Promise<void>;
  close(): Promise<void>;
}

export interface CaRuntime {
  readonly clock?: Clock;
  readonly random?: Random;
  readonly logger?: Logger;
  /** Default: package.json's, read once here. */
  readonly version?: string;
  /** Report the process_* and nodejs_* metrics too (the CA process; not CAs inside a test process). */
  readonly processMetrics?: boolean;
}

/** The CA could not start; the message is one sentence for the operator (the CLI prints it as `error: …`). */
export class CaStartError extends Error {
  override readonly name = 'CaStartError';
}

/** The ConfigMap to publish the pin to, with its credential set; an unknown set is a start-up error. */
function pinConfigMapTarget(config: CaConfig['pinConfigMap'], sets: ReadonlyMap<string, KubeCredentialSet>): PinConfigMapTarget | undefined {
  if (!config) return undefined;
  const name = config.credentials ?? IN_CLUSTER;
  const credentials = sets.get(name);
  if (!credentials) throw new CaStartError(`--pin-configmap-credentials: no credential set "${name}" is configured (--kube-credentials)`);
  return { namespace: config.namespace, name: config.name, credentials };
}

function webCertDirOf(dir: string | undefined): WebCertDir {
  try {
    return new WebCertDir(dir);
  } catch (err) {
    throw new CaStartError((err as Error).message, { cause: err });
  }
}

/** The migrations this installation ships. */
export function bundledMigrations(): Migration[] {
  return loadMigrations(join(packageRoot(import.meta.url), 'migrations'));
}

export async function openDatabase(config: Pick<CaConfig, 'databaseUrl' | 'dataDir'>): Promise<Database> {
  return config.databaseUrl ? openPostgres({ connectionString: config.databaseUrl }) : openEmbedded(join(config.dataDir, 'pgdata'));
}

/** The CA process: database, migrations, keys at rest, admin bootstrap, HTTP, rotation loop. */
export async function startCa(config: CaConfig, runtime: CaRuntime = {}): Promise<CaHandle> {
  const logger = runtime.logger ?? createLogger();
  const clock = runtime.clock ?? systemClock;
  const random = runtime.random ?? systemRandom;
  const version = runtime.version ?? cairnVersion();
  const migrations = bundledMigrations();
  // Before the store: bad listener limits or a missing or malformed KEK file are configuration
  // mistakes, found without touching the database.
  const limits = checkListenerLimits({ ...DEFAULT_LISTENER_LIMITS, ...config.limits });
  const webCertDir = webCertDirOf(config.webCertDir);
  const { kek, source, generated } = loadKek(config.kekFile, config.dataDir, random);
  // Everything opened from here on is closed again, newest first, if the start fails halfway: a CA
  // that cannot serve exits instead of hanging on a worker, a LISTEN connection or a bound port.
  const opened = new Resources();
  const release = (): Promise<void> => opened.close((what, err) => logger.warn({ err, resource: what }, 'closing a resource failed'));
  try {
    const db = await openDatabase(config).catch((err: unknown) => {
      throw storeProblem(err, config);
    });
    opened.defer('database pool', () => db.close());
    await prepareSchema(db, migrations, { config, version, logger });
    if (generated) logger.warn({ kekFile: source }, 'generated a new key-encryption key; replicas sharing this database need the same file (CAIRN_KEK_FILE)');
    let tlsUrl = '';
    const kubeCredentials = credentialSets(config.kubeCredentials ?? [], process.env);
    const pinTarget = pinConfigMapTarget(config.pinConfigMap, kubeCredentials);
    const audit = {
      origin: config.auditOrigin ?? defaultAuditOrigin(hostOfUrl(config.tlsPublicUrl ?? config.publicUrl) ?? hostname()),
      checkpointEveryMs: config.auditCheckpointIntervalMs,
      export: { file: config.auditCheckpointFile, webhook: config.auditCheckpointWebhook },
    };
    const core = buildCaCore({ db, clock, random, logger, kek, kekFile: source, processMetrics: runtime.processMetrics ?? false, kubeCredentials, caNameConstraints: config.caNameConstraints, migrations, version, audit, federationEndpoints: config.federationEndpoints, webCertDir, tlsEndpoint: async () => ({ url: config.tlsPublicUrl ?? tlsUrl, pin: await core.serverTls.pin() }) });
    opened.defer('issuance workers', () => core.issuancePool.close());
    const adminTokenFile = join(config.dataDir, 'admin-token');
    const bootstrapToken = await core.adminAuth.bootstrap(config.adminToken);
    if (bootstrapToken) {
      writeFileAtomic(adminTokenFile, bootstrapToken + '\n', 0o600);
      logger.info({ adminTokenFile }, 'bootstrap admin token written');
    }
    const tlsHost = config.tlsHost ?? config.host;
    const sans = [...new Set([tlsHost, 'localhost', '127.0.0.1', '::1', hostname(), ...(config.tlsSans ?? [])])].filter((h) => h && h !== '0.0.0.0' && h !== '::');
    let credentials = await core.serverTls.serverCredentials(sans).catch((err: unknown) => {
      throw kekProblem(err, source);
    });
    await core.feed.start();
    opened.defer('change feed (LISTEN)', () => core.feed.stop());

    const refreshTls = async (): Promise<void> => {
      const left = credentials.notAfter.getTime() - clock.now().getTime();
      if (left > (SERVER_CERT_TTL_SECONDS * 1000) / 3) return;
      credentials = await core.serverTls.serverCredentials(sans);
      replaceTlsCredentials(tlsApp.app.server, { key: credentials.keyPem, cert: credentials.certChainPem });
      logger.info({ notAfter: credentials.notAfter.toISOString() }, 'TLS server certificate renewed');
    };
    let pass: Promise<void> = Promise.resolve();
    const housekeeping = (): void => {
      pass = pass.then(async () => {
        core.metrics.rotationPass(await rotateAll(core, logger));
        await core.kek.settle().catch((err: unknown) => logger.warn({ err }, 're-sealing values left under a previous KEK failed; will retry'));
        await refreshTls().catch((err: unknown) => logger.warn({ err }, 'TLS server certificate renewal failed; will retry'));
        await core.stores.tokens.purge(new Date(clock.now().getTime() - 86400_000)).catch(() => 0);
        await core.nodeAttestation.reclaim().catch((err: unknown) => logger.warn({ err }, 'reclaiming expired attestation records failed; will retry'));
      });
    };

    const app = await buildCaApp(core, { logger, version, plainAdmin: config.plainAdmin ?? 'loopback', tlsUrl: () => config.tlsPublicUrl ?? tlsUrl, limits });
    const tlsApp = await buildCaApp(core, { logger, version, limits, tls: { key: credentials.keyPem, cert: credentials.certChainPem } });
    // Loops stop after the listeners have closed (design: stop accepting, finish in-flight, stop
    // loops, close the pool), so they are registered before them.
    const rotation = setInterval(housekeeping, config.rotationIntervalMs ?? 60_000);
    rotation.unref();
    opened.defer('rotation loop', async () => {
      clearInterval(rotation);
      await pass;
    });
    housekeeping();
    // the log's key is made (or opened: a wrong KEK is a start-up error) before serving
    await core.audit.open().catch((err: unknown) => {
      throw kekProblem(err, source);
    });
    const auditStop = new AbortController();
    const auditLoop = core.auditCheckpointer.run(auditStop.signal);
    opened.defer('audit checkpoint loop', async () => {
      auditStop.abort();
      await auditLoop;
    });
    // every replica serves the federation bundle endpoints configured in the database
    const bundleEndpoints = new BundleEndpoints({
      clock,
      logger,
      configured: () => core.stores.trustDomains.withBundleEndpoints(),
      authority: core.authority,
      issuance: core.issuance,
      // entry and node changes never concern a bundle endpoint: with a fleet they are most notifications
      onChange: (listener) => listenForChanges(db, (change) => (change.kind === 'entries' || change.kind === 'node' ? undefined : listener())),
      webCerts: core.webCerts,
    });
    await bundleEndpoints.start();
    opened.defer('bundle endpoints', () => bundleEndpoints.stop());
    const federationStop = new AbortController();
    const federationLoop = core.federationRefresher.run(federationStop.signal);
    opened.defer('federation refresh loop', async () => {
      federationStop.abort();
      await federationLoop;
    });
    opened.defer('listeners', async () => {
      core.feed.endLongPolls(); // long-polls answer now rather than hold the close for 30 s
      await Promise.all([app.app.close(), tlsApp.app.close()]);
    });
    await listen(app, config.host, config.port, '--listen');
    await listen(tlsApp, tlsHost, config.tlsPort ?? 8443, '--tls-listen');
    const url = `http://${hostPort(config.host, app)}`;
    tlsUrl = `https://${hostPort(tlsHost, tlsApp)}`;
    if (!config.publicUrl && isWildcard(config.host)) {
      logger.warn({ publicUrl: url }, 'no public URL configured and listening on every address: issuers and URLs derived from it point at the loopback address; set --public-url (CAIRN_PUBLIC_URL) for consumers on other hosts');
    }
    let metricsUrl = `${url}${METRICS_PATH}`;
    if (config.metricsListen) {
      const { host, port } = config.metricsListen;
      const listener = await startMetricsListener(core.metrics, host, port, (err) => logger.warn({ err }, 'collecting metrics failed')).catch((err: unknown) => {
        throw listenProblem(err, host, port, '--metrics-listen');
      });
      opened.defer('metrics listener', () => listener.close());
      metricsUrl = listener.url;
    }
    const tlsPin = credentials.pin;
    if (pinTarget) {
      const publisherStop = new AbortController();
      const publisher = new PinConfigMapPublisher({ target: pinTarget, logger, document: async () => ({ 'ca-url': config.tlsPublicUrl ?? tlsUrl, 'ca-pin': await core.serverTls.pin() }) });
      const publishing = publisher.run(publisherStop.signal);
      opened.defer('pin ConfigMap publisher', async () => {
        publisherStop.abort();
        await publishing;
      });
    }
    logger.info({ url, tlsUrl, metricsUrl, tlsPin, plainAdmin: config.plainAdmin ?? 'loopback', store: db.kind, version }, 'CA listening');

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
      version,
      metricsUrl,
      // A bad KEK file on SIGHUP leaves the CA as it was: serving, with the KEKs it holds.
      reloadKek: () =>
        core.kek.reload().then(
          () => undefined,
          (err: unknown) => logger.error({ err, kekFile: source }, `the KEK was not reloaded: ${(err as Error).message}`),
        ),
      bundleEndpoints,
      close: release,
    };
  } catch (err) {
    await release();
    throw err;
  }
}

/**
 * Migrates (unless told not to), then checks that this version can serve on the schema it finds: not
 * behind (with --no-migrate), and not ahead by a migration that is not backward compatible.
 */
async function prepareSchema(db: Database, migrations: readonly Migration[], options: { config: CaConfig; version: string; logger: Logger }): Promise<void> {
  const { config, version, logger } = options;
  try {
    if (!config.noMigrate) {
      const applied = await migrate(db, migrations);
      if (applied.length > 0) logger.info({ event: 'db.migrated', versions: applied, store: db.kind }, 'database migrated');
    }
    const status = await schemaStatus(db, migrations);
    if (!schemaServes(status)) throw new CaStartError(describeSchema(status, version));
    if (status.kind === 'newer_compatible') {
      logger.warn({ event: 'db.schema_newer', schemaVersion: status.version, knownVersion: status.known, version }, 'the database schema is newer than this version knows; its newer migrations are expand-only, so it keeps serving');
    }
  } catch (err) {
    throw storeProblem(err, config);
  }
}

/** A database that cannot be reached or used at start-up, said with where it is (never its password). */
function storeProblem(err: unknown, config: Pick<CaConfig, 'databaseUrl' | 'dataDir'>): unknown {
  if (err instanceof CaStartError) return err;
  const cause = isCairnError(err, 'store_unavailable') ? (err.cause ?? err) : err;
  const where = config.databaseUrl ? `PostgreSQL at ${describeDatabaseUrl(config.databaseUrl)} (--database-url / DATABASE_URL)` : `the embedded database in ${join(config.dataDir, 'pgdata')}`;
  const reason = cause instanceof Error ? cause.message || (cause as { code?: string }).code || cause.name : String(cause);
  return new CaStartError(`cannot use ${where}: ${reason}`, { cause: err });
}

/** host:port/database of a connection string, without user or password. */
export function describeDatabaseUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.host || 'localhost'}${u.pathname && u.pathname !== '/' ? u.pathname : ''}`;
  } catch {
    return '(unparseable URL)';
  }
}

function kekProblem(err: unknown, kekSource: string): unknown {
  // kek_unavailable: sealed under a KEK id this file's key does not have; internal: a key of format 1
  // (no KEK id) that does not authenticate.
  if (!isCairnError(err, 'kek_unavailable') && !(isCairnError(err, 'internal') && /key-encryption key/.test(err.message))) return err;
  return new CaStartError(`the key-encryption key in ${kekSource} does not open the keys stored in this database: every replica of a database needs the KEK file it was created with, or after cairn kek rotate the new one (--kek-file / CAIRN_KEK_FILE)`, { cause: err });
}

async function listen(app: CaApp, host: string, port: number, flag: string): Promise<void> {
  try {
    await app.app.listen({ host, port });
  } catch (err) {
    throw listenProblem(err, host, port, flag);
  }
}

function hostOfUrl(url: string | undefined): string | undefined {
  if (!url) return undefined;
  try {
    return new URL(url).hostname || undefined;
  } catch {
    return undefined;
  }
}

function listenProblem(err: unknown, host: string, port: number, flag: string): CaStartError {
  const code = (err as { code?: string }).code;
  const address = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const why = code === 'EADDRINUSE' ? 'the address is already in use' : code === 'EACCES' ? 'permission denied (ports below 1024 need privileges)' : code === 'EADDRNOTAVAIL' ? 'no such local address' : (err as Error).message;
  return new CaStartError(`cannot listen on ${address} (${flag}): ${why}`, { cause: err });
}

const isWildcard = (host: string): boolean => host === '0.0.0.0' || host === '::' || host === '';

function hostPort(host: string, app: CaApp): string {
  const address = app.app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const shown = isWildcard(host) ? '127.0.0.1' : host;
  return `${shown.includes(':') ? `[${shown}]` : shown}:${port}`;
}

/** One pass over every trust domain; false when it failed (and will be retried). */
async function rotateAll(core: CaCore, logger: Logger): Promise<boolean> {
  try {
    let token: string | undefined;
    do {
      const page = await core.trustDomains.list(500, token);
      for (const td of page.items) {
        await core.authority.rotate(td.name);
        // After rotation: a new CA gets its CRL, one no longer published loses it, and CRLs past half
        // their validity are re-signed.
        await core.revocation.refresh(td.name).catch((err: unknown) => logger.warn({ err, trustDomain: td.name }, 'CRL re-signing failed; will retry'));
      }
      token = page.nextPageToken;
    } while (token);
    return true;
  } catch (err) {
    logger.warn({ err }, 'authority rotation pass failed; will retry');
    return false;
  }
}
