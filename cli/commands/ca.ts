import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { publicUrls } from '../../contract/public-api.js';
import { bundledMigrations, CaStartError, describeDatabaseUrl, openDatabase, startCa, type CaConfig, type CaHandle } from '../../ca/main.js';
import { parseKubeCredentials, type KubeCredentialSet } from '../../ca/node-attestation/kube-credentials.js';
import { describeSchema, latestVersion, migrate, schemaServes, schemaStatus } from '../../ca/db/migrate.js';
import { validateTrustDomainName } from '../../ca/trust-domains/service.js';
import { kekFileProblem } from '../../ca/keys-at-rest.js';
import { DEFAULT_LISTENER_LIMITS, type ListenerLimits } from '../../ca/http/listener.js';
import { isCairnError } from '../../lib/errors.js';
import { writeFileAtomic } from '../../lib/fs.js';
import { cairnVersion } from '../../lib/version.js';
import { ConfigError, parse, UsageError } from '../args.js';
import { dataDirOf, DEFAULT_HTTP_PORT, DEFAULT_TLS_PORT, readInputFile } from '../client.js';
import { isPlainAdminMode, type PlainAdminMode } from '../../ca/http/plain-admin.js';
import { banner } from '../output.js';
import { databaseUrl, durationMs, envFlag, hostNameOrIp, listenAddress, readableFile, urlSetting } from '../settings.js';
import { LOG_OPTIONS, leanProcessLogger, logOptionsOf } from '../logging.js';
import { createLogger } from '../../lib/log.js';
import { untilSignal } from './agent.js';
import { startAgent } from '../../node-agent/main.js';
import { userInfo } from 'node:os';

export const CA_USAGE = `cairn ca start [--data-dir DIR] [--database-url URL] [--listen HOST:PORT] [--public-url URL] [--kek-file FILE]
               [--tls-listen HOST:PORT] [--tls-public-url URL] [--tls-san NAME …] [--plain-admin loopback|off] [--no-migrate]
               [--request-timeout 30s] [--keep-alive-timeout 72s] [--max-connections 10000] [--ca-name-constraints on|off]
               [--kube-credentials NAME=api-server=URL,token-file=F[,ca-file=F] …]   (k8s_psat TokenReview
                credentials that attestors name; also CAIRN_KUBE_CREDENTIALS, ";"-separated; "in-cluster" is built in)
               [--log-level L] [--log-format pretty|json]
cairn ca healthcheck [--server URL] [--wait DURATION]   (exit 0 when /readyz says ready)
cairn migrate [--data-dir DIR] [--database-url URL]     (apply the schema migrations and exit)
cairn up [--trust-domain example.org] [--data-dir DIR] [--listen HOST:PORT] [--log-level L] [--log-format pretty|json]
  (servers log to stderr: pretty on a terminal, JSON otherwise; their banner goes to stdout once they are up)`;

const CA_OPTIONS = {
  'database-url': { type: 'string' },
  listen: { type: 'string' },
  'public-url': { type: 'string' },
  'kek-file': { type: 'string' },
  'trust-domain': { type: 'string' },
  'tls-listen': { type: 'string' },
  'tls-public-url': { type: 'string' },
  'tls-san': { type: 'string', multiple: true },
  'plain-admin': { type: 'string' },
  'kube-credentials': { type: 'string', multiple: true },
  'no-migrate': { type: 'boolean' },
  'request-timeout': { type: 'string' },
  'keep-alive-timeout': { type: 'string' },
  'max-connections': { type: 'string' },
  'ca-name-constraints': { type: 'string' },
  ...LOG_OPTIONS,
} as const;

/** A value from its flag, else its environment variable, with the name to blame when it is wrong. */
function setting(flagValue: string | undefined, flag: string, env: string): { value: string; name: string } | undefined {
  if (flagValue !== undefined) return { value: flagValue, name: flag };
  const fromEnv = process.env[env];
  return fromEnv === undefined || fromEnv === '' ? undefined : { value: fromEnv, name: env };
}

function listenOf(flagValue: string | undefined, flag: string, env: string, fallback: string): { host: string; port: number } {
  const s = setting(flagValue, flag, env) ?? { value: fallback, name: flag };
  return listenAddress(s.value, s.name);
}

