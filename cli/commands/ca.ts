import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { publicUrls } from '../../contract/public-api.js';
import { bundledMigrations, CaStartError, describeDatabaseUrl, openDatabase, startCa, type CaConfig, type CaHandle } from '../../ca/main.js';
import { IN_CLUSTER, parseKubeCredentials, type KubeCredentialSet } from '../../ca/node-attestation/kube-credentials.js';
import { parseNamespacedName } from '../../lib/k8s-names.js';
import { describeSchema, latestVersion, migrate, schemaServes, schemaStatus } from '../../ca/db/migrate.js';
import { kekFileProblem } from '../../ca/keys-at-rest.js';
import { DEFAULT_LISTENER_LIMITS, type ListenerLimits } from '../../ca/http/listener.js';
import { isCairnError } from '../../lib/errors.js';
import { writeFileAtomic } from '../../lib/fs.js';
import { parseDuration } from '../../lib/duration.js';
import { cairnVersion } from '../../lib/version.js';
import { ConfigError, type Parsed, type Values } from '../flags.js';
import type { CA_START_FLAGS, MIGRATE_FLAGS, UP_FLAGS } from '../specs/ca.js';
import { dataDirOf, DEFAULT_HTTP_PORT, DEFAULT_TLS_PORT, readInputFile } from '../client.js';
import type { PlainAdminMode } from '../../ca/http/plain-admin.js';
import { banner } from '../output.js';
import { hostNameOrIp, listenAddress } from '../settings.js';
import { leanProcessLogger, logOptionsOf } from '../logging.js';
import { createLogger } from '../../lib/log.js';
import { stopSignals } from './agent.js';
import { startAgent } from '../../node-agent/main.js';
import { userInfo } from 'node:os';
import { oidcUrlsOf, upEndpointOf, upTrustDomain } from './up-endpoint.js';

/** HOST:PORT or the default; a given value was checked by the flag table (flag, config file or environment). */
const listenOf = (value: string | undefined, fallback: string, name: string): { host: string; port: number } => listenAddress(value ?? fallback, name);

