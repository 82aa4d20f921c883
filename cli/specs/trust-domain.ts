import { apiFieldsFor, CHECKS, command, flags, group } from '../flags.js';
import { TTL_LIMITS } from '../../ca/trust-domains/model.js';
import { ADMIN_FLAGS, PAGING } from './common.js';

/** 0 is allowed: no window (a successor may sign as soon as it is made). */
function durationOrZero(v: string): string {
  return /^0+[smhd]?$/.test(v.trim()) ? v : CHECKS.duration(v);
}

const NAME = { name: 'NAME', description: 'the trust domain, e.g. example.org', required: true, check: CHECKS.trustDomain } as const;

const TTL_FLAGS = flags({
  'ca-ttl': { type: 'string', value: 'DURATION', check: CHECKS.durationBetween(TTL_LIMITS.caTtlSeconds), description: 'lifetime of CA certificates made from now on (default 365d)' },
  'x509-svid-ttl': { type: 'string', value: 'DURATION', check: CHECKS.durationBetween(TTL_LIMITS.x509SvidTtlSeconds), description: 'default X.509-SVID lifetime (default 1h)' },
  'jwt-svid-ttl': { type: 'string', value: 'DURATION', check: CHECKS.durationBetween(TTL_LIMITS.jwtSvidTtlSeconds), description: 'default JWT-SVID lifetime (default 5m)' },
  'jwt-issuer': { type: 'string', value: 'URL', description: 'the iss claim of JWT-SVIDs and the OIDC issuer, e.g. https://ca.example/td/example.org' },
  'jwt-key-type': {
    type: 'string',
    choices: ['ec-p256', 'ec-p384', 'rsa-2048'],
    description: 'the type of JWT signing keys (ES256, ES384, RS256), applied at the next JWT key (default: the CA key type)',
  },
  'authority-prepublish': {
    type: 'string',
    value: 'DURATION',
    check: durationOrZero,
    description: 'automatic rotation publishes a successor key this long before it signs, at most half the CA TTL (default 30m)',
  },
  'bundle-refresh-hint': {
    type: 'string',
    value: 'DURATION',
    check: CHECKS.durationBetween(TTL_LIMITS.bundleRefreshHintSeconds),
    description: 'spiffe_refresh_hint of the published bundle: how often federated peers poll it, 5s to 1d (default 5m)',
  },
});

const ENDPOINT_FLAGS = flags({
  'bundle-endpoint-listen': { type: 'string', value: 'HOST:PORT', description: 'serve the trust domain\'s SPIFFE federation bundle endpoint there, on every CA replica (update: "" removes it)' },
  'bundle-endpoint-profile': { type: 'string', choices: ['https_spiffe', 'https_web'], description: 'https_spiffe (default): the endpoint authenticates with an X.509-SVID of the trust domain; https_web: with --bundle-endpoint-cert and --bundle-endpoint-key' },
  'bundle-endpoint-spiffe-id': { type: 'string', value: 'ID', check: CHECKS.spiffeId, description: 'the SPIFFE ID of the endpoint\'s SVID (default spiffe://<td>/cairn/bundle-endpoint)' },
  'bundle-endpoint-url': { type: 'string', value: 'URL', description: 'the https URL peers use, when it differs from the listen address' },
  'bundle-endpoint-cert': { type: 'string', value: 'FILE', description: "https_web: the certificate (chain) PEM file on the CA's hosts, in its --web-cert-dir (a name relative to it); reloaded when it changes" },
  'bundle-endpoint-key': { type: 'string', value: 'FILE', description: "https_web: the certificate's private key PEM file on the CA's hosts, in its --web-cert-dir" },
});