/** With no public URL configured, a specific listen address is the best guess; a wildcard is not. */
function defaultPublicUrl(host: string, port: number): string | undefined {
  if (port === 0 || host === '0.0.0.0' || host === '::' || host === '') return undefined;
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

interface CaFlags {
  'data-dir'?: string | undefined;
  'database-url'?: string | undefined;
  listen?: string | undefined;
  'public-url'?: string | undefined;
  'kek-file'?: string | undefined;
  'tls-listen'?: string | undefined;
  'tls-public-url'?: string | undefined;
  'tls-san'?: string[] | undefined;
  'plain-admin'?: string | undefined;
  'kube-credentials'?: string[] | undefined;
  'no-migrate'?: boolean | undefined;
  'request-timeout'?: string | undefined;
  'keep-alive-timeout'?: string | undefined;
  'max-connections'?: string | undefined;
  'ca-name-constraints'?: string | undefined;
}

function nameConstraintsOf(values: CaFlags): boolean {
  const s = setting(values['ca-name-constraints'], '--ca-name-constraints', 'CAIRN_CA_NAME_CONSTRAINTS');
  if (s !== undefined && s.value !== 'on' && s.value !== 'off') throw new ConfigError(`${s.name} must be on or off, got "${s.value}"`);
  return s?.value !== 'off';
}

function plainAdminOf(flag: string | undefined): PlainAdminMode {
  const value = flag ?? process.env.CAIRN_PLAIN_ADMIN ?? 'loopback';
  if (!isPlainAdminMode(value)) throw new UsageError(`${flag === undefined ? 'CAIRN_PLAIN_ADMIN' : '--plain-admin'} must be loopback or off, got "${value}"`);
  return value;
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
      throw new UsageError(`${where}: ${(err as Error).message}`);
    }
  });
  return sets;
}

/** A listener timeout: a duration of at least a second, named as given when it is wrong. */
function timeoutOf(flagValue: string | undefined, flag: string, env: string): number | undefined {
  const s = setting(flagValue, flag, env);
  if (s === undefined) return undefined;
  const ms = durationMs(s.value, s.name);
  if (ms < 1000) throw new ConfigError(`${s.name} must be at least 1s, got "${s.value}"`);
  return ms;
}

/** --request-timeout, --keep-alive-timeout, --max-connections (CAIRN_REQUEST_TIMEOUT, CAIRN_KEEP_ALIVE_TIMEOUT, CAIRN_MAX_CONNECTIONS). */
function listenerLimitsOf(values: CaFlags): ListenerLimits {
  const cap = setting(values['max-connections'], '--max-connections', 'CAIRN_MAX_CONNECTIONS');
  if (cap !== undefined && !/^\d{1,7}$/.test(cap.value)) throw new ConfigError(`${cap.name} must be a whole number of connections (0 for no cap), got "${cap.value}"`);
  return {
    requestTimeoutMs: timeoutOf(values['request-timeout'], '--request-timeout', 'CAIRN_REQUEST_TIMEOUT') ?? DEFAULT_LISTENER_LIMITS.requestTimeoutMs,
    keepAliveTimeoutMs: timeoutOf(values['keep-alive-timeout'], '--keep-alive-timeout', 'CAIRN_KEEP_ALIVE_TIMEOUT') ?? DEFAULT_LISTENER_LIMITS.keepAliveTimeoutMs,
    maxConnections: cap === undefined ? DEFAULT_LISTENER_LIMITS.maxConnections : Number(cap.value),
  };
}

/**
 * The KEK file named by --kek-file / CAIRN_KEK_FILE, or the one generated in the data directory if
 * there is one: readable, and readable by the CA alone (ca/keys-at-rest.ts has the rule).
 */
function kekFileOf(kek: { value: string; name: string } | undefined, dataDir: string): string | undefined {
  const path = kek ? readableFile(kek.value, kek.name) : join(dataDir, 'kek');
  if (!kek && !existsSync(path)) return undefined;
  const problem = kekFileProblem(path);
  if (problem) throw new ConfigError(kek ? `${kek.name}: ${problem}` : problem);
  return kek ? path : undefined;
}