/** With no public URL configured, a specific listen address is the best guess; a wildcard is not. */
function defaultPublicUrl(host: string, port: number): string | undefined {
  if (port === 0 || host === '0.0.0.0' || host === '::' || host === '') return undefined;
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** CAIRN_ADMIN_TOKEN, else the file CAIRN_ADMIN_TOKEN_FILE names (a mounted secret, a systemd credential). */
function configuredAdminToken(): string | undefined {
  if (process.env.CAIRN_ADMIN_TOKEN) return process.env.CAIRN_ADMIN_TOKEN;
  const file = process.env.CAIRN_ADMIN_TOKEN_FILE;
  return file ? readInputFile(file, 'CAIRN_ADMIN_TOKEN_FILE').trim() : undefined;
}

/** --kube-credentials (repeatable) and CAIRN_KUBE_CREDENTIALS (";"-separated sets). */
function kubeCredentialsOf(flags: readonly string[] | undefined): KubeCredentialSet[] {
  const fromEnv = (process.env.CAIRN_KUBE_CREDENTIALS ?? '').split(';').map((s) => s.trim()).filter(Boolean);
  const sets = [...fromEnv.map((t) => [t, 'CAIRN_KUBE_CREDENTIALS'] as const), ...(flags ?? []).map((t) => [t, '--kube-credentials'] as const)].map(([text, where]) => {
    try {
      return parseKubeCredentials(text);
    } catch (err) {
      throw new ConfigError(`${where}: ${(err as Error).message}`);
    }
  });
  return sets;
}

/** --request-timeout, --keep-alive-timeout, --max-connections (checked by the flag table), over the defaults. */
function listenerLimitsOf(values: Values<typeof CA_START_FLAGS>): ListenerLimits {
  const ms = (v: string | undefined): number | undefined => (v === undefined ? undefined : parseDuration(v) * 1000);
  return {
    requestTimeoutMs: ms(values['request-timeout']) ?? DEFAULT_LISTENER_LIMITS.requestTimeoutMs,
    keepAliveTimeoutMs: ms(values['keep-alive-timeout']) ?? DEFAULT_LISTENER_LIMITS.keepAliveTimeoutMs,
    maxConnections: values['max-connections'] === undefined ? DEFAULT_LISTENER_LIMITS.maxConnections : Number(values['max-connections']),
  };
}

/**
 * The KEK file named by --kek-file (or CAIRN_KEK_FILE, or the config file; `where` says which, and the
 * table checked that it is readable), or the one generated in the data directory if there is one:
 * readable by the CA alone (ca/keys-at-rest.ts has the rule).
 */
function kekFileOf(kek: string | undefined, where: string | undefined, dataDir: string): string | undefined {
  const path = kek ?? join(dataDir, 'kek');
  if (kek === undefined && !existsSync(path)) return undefined;
  const problem = kekFileProblem(path);
  if (problem) throw new ConfigError(kek !== undefined ? `${where ?? '--kek-file'}: ${problem}` : problem);
  return kek;
}

/**
 * The CA's configuration from flags, the config file and the environment. The flag table checked each
 * value before anything is opened (naming the setting as given); what it cannot express is checked here.
 */
function caConfigOf({ values, sources }: Pick<Parsed<typeof CA_START_FLAGS>, 'values' | 'sources'>): CaConfig {
  const dataDir = dataDirOf(values['data-dir']);
  const listen = listenOf(values.listen, `127.0.0.1:${DEFAULT_HTTP_PORT}`, '--listen');
  const tls = listenOf(values['tls-listen'], `127.0.0.1:${DEFAULT_TLS_PORT}`, '--tls-listen');
  const sans = [
    ...(values['tls-san'] ?? []),
    ...(process.env.CAIRN_TLS_SANS ?? '').split(',').map((s) => s.trim()).filter(Boolean).map((v) => hostNameOrIp(v, 'CAIRN_TLS_SANS')),
  ];
  const kubeCredentials = kubeCredentialsOf(values['kube-credentials']);
  const adminToken = configuredAdminToken()?.trim() || undefined;
  if (adminToken !== undefined && adminToken.length < 32) throw new ConfigError(`${process.env.CAIRN_ADMIN_TOKEN ? 'CAIRN_ADMIN_TOKEN' : 'CAIRN_ADMIN_TOKEN_FILE'} must hold at least 32 characters`);
  // the configured credential is sent as a bearer header: what the admin API would never accept is refused before the store
  if (adminToken !== undefined && !/^[\x21-\x7e]{32,512}$/.test(adminToken)) {
    throw new ConfigError(`${process.env.CAIRN_ADMIN_TOKEN ? 'CAIRN_ADMIN_TOKEN' : 'CAIRN_ADMIN_TOKEN_FILE'} must hold at most 512 printable ASCII characters without spaces`);
  }
  return {
    dataDir,
    databaseUrl: values['database-url'],
    ...listen,
    plainAdmin: values['plain-admin'] as PlainAdminMode, // one of the table's choices
    publicUrl: values['public-url'] ?? defaultPublicUrl(listen.host, listen.port),
    kekFile: kekFileOf(values['kek-file'], sources['kek-file'], dataDir),
    adminToken,
    tlsHost: tls.host,
    tlsPort: tls.port,
    tlsPublicUrl: values['tls-public-url'],
    tlsSans: sans,
    kubeCredentials,
    noMigrate: values['no-migrate'] === true,
    limits: listenerLimitsOf(values),
    caNameConstraints: values['ca-name-constraints'] !== 'off',
    ...(values['metrics-listen'] !== undefined ? { metricsListen: listenOf(values['metrics-listen'], '', '--metrics-listen') } : {}),
    auditOrigin: values['audit-origin'],
    auditCheckpointIntervalMs: values['audit-checkpoint-interval'] === undefined ? undefined : parseDuration(values['audit-checkpoint-interval']) * 1000,
    auditCheckpointFile: values['audit-checkpoint-file'],
    auditCheckpointWebhook: values['audit-checkpoint-webhook'],
    federationEndpoints: values['federation-endpoints']?.split(',').map((p) => p.trim()).filter((p) => p !== ''),
    pinConfigMap: pinConfigMapOf(values, sources, kubeCredentials),
    webCertDir: values['web-cert-dir'],
  };
}

/** --pin-configmap (checked by the flag table) with its credential set, which must be one this CA knows. */
function pinConfigMapOf(values: Values<typeof CA_START_FLAGS>, sources: Parsed<typeof CA_START_FLAGS>['sources'], sets: readonly KubeCredentialSet[]): CaConfig['pinConfigMap'] {
  const credentials = values['pin-configmap-credentials'];
  if (values['pin-configmap'] === undefined) {
    if (credentials !== undefined) throw new ConfigError(`${sources['pin-configmap-credentials'] ?? '--pin-configmap-credentials'} needs --pin-configmap`);
    return undefined;
  }
  const known = new Set([IN_CLUSTER, ...sets.map((c) => c.name)]);
  if (credentials !== undefined && !known.has(credentials)) {
    throw new ConfigError(`${sources['pin-configmap-credentials'] ?? '--pin-configmap-credentials'}: no credential set "${credentials}" (define it with --kube-credentials; "in-cluster" is built in)`);
  }
  return { ...parseNamespacedName(values['pin-configmap']), credentials };
}

/**
 * SIGHUP re-reads the KEK file (after cairn kek rotate on another replica). Listened for before the
 * CA starts, since Node's default would kill it; one that arrives during the start is a no-op (the
 * start reads the file anyway).
 */
function reloadKekOnHangup(): { serve(handle: CaHandle): void } {
  let served: CaHandle | undefined;
  process.on('SIGHUP', () => void served?.reloadKek());
  return {
    serve: (handle) => {
      served = handle;
    },
  };
}

async function runUntilSignal(handle: CaHandle, stopped: Promise<string>): Promise<void> {
  const signal = await stopped;
  handle.logger.info({ signal }, 'shutting down');
  await handle.close();
}

export async function caStartCommand(args: Parsed<typeof CA_START_FLAGS>): Promise<void> {
  const config = caConfigOf(args);
  const signals = stopSignals();
  const hangup = reloadKekOnHangup();
  const handle = await startCa(config, { logger: createLogger(logOptionsOf(args.values)), processMetrics: true });
  hangup.serve(handle);
  signals.started();
  // with a configured token there is no bootstrap credential to point at
  const admin = config.adminToken ? 'admin credential "configured" from CAIRN_ADMIN_TOKEN' : `admin token file: ${handle.adminTokenFile}`;
  banner([`Cairn ${handle.version} CA listening on ${handle.url} and ${handle.tlsUrl} (${handle.db.kind} store); TLS pin ${handle.tlsPin}; ${admin}`]);
  await runUntilSignal(handle, signals.stopped);
}

/**
 * `cairn migrate`: the schema migrations this version ships, applied with the database settings of
 * `ca start`, then exit. For a Job (or a deploy step) with DDL rights ahead of replicas started with
 * --no-migrate. Prints what it applied, or that there was nothing to apply.
 */
export async function migrateCommand({ values }: Parsed<typeof MIGRATE_FLAGS>): Promise<void> {
  const config = { dataDir: dataDirOf(values['data-dir']), databaseUrl: values['database-url'] };
  const where = config.databaseUrl ? `PostgreSQL at ${describeDatabaseUrl(config.databaseUrl)}` : `the embedded database in ${join(config.dataDir, 'pgdata')}`;
  const version = cairnVersion();
  const migrations = bundledMigrations();
  const database = await openDatabase(config);
  try {
    let applied: number[];
    try {
      applied = await migrate(database, migrations);
    } catch (err) {
      throw new CaStartError(`cannot migrate ${where}: ${isCairnError(err, 'store_unavailable') ? ((err.cause as Error | undefined)?.message ?? err.message) : (err as Error).message}`, { cause: err });
    }
    const status = await schemaStatus(database, migrations);
    for (const v of applied) process.stdout.write(`applied ${String(v).padStart(4, '0')}_${migrations[v - 1]!.name}\n`);
    if (!schemaServes(status)) throw new CaStartError(describeSchema(status, version));
    process.stdout.write((applied.length > 0
      ? `${where} migrated to schema version ${status.version} (Cairn ${version})`
      : `${where} is at schema version ${status.version}; nothing to apply (Cairn ${version} knows ${latestVersion(migrations)})`) + '\n');
  } finally {
    await database.close();
  }
}

/**
 * The main job on one machine: the CA on the embedded store (unless DATABASE_URL is set), a trust
 * domain ready to use, and every endpoint written to <data-dir>/endpoints.json for scripts.
 */
export async function upCommand({ values, sources }: Parsed<typeof UP_FLAGS>): Promise<void> {
  // Checked by the flag table before anything is opened: an invalid name never reaches the store.
  const { config, endpoint } = upEndpointOf(values, caConfigOf({ values, sources }));
  const trustDomain = values['trust-domain'];
  // the restart in place (leanProcessLogger) comes first: nothing is listened for or opened before it
  const logger = leanProcessLogger(values);
  const signals = stopSignals();
  const hangup = reloadKekOnHangup();
  const handle = await startCa(config, { logger, processMetrics: true });
  hangup.serve(handle);
  const base = (config.publicUrl ?? handle.url).replace(/\/+$/, '');
  let urls: ReturnType<typeof oidcUrlsOf> & { bundleUrl: string };
  try {
    urls = { ...oidcUrlsOf(await upTrustDomain(handle.core, trustDomain, base, endpoint), base), bundleUrl: publicUrls(base, trustDomain).bundleUrl };
  } catch (err) {
    await handle.close();
    throw err;
  }
  const endpoints: Record<string, string> = {
    trustDomain,
    caUrl: handle.url,
    caTlsUrl: handle.tlsUrl,
    // admin verbs use the TLS URL with this pin (the one join tokens carry)
    caPin: handle.tlsPin,
    bundleUrl: urls.bundleUrl,
    jwksUrl: urls.jwksUrl,
    oidcDiscoveryUrl: urls.oidcDiscoveryUrl,
    ...(urls.jwtIssuer ? { jwtIssuer: urls.jwtIssuer } : {}),
    ...(urls.bundleEndpointUrl ? { bundleEndpointUrl: urls.bundleEndpointUrl } : {}),
    adminTokenFile: handle.adminTokenFile,
    metricsUrl: handle.metricsUrl,
    store: handle.db.kind,
  };
  // The agent on this machine: attest once with a join token, then reuse its persisted SVID.
  const agentDir = join(config.dataDir, 'agent');
  const agentAlias = `spiffe://${trustDomain}/cairn/agent/local`;
  const mintJoinToken = async (): Promise<string> => (await handle.core.tokens.create({ trustDomain, agentId: agentAlias, ttlSeconds: 600 }, 'system:up')).token;
  let agent;
  try {
    // the agent's metrics on a free loopback port, named in endpoints.json
    agent = await startAgent(
      { dataDir: agentDir, ownedDir: config.dataDir, mintJoinToken, socketPath: process.env.CAIRN_AGENT_SOCKET, caUrl: config.tlsPublicUrl ?? handle.tlsUrl, metricsListen: { host: '127.0.0.1', port: 0 } },
      { logger: handle.logger },
    );
    const user = userInfo();
    const workloadId = `spiffe://${trustDomain}/user/${user.username.replace(/[^A-Za-z0-9._-]/g, '_') || user.uid}`;
    const existing = await handle.core.entries.list({ parentId: agent.spiffeId, spiffeId: workloadId }, 1, undefined);
    if (existing.items.length === 0) {
      await handle.core.entries.create({ spiffeId: workloadId, parentId: agent.spiffeId, selectors: [`unix:uid:${user.uid}`] }, 'system:up');
    }
    await agent.whenReady();
    endpoints.socket = agent.socketPath;
    if (agent.metricsUrl) endpoints.agentMetricsUrl = agent.metricsUrl;
    endpoints.agentSpiffeId = agent.spiffeId;
    endpoints.workloadSpiffeId = workloadId;
  } catch (err) {
    await agent?.close();
    await handle.close();
    throw err;
  }
  writeFileAtomic(join(config.dataDir, 'endpoints.json'), JSON.stringify(endpoints, null, 2) + '\n', 0o644);
  signals.started();
  banner([
    `Cairn ${handle.version} is up: trust domain ${trustDomain}, CA at ${handle.url}, agents and devices at ${handle.tlsUrl} (${handle.db.kind} store)`,
    `  agent:          ${agent.spiffeId}; your uid gets ${endpoints.workloadSpiffeId}`,
    `  export SPIFFE_ENDPOINT_SOCKET=unix://${agent.socketPath}`,
    `  bundle:         ${urls.bundleUrl}`,
    `  JWKS:           ${urls.jwksUrl}`,
    `  OIDC discovery: ${urls.oidcDiscoveryUrl}`,
    ...(urls.bundleEndpointUrl ? [`  federation:     ${urls.bundleEndpointUrl} (SPIFFE bundle endpoint)`] : []),
    `  admin token:    ${handle.adminTokenFile} (admin verbs use ${handle.tlsUrl}, pin ${handle.tlsPin})`,
    `  endpoints:      ${join(config.dataDir, 'endpoints.json')}`,
    'Press Ctrl-C to stop.',
  ]);
  const signal = await Promise.race([signals.stopped, agent.done.then(() => undefined, (err: unknown) => err as Error)]);
  if (signal instanceof Error) {
    await agent.close();
    await handle.close();
    throw signal;
  }
  handle.logger.info({ signal }, 'shutting down');
  await agent.close();
  await handle.close();
}
