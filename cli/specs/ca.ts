import { parseTrustDomain } from '../../spiffe/id.js';
import { CHECKS, command, ConfigError, flags, group, type ValueCheck } from '../flags.js';
import { databaseUrl, durationMs, hostNameOrIp, listenAddress, readableFile, urlSetting } from '../settings.js';
import { parsePattern } from '../../lib/endpoint-pattern.js';
import { parseNamespacedName } from '../../lib/k8s-names.js';
import { ADMIN_FLAGS, CONFIG_FLAG, DATA_DIR, HEALTHCHECK_WAIT, LOG_FLAGS } from './common.js';

/**
 * Server settings are checked with cli/settings.ts before anything is opened; each message names
 * the setting as given (`--listen`, `CAIRN_LISTEN`).
 */
/** Each comma-separated pattern must parse (ca/federation/endpoint-allow.ts). */
const federationPatterns: ValueCheck = (v) => {
  for (const p of v.split(',')) parsePattern(p);
  return v;
};

const SETTING = {
  listen: ((v, where) => (listenAddress(v, where), v)) satisfies ValueCheck,
  url: ((v, where) => urlSetting(v, where, ['http:', 'https:'])) satisfies ValueCheck,
  httpsUrl: ((v, where) => urlSetting(v, where, ['https:'])) satisfies ValueCheck,
  databaseUrl: ((v, where) => databaseUrl(v, where)) satisfies ValueCheck,
  readableFile: ((v, where) => readableFile(v, where)) satisfies ValueCheck,
  hostNameOrIp: ((v, where) => hostNameOrIp(v, where)) satisfies ValueCheck,
  /** A listener timeout: a duration of at least a second. */
  timeout: ((v, where) => {
    if (durationMs(v, where) < 1000) throw new ConfigError(`${where} must be at least 1s, got "${v}"`);
    return v;
  }) satisfies ValueCheck,
  connections: ((v, where) => {
    if (!/^\d{1,7}$/.test(v)) throw new ConfigError(`${where} must be a whole number of connections (0 for no cap), got "${v}"`);
    return String(Number(v));
  }) satisfies ValueCheck,
  onOff: ((v, where) => {
    if (v !== 'on' && v !== 'off') throw new ConfigError(`${where} must be on or off, got "${v}"`);
    return v;
  }) satisfies ValueCheck,
  /** How often the audit log signs while it grows: 1 s to a minute. */
  checkpointInterval: ((v, where) => {
    const ms = durationMs(v, where);
    if (ms < 1000 || ms > 60_000) throw new ConfigError(`${where} must be between 1s and 60s, got "${v}"`);
    return v;
  }) satisfies ValueCheck,
  auditOrigin: ((v, where) => {
    if (!/^[A-Za-z0-9][A-Za-z0-9._~/:-]{0,254}$/.test(v) || v.includes('://')) throw new ConfigError(`${where} must be a log name without a scheme, spaces or '+', like ca.example.org/cairn/audit, got "${v}"`);
    return v;
  }) satisfies ValueCheck,
  trustDomain: ((v, where) => {
    try {
      return parseTrustDomain(v);
    } catch (err) {
      throw new ConfigError(`${where}: "${v}" is not a trust domain name: ${(err as Error).message}`);
    }
  }) satisfies ValueCheck,
};

const DATABASE_URL = flags({
  'database-url': {
    type: 'string',
    value: 'URL',
    env: ['DATABASE_URL', 'CAIRN_DATABASE_URL'],
    check: SETTING.databaseUrl,
    description: 'PostgreSQL connection URL (default: the embedded store in <data-dir>/pgdata)',
  },
});