export const TD_CREATE_FLAGS = flags({
  'ca-key-type': { type: 'string', choices: ['ec-p256', 'ec-p384', 'rsa-2048'], description: "the CA key's type (default ec-p256); fixed once created" },
  'upstream-ca-cert': {
    type: 'string',
    value: 'FILE',
    complete: 'file',
    description: 'PEM: an upstream CA certificate, then its chain up to the self-signed root; the CA becomes an intermediate under it (with --upstream-ca-key)',
  },
  'upstream-ca-key': { type: 'string', value: 'FILE', complete: 'file', description: "PEM: the upstream CA's private key; the CLI sends it over the TLS admin API, and the CA keeps it sealed" },
  ...TTL_FLAGS,
  ...ENDPOINT_FLAGS,
  ...ADMIN_FLAGS,
});
export const TD_UPDATE_FLAGS = flags({
  ...TTL_FLAGS,
  'upstream-ca-cert': { type: 'string', value: 'FILE', complete: 'file', description: 'PEM: a new (renewed) upstream CA certificate and its chain up to the root; it signs the next CA certificate (with --upstream-ca-key)' },
  'upstream-ca-key': { type: 'string', value: 'FILE', complete: 'file', description: "PEM: the new upstream CA's private key" },
  'jwt-issuer': { type: 'string', value: 'URL', description: 'the iss claim of JWT-SVIDs and the OIDC issuer; "" removes it' },
  ...ENDPOINT_FLAGS,
  ...ADMIN_FLAGS,
});
export const TD_LIST_FLAGS = flags({ ...PAGING, ...ADMIN_FLAGS });
export const TD_SHOW_FLAGS = ADMIN_FLAGS;
export const TD_DELETE_FLAGS = flags({
  force: { type: 'boolean', default: false, description: 'delete even while registration entries exist (they go with it)' },
  ...ADMIN_FLAGS,
});

/** API body fields → the flags that set them, for the CA's 4xx messages. */
const TD_FIELDS = { caKeyType: 'ca-key-type', jwtKeyType: 'jwt-key-type', authorityPrepublishSeconds: 'authority-prepublish', caTtlSeconds: 'ca-ttl', x509SvidTtlSeconds: 'x509-svid-ttl', jwtSvidTtlSeconds: 'jwt-svid-ttl', jwtIssuer: 'jwt-issuer', bundleRefreshHintSeconds: 'bundle-refresh-hint', bundleEndpointListen: 'bundle-endpoint-listen', bundleEndpointProfile: 'bundle-endpoint-profile', bundleEndpointSpiffeId: 'bundle-endpoint-spiffe-id', bundleEndpointUrl: 'bundle-endpoint-url', bundleEndpointCert: 'bundle-endpoint-cert', bundleEndpointKey: 'bundle-endpoint-key', upstreamCaCertificate: 'upstream-ca-cert', upstreamCaKey: 'upstream-ca-key', pageSize: 'page-size', pageToken: 'page-token' };

const td = () => import('../commands/trust-domain.js');

export const trustDomainGroup = group({
  name: 'trust-domain',
  summary: 'create, list, show, update and delete trust domains',
  commands: [
    command({
      name: 'create',
      summary: 'create a trust domain with new CA and JWT signing keys',
      flags: TD_CREATE_FLAGS,
      positionals: [NAME],
      apiFields: apiFieldsFor(TD_CREATE_FLAGS, TD_FIELDS),
      examples: ['cairn trust-domain create example.org --x509-svid-ttl 30m --jwt-issuer https://ca.example/td/example.org --jwt-key-type rsa-2048'],
      run: async (args) => (await td()).tdCreate(args),
    }),
    command({ name: 'list', summary: 'list trust domains', flags: TD_LIST_FLAGS, apiFields: apiFieldsFor(TD_LIST_FLAGS, TD_FIELDS), run: async (args) => (await td()).tdList(args) }),
    command({ name: 'show', summary: "show a trust domain's settings", flags: TD_SHOW_FLAGS, positionals: [NAME], run: async (args) => (await td()).tdShow(args) }),
    command({
      name: 'update',
      summary: "change a trust domain's lifetimes, JWT issuer, JWT key type, pre-publication window or bundle endpoint",
      flags: TD_UPDATE_FLAGS,
      positionals: [NAME],
      apiFields: apiFieldsFor(TD_UPDATE_FLAGS, TD_FIELDS),
      refuse: {
        'ca-key-type':
          'cannot be changed by update: the key type is fixed when the trust domain is created, and its key rotation keeps it; create a new trust domain for another key type (the JWT key type can change: --jwt-key-type)',
      },
      run: async (args) => (await td()).tdUpdate(args),
    }),
    command({ name: 'delete', summary: 'delete a trust domain and its keys', flags: TD_DELETE_FLAGS, positionals: [NAME], run: async (args) => (await td()).tdDelete(args) }),
  ],
});