/** The CA's configuration from flags and environment, every value checked before anything is opened. */
function caConfigOf(values: CaFlags): CaConfig {
  const dataDir = dataDirOf(values['data-dir']);
  const listen = listenOf(values.listen, '--listen', 'CAIRN_LISTEN', `127.0.0.1:${DEFAULT_HTTP_PORT}`);
  const tls = listenOf(values['tls-listen'], '--tls-listen', 'CAIRN_TLS_LISTEN', `127.0.0.1:${DEFAULT_TLS_PORT}`);
  const db = setting(values['database-url'], '--database-url', 'DATABASE_URL') ?? setting(undefined, '--database-url', 'CAIRN_DATABASE_URL');
  const publicUrl = setting(values['public-url'], '--public-url', 'CAIRN_PUBLIC_URL');
  const tlsPublicUrl = setting(values['tls-public-url'], '--tls-public-url', 'CAIRN_TLS_PUBLIC_URL');
  const kek = setting(values['kek-file'], '--kek-file', 'CAIRN_KEK_FILE');
  const sans = [
    ...(values['tls-san'] ?? []).map((v) => hostNameOrIp(v, '--tls-san')),
    ...(process.env.CAIRN_TLS_SANS ?? '').split(',').map((s) => s.trim()).filter(Boolean).map((v) => hostNameOrIp(v, 'CAIRN_TLS_SANS')),
  ];
  const adminToken = configuredAdminToken()?.trim() || undefined;
  if (adminToken !== undefined && adminToken.length < 32) throw new ConfigError(`${process.env.CAIRN_ADMIN_TOKEN ? 'CAIRN_ADMIN_TOKEN' : 'CAIRN_ADMIN_TOKEN_FILE'} must hold at least 32 characters`);
  // the configured credential is sent as a bearer header: what the admin API would never accept is refused before the store
  if (adminToken !== undefined && !/^[\x21-\x7e]{32,512}$/.test(adminToken)) {
    throw new ConfigError(`${process.env.CAIRN_ADMIN_TOKEN ? 'CAIRN_ADMIN_TOKEN' : 'CAIRN_ADMIN_TOKEN_FILE'} must hold at most 512 printable ASCII characters without spaces`);
  }
  return {
    dataDir,
    databaseUrl: db ? databaseUrl(db.value, db.name) : undefined,
    ...listen,
    plainAdmin: plainAdminOf(values['plain-admin']),
    publicUrl: publicUrl ? urlSetting(publicUrl.value, publicUrl.name, ['http:', 'https:']) : defaultPublicUrl(listen.host, listen.port),
    kekFile: kekFileOf(kek, dataDir),
    adminToken,
    tlsHost: tls.host,
    tlsPort: tls.port,
    tlsPublicUrl: tlsPublicUrl ? urlSetting(tlsPublicUrl.value, tlsPublicUrl.name, ['https:']) : undefined,
    tlsSans: sans,
    kubeCredentials: kubeCredentialsOf(values['kube-credentials']),
    noMigrate: values['no-migrate'] === true || envFlag(process.env.CAIRN_NO_MIGRATE, 'CAIRN_NO_MIGRATE'),
    limits: listenerLimitsOf(values),
    caNameConstraints: nameConstraintsOf(values),
  };
}

async function runUntilSignal(handle: CaHandle): Promise<void> {
  const signal = await untilSignal();
  handle.logger.info({ signal }, 'shutting down');
  await handle.close();
}

export async function caCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, CA_OPTIONS);
  if (positionals[0] !== 'start') throw new UsageError(CA_USAGE);
  const config = caConfigOf(values);
  const handle = await startCa(config, { logger: createLogger(logOptionsOf(values)) });
  // with a configured token there is no bootstrap credential to point at
  const admin = config.adminToken ? 'admin credential "configured" from CAIRN_ADMIN_TOKEN' : `admin token file: ${handle.adminTokenFile}`;
  banner([`Cairn ${handle.version} CA listening on ${handle.url} and ${handle.tlsUrl} (${handle.db.kind} store); TLS pin ${handle.tlsPin}; ${admin}`]);
  await runUntilSignal(handle);
}

/**
 * `cairn migrate`: the schema migrations this version ships, applied with the database settings of
 * `ca start`, then exit. For a Job (or a deploy step) with DDL rights ahead of replicas started with
 * --no-migrate. Prints what it applied, or that there was nothing to apply.
 */