export const CA_START_FLAGS = flags({
  ...DATA_DIR,
  ...DATABASE_URL,
  listen: { type: 'string', value: 'HOST:PORT', env: ['CAIRN_LISTEN'], check: SETTING.listen, description: 'plain HTTP listener: public documents, and admin routes as --plain-admin says (default 127.0.0.1:8080)' },
  'plain-admin': {
    type: 'string',
    choices: ['loopback', 'off'],
    env: ['CAIRN_PLAIN_ADMIN'],
    default: 'loopback',
    description: 'who may call admin routes on the plain listener: loopback callers only, or nobody (TLS only)',
  },
  'public-url': { type: 'string', value: 'URL', env: ['CAIRN_PUBLIC_URL'], check: SETTING.url, description: 'base URL clients use, for jwks_uri and bundle URLs (default: the listen address)' },
  'kek-file': { type: 'string', value: 'FILE', env: ['CAIRN_KEK_FILE'], check: SETTING.readableFile, complete: 'file', description: 'key-encryption key, 32 bytes raw, hex or base64 (default: generated in <data-dir>/kek)' },
  'tls-listen': { type: 'string', value: 'HOST:PORT', env: ['CAIRN_TLS_LISTEN'], check: SETTING.listen, description: 'TLS listener for agents and devices (default 127.0.0.1:8443)' },
  'metrics-listen': {
    type: 'string',
    value: 'HOST:PORT',
    env: ['CAIRN_METRICS_LISTEN'],
    check: SETTING.listen,
    description: 'serve Prometheus metrics (GET /metrics, no credential) on a listener of their own (default: /metrics on --listen, to loopback callers only)',
  },
  'tls-public-url': { type: 'string', value: 'URL', env: ['CAIRN_TLS_PUBLIC_URL'], check: SETTING.httpsUrl, description: 'the TLS URL put into tokens (default https://<tls listen address>)' },
  'kube-credentials': {
    type: 'string',
    multiple: true,
    value: 'NAME=api-server=URL,token-file=F[,ca-file=F]',
    description: 'a Kubernetes credential set k8s_psat attestors may name (CAIRN_KUBE_CREDENTIALS adds ";"-separated ones; "in-cluster" is built in)',
  },
  'tls-san': { type: 'string', multiple: true, value: 'NAME', check: SETTING.hostNameOrIp, description: "an extra DNS name or IP in the TLS certificate (CAIRN_TLS_SANS adds comma-separated ones)" },
  'no-migrate': {
    type: 'boolean',
    env: ['CAIRN_NO_MIGRATE'],
    description: 'do not apply schema migrations at start (run cairn migrate first); a runtime user then needs no DDL rights',
  },
  'request-timeout': {
    type: 'string',
    value: 'DURATION',
    env: ['CAIRN_REQUEST_TIMEOUT'],
    check: SETTING.timeout,
    description: 'a request whose headers or body stall this long is answered 408 and closed, on both listeners (default 30s)',
  },
  'keep-alive-timeout': { type: 'string', value: 'DURATION', env: ['CAIRN_KEEP_ALIVE_TIMEOUT'], check: SETTING.timeout, description: 'how long an idle keep-alive connection stays open (default 72s)' },
  'max-connections': { type: 'string', value: 'N', env: ['CAIRN_MAX_CONNECTIONS'], check: SETTING.connections, description: 'connections each listener holds at most; 0 for no cap (default 10000)' },
  'ca-name-constraints': {
    type: 'string',
    value: 'on|off',
    env: ['CAIRN_CA_NAME_CONSTRAINTS'],
    check: SETTING.onOff,
    complete: ['on', 'off'],
    description: "URI name constraints (the trust domain) in new CA certificates; off only for verifiers that refuse them (default on)",
  },
  'audit-origin': {
    type: 'string',
    value: 'NAME',
    env: ['CAIRN_AUDIT_ORIGIN'],
    check: SETTING.auditOrigin,
    description: "the audit log's name, first line of its checkpoints, taken when the log is created (default <host of --tls-public-url or --public-url>/cairn/audit)",
  },
  'audit-checkpoint-interval': {
    type: 'string',
    value: 'DURATION',
    env: ['CAIRN_AUDIT_CHECKPOINT_INTERVAL'],
    check: SETTING.checkpointInterval,
    description: 'while the audit log grows, sign a checkpoint this often, 1s to 60s (default 10s)',
  },
  'audit-checkpoint-file': {
    type: 'string',
    value: 'FILE',
    env: ['CAIRN_AUDIT_CHECKPOINT_FILE'],
    complete: 'file',
    description: 'write each audit checkpoint this replica signs to FILE (replaced atomically), a copy outside the database',
  },
  'audit-checkpoint-webhook': {
    type: 'string',
    value: 'URL',
    env: ['CAIRN_AUDIT_CHECKPOINT_WEBHOOK'],
    check: SETTING.url,
    description: 'POST each audit checkpoint this replica signs to URL (text/plain, 5 s timeout, no redirects)',
  },
  'federation-endpoints': {
    type: 'string',
    value: 'PATTERNS',
    env: ['CAIRN_FEDERATION_ENDPOINTS'],
    check: federationPatterns,
    description: 'bundle endpoints federation relationships may point at, comma-separated: host, host:port, *.domain, [v6]:port, or * for any (default: none)',
  },
  'pin-configmap': {
    type: 'string',
    value: 'NAMESPACE/NAME',
    env: ['CAIRN_PIN_CONFIGMAP'],
    check: (v) => (parseNamespacedName(v), v),
    description: "keep the TLS URL and pin in this ConfigMap (keys ca-url, ca-pin) for agent DaemonSets; needs get, create and update on it",
  },
  'pin-configmap-credentials': {
    type: 'string',
    value: 'NAME',
    env: ['CAIRN_PIN_CONFIGMAP_CREDENTIALS'],
    description: 'the Kubernetes credential set (--kube-credentials) that writes --pin-configmap (default in-cluster)',
  },
  'web-cert-dir': {
    type: 'string',
    value: 'DIR',
    env: ['CAIRN_WEB_CERT_DIR'],
    complete: 'dir',
    description: 'the only directory whose certificate and key files https_web bundle endpoints may name (default: none, https_web is refused)',
  },
  ...LOG_FLAGS,
  ...CONFIG_FLAG,
});

