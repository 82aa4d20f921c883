import { join } from 'node:path';
import { publicUrls } from '../../contract/public-api.js';
import { startCa, type CaConfig, type CaHandle } from '../../ca/main.js';
import { parseKubeCredentials, type KubeCredentialSet } from '../../ca/node-attestation/kube-credentials.js';
import { isCairnError } from '../../lib/errors.js';
import { writeFileAtomic } from '../../lib/fs.js';
import { parse, UsageError } from '../args.js';
import { dataDirOf, DEFAULT_HTTP_PORT, DEFAULT_TLS_PORT, readInputFile } from '../client.js';
import { isPlainAdminMode, type PlainAdminMode } from '../../ca/http/plain-admin.js';
import { say } from '../output.js';
import { untilSignal } from './agent.js';
import { startAgent } from '../../node-agent/main.js';
import { userInfo } from 'node:os';

export const CA_USAGE = `cairn ca start [--data-dir DIR] [--database-url URL] [--listen HOST:PORT] [--public-url URL] [--kek-file FILE]
               [--tls-listen HOST:PORT] [--tls-public-url URL] [--tls-san NAME …] [--plain-admin loopback|off]
               [--kube-credentials NAME=api-server=URL,token-file=F[,ca-file=F] …]   (k8s_psat TokenReview
                credentials that attestors name; also CAIRN_KUBE_CREDENTIALS, ";"-separated; "in-cluster" is built in)
cairn up [--trust-domain example.org] [--data-dir DIR] [--listen HOST:PORT]`;

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
} as const;

function listenOf(flag: string | undefined, env = process.env.CAIRN_LISTEN, fallback = `127.0.0.1:${DEFAULT_HTTP_PORT}`): { host: string; port: number } {
  const text = flag ?? env ?? fallback;
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text);
  if (!m) throw new UsageError(`--listen must be HOST:PORT, got ${text}`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port: Number(m[3]) };
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

function caConfigOf(values: CaFlags): CaConfig {
  const listen = listenOf(values.listen);
  const tls = listenOf(values['tls-listen'], process.env.CAIRN_TLS_LISTEN, `127.0.0.1:${DEFAULT_TLS_PORT}`);
  return {
    dataDir: dataDirOf(values['data-dir']),
    databaseUrl: values['database-url'] ?? process.env.DATABASE_URL ?? process.env.CAIRN_DATABASE_URL,
    ...listen,
    plainAdmin: plainAdminOf(values['plain-admin']),
    publicUrl: values['public-url'] ?? process.env.CAIRN_PUBLIC_URL ?? defaultPublicUrl(listen.host, listen.port),
    kekFile: values['kek-file'] ?? process.env.CAIRN_KEK_FILE,
    adminToken: configuredAdminToken(),
    tlsHost: tls.host,
    tlsPort: tls.port,
    tlsPublicUrl: values['tls-public-url'] ?? process.env.CAIRN_TLS_PUBLIC_URL,
    tlsSans: [...(values['tls-san'] ?? []), ...(process.env.CAIRN_TLS_SANS ?? '').split(',').map((s) => s.trim()).filter(Boolean)],
    kubeCredentials: kubeCredentialsOf(values['kube-credentials']),
  };
}

async function runUntilSignal(handle: CaHandle, stops: (() => Promise<void>)[] = []): Promise<void> {
  const signal = await untilSignal();
  handle.logger.info({ signal }, 'shutting down');
  for (const stop of stops) await stop();
  await handle.close();
}

export async function caCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, CA_OPTIONS);
  if (positionals[0] !== 'start') throw new UsageError(CA_USAGE);
  const handle = await startCa(caConfigOf(values));
  say(`Cairn CA listening on ${handle.url} and ${handle.tlsUrl} (${handle.db.kind} store); TLS pin ${handle.tlsPin}; admin token file: ${handle.adminTokenFile}`);
  await runUntilSignal(handle);
}

/**
 * The main job on one machine: the CA on the embedded store (unless DATABASE_URL is set), a trust
 * domain ready to use, and every endpoint written to <data-dir>/endpoints.json for scripts.
 */
export async function upCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, CA_OPTIONS);
  const config = caConfigOf(values);
  const trustDomain = values['trust-domain'] ?? process.env.CAIRN_TRUST_DOMAIN ?? 'example.org';
  const handle = await startCa(config);
  const base = (config.publicUrl ?? handle.url).replace(/\/+$/, '');
  const urls = publicUrls(base, trustDomain);
  try {
    await handle.core.trustDomains.create({ name: trustDomain, jwtIssuer: urls.defaultIssuer }, 'system:up');
  } catch (err) {
    if (!isCairnError(err, 'trust_domain_exists')) throw err;
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
  const joinToken = async (): Promise<string> => (await handle.core.tokens.create({ trustDomain, agentId: agentAlias, ttlSeconds: 600 }, 'system:up')).token;
  let agent;
  try {
    agent = await startAgent({ dataDir: agentDir, joinToken, socketPath: process.env.CAIRN_AGENT_SOCKET, caUrl: config.tlsPublicUrl ?? handle.tlsUrl }, { logger: handle.logger });
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
  say(`Cairn is up: trust domain ${trustDomain}, CA at ${handle.url}, agents and devices at ${handle.tlsUrl} (${handle.db.kind} store)`);
  say(`  agent:          ${agent.spiffeId}; your uid gets ${endpoints.workloadSpiffeId}`);
  say(`  export SPIFFE_ENDPOINT_SOCKET=unix://${agent.socketPath}`);
  say(`  bundle:         ${urls.bundleUrl}`);
  say(`  JWKS:           ${urls.jwksUrl}`);
  say(`  OIDC discovery: ${urls.oidcDiscoveryUrl}`);
  say(`  admin token:    ${handle.adminTokenFile} (admin verbs use ${handle.tlsUrl}, pin ${handle.tlsPin})`);
  say(`  endpoints:      ${join(config.dataDir, 'endpoints.json')}`);
  say('Press Ctrl-C to stop.');
  await runUntilSignal(handle, [() => agent.close()]);
}