export async function migrateCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { 'database-url': { type: 'string' } });
  if (positionals.length > 0) throw new UsageError(CA_USAGE);
  const db = setting(values['database-url'], '--database-url', 'DATABASE_URL') ?? setting(undefined, '--database-url', 'CAIRN_DATABASE_URL');
  const config = { dataDir: dataDirOf(values['data-dir']), databaseUrl: db ? databaseUrl(db.value, db.name) : undefined };
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
export async function upCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, CA_OPTIONS);
  const config = caConfigOf(values);
  const td = setting(values['trust-domain'], '--trust-domain', 'CAIRN_TRUST_DOMAIN') ?? { value: 'example.org', name: '--trust-domain' };
  try {
    validateTrustDomainName(td.value);
  } catch (err) {
    throw new ConfigError(`${td.name}: "${td.value}" is not a trust domain name: ${(err as Error).message}`);
  }
  const trustDomain = td.value;
  const handle = await startCa(config, { logger: leanProcessLogger(values) });
  const base = (config.publicUrl ?? handle.url).replace(/\/+$/, '');
  const urls = publicUrls(base, trustDomain);
  try {
    await handle.core.trustDomains.create({ name: trustDomain, jwtIssuer: urls.defaultIssuer }, 'system:up');
  } catch (err) {
    if (!isCairnError(err, 'trust_domain_exists')) {
      await handle.close();
      throw err;
    }
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
    adminTokenFile: handle.adminTokenFile,
    store: handle.db.kind,
  };
  // The agent on this machine: attest once with a join token, then reuse its persisted SVID.
  const agentDir = join(config.dataDir, 'agent');
  const agentAlias = `spiffe://${trustDomain}/cairn/agent/local`;
  const mintJoinToken = async (): Promise<string> => (await handle.core.tokens.create({ trustDomain, agentId: agentAlias, ttlSeconds: 600 }, 'system:up')).token;
  let agent;
  try {
    agent = await startAgent({ dataDir: agentDir, ownedDir: config.dataDir, mintJoinToken, socketPath: process.env.CAIRN_AGENT_SOCKET, caUrl: config.tlsPublicUrl ?? handle.tlsUrl }, { logger: handle.logger });
    const user = userInfo();
    const workloadId = `spiffe://${trustDomain}/user/${user.username.replace(/[^A-Za-z0-9._-]/g, '_') || user.uid}`;
    const existing = await handle.core.entries.list({ parentId: agent.spiffeId, spiffeId: workloadId }, 1, undefined);
    if (existing.items.length === 0) {
      await handle.core.entries.create({ spiffeId: workloadId, parentId: agent.spiffeId, selectors: [`unix:uid:${user.uid}`] }, 'system:up');
    }
    await agent.whenReady();
    endpoints.socket = agent.socketPath;
    endpoints.agentSpiffeId = agent.spiffeId;
    endpoints.workloadSpiffeId = workloadId;
  } catch (err) {
    await agent?.close();
    await handle.close();
    throw err;
  }
  writeFileAtomic(join(config.dataDir, 'endpoints.json'), JSON.stringify(endpoints, null, 2) + '\n', 0o644);
  banner([
    `Cairn ${handle.version} is up: trust domain ${trustDomain}, CA at ${handle.url}, agents and devices at ${handle.tlsUrl} (${handle.db.kind} store)`,
    `  agent:          ${agent.spiffeId}; your uid gets ${endpoints.workloadSpiffeId}`,
    `  export SPIFFE_ENDPOINT_SOCKET=unix://${agent.socketPath}`,
    `  bundle:         ${urls.bundleUrl}`,
    `  JWKS:           ${urls.jwksUrl}`,
    `  OIDC discovery: ${urls.oidcDiscoveryUrl}`,
    `  admin token:    ${handle.adminTokenFile} (admin verbs use ${handle.tlsUrl}, pin ${handle.tlsPin})`,
    `  endpoints:      ${join(config.dataDir, 'endpoints.json')}`,
    'Press Ctrl-C to stop.',
  ]);
  const signal = await Promise.race([untilSignal(), agent.done.then(() => undefined, (err: unknown) => err as Error)]);
  if (signal instanceof Error) {
    await agent.close();
    await handle.close();
    throw signal;
  }
  handle.logger.info({ signal }, 'shutting down');
  await agent.close();
  await handle.close();
}