export const UP_FLAGS = flags({
  ...CA_START_FLAGS,
  'trust-domain': { type: 'string', value: 'TD', env: ['CAIRN_TRUST_DOMAIN'], default: 'example.org', check: SETTING.trustDomain, description: 'the trust domain to create and serve' },
  'bundle-endpoint-listen': { type: 'string', value: 'HOST:PORT', env: ['CAIRN_BUNDLE_ENDPOINT_LISTEN'], check: SETTING.listen, description: "serve the trust domain's SPIFFE federation bundle endpoint there (https_web with --bundle-endpoint-cert, else https_spiffe)" },
  'bundle-endpoint-url': { type: 'string', value: 'URL', env: ['CAIRN_BUNDLE_ENDPOINT_URL'], check: SETTING.httpsUrl, description: 'the https URL peers and OIDC consumers use, when it differs from the listen address' },
  'bundle-endpoint-cert': {
    type: 'string',
    value: 'FILE',
    env: ['CAIRN_BUNDLE_ENDPOINT_CERT'],
    check: SETTING.readableFile,
    description: 'https_web: the certificate (chain) the endpoint serves, reloaded when it changes; the JWT issuer, OIDC discovery and JWKS are then served over https there',
  },
  'bundle-endpoint-key': { type: 'string', value: 'FILE', env: ['CAIRN_BUNDLE_ENDPOINT_KEY'], check: SETTING.readableFile, description: "https_web: the certificate's private key, in the same directory (or in --web-cert-dir)" },
});

export const MIGRATE_FLAGS = flags({ ...DATA_DIR, ...DATABASE_URL });

export const CA_HEALTHCHECK_FLAGS = flags({
  server: {
    type: 'string',
    value: 'URL',
    env: ['CAIRN_SERVER'],
    check: CHECKS.url,
    description: "the CA's plain HTTP URL, whose /readyz answers without a token (default: caUrl from <data-dir>/endpoints.json, else http://127.0.0.1:8080)",
  },
  ...HEALTHCHECK_WAIT,
  ...DATA_DIR,
});

const ca = () => import('../commands/ca.js');

export const up = command({
  name: 'up',
  summary: 'the CA, a trust domain and a node agent on this machine, in one process',
  description: `Start the CA (embedded store unless DATABASE_URL is set), create the trust domain, attest a node agent
with a join token, register an entry for your uid, and write every endpoint to <data-dir>/endpoints.json.
Ctrl-C stops both; starting again reuses the data directory.`,
  flags: UP_FLAGS,
  examples: ['cairn up', 'cairn up --trust-domain prod.example --listen 127.0.0.1:9080'],
  run: async (args) => (await ca()).upCommand(args),
});

export const migrate = command({
  name: 'migrate',
  summary: 'apply the schema migrations this version ships, then exit',
  description: `Apply the schema migrations with the database settings of ca start, print what was applied (or that there
was nothing to apply) and exit. For a Kubernetes Job or a deploy step with DDL rights, ahead of replicas
started with --no-migrate.`,
  flags: MIGRATE_FLAGS,
  examples: ['cairn migrate --database-url postgres://cairn_admin@db/cairn'],
  run: async (args) => (await ca()).migrateCommand(args),
});

export const caGroup = group({
  name: 'ca',
  summary: 'run the CA server; check its health; print its TLS URL and pin',
  commands: [
    command({
      name: 'start',
      summary: 'run the CA server (admin API, public documents, agent and device TLS listener)',
      description: `Run the CA server until SIGINT or SIGTERM; SIGHUP re-reads the KEK file (cairn kek rotate). Replicas share
one PostgreSQL (same KEK and admin token).
Flags may come from a YAML file (--config): flags on the command line win over the file, the file over the environment.`,
      flags: CA_START_FLAGS,
      examples: ['cairn ca start --listen 0.0.0.0:8080 --tls-listen 0.0.0.0:8443 --database-url postgres://cairn@db/cairn', 'cairn ca start --config /etc/cairn/ca.yaml'],
      run: async (args) => (await ca()).caStartCommand(args),
    }),
    command({
      name: 'healthcheck',
      summary: "exit 0 when the CA's /readyz says ready, else say why and exit 1",
      description: `Ask the CA's /readyz on its plain listener (public there, also with --plain-admin off: no token or TLS
trust needed). Exit 0 when it is ready; else print one error line saying why and exit 1. --wait keeps asking
until it is ready or the time is up (for systemd's ExecStartPost and Kubernetes probes).`,
      flags: CA_HEALTHCHECK_FLAGS,
      examples: ['cairn ca healthcheck', 'cairn ca healthcheck --server http://127.0.0.1:8080 --wait 60s'],
      run: async (args) => (await import('../commands/health.js')).caHealthcheckCommand(args),
    }),
    command({
      name: 'pin',
      summary: 'print the TLS URL and pin that agents attesting without a join token need',
      flags: ADMIN_FLAGS,
      run: async (args) => (await import('../commands/attestor.js')).caPinCommand(args),
    }),
  ],
});
