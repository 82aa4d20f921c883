import { TTL_LIMITS } from '../../ca/trust-domains/model.js';
import { CHECKS, command, flags, group } from '../flags.js';
import { ADMIN_FLAGS, JSON_OUTPUT, PAGING, SOCKET_FLAGS } from './common.js';

export const X509_MINT_FLAGS = flags({
  'spiffe-id': { type: 'string', value: 'ID', required: true, check: CHECKS.spiffeId, description: 'the SPIFFE ID to issue' },
  ttl: { type: 'string', value: 'DURATION', check: CHECKS.durationBetween(TTL_LIMITS.x509SvidTtlSeconds), description: "lifetime (default: the trust domain's X.509-SVID TTL)" },
  dns: { type: 'string', multiple: true, value: 'NAME', description: 'a DNS name for the certificate' },
  'key-type': { type: 'string', choices: ['ec-p256', 'ec-p384', 'rsa-2048'], default: 'ec-p256', description: 'the key generated here (it never leaves this machine)' },
  write: { type: 'string', value: 'DIR', complete: 'dir', description: 'write svid.pem, svid.key (0600) and bundle.pem to DIR' },
  'print-key': { type: 'boolean', default: false, description: 'print the certificate chain and the PRIVATE KEY as PEM on stdout' },
  ...ADMIN_FLAGS,
});

export const JWT_MINT_FLAGS = flags({
  'spiffe-id': { type: 'string', value: 'ID', required: true, check: CHECKS.spiffeId, description: 'the SPIFFE ID (sub claim)' },
  audience: { type: 'string', multiple: true, value: 'AUD', required: true, check: CHECKS.nonEmpty, description: 'an audience (aud claim)' },
  ttl: { type: 'string', value: 'DURATION', check: CHECKS.durationBetween(TTL_LIMITS.jwtSvidTtlSeconds), description: "lifetime (default: the trust domain's JWT-SVID TTL)" },
  ...ADMIN_FLAGS,
});

export const SVID_LIST_FLAGS = flags({
  'trust-domain': { type: 'string', value: 'TD', check: CHECKS.trustDomain, description: 'only SVIDs of this trust domain' },
  'spiffe-id-prefix': { type: 'string', value: 'PREFIX', description: 'only SVIDs whose SPIFFE ID starts with PREFIX' },
  serial: { type: 'string', value: 'HEX', check: CHECKS.serial, description: 'only the SVID with this serial number (hex, either case)' },
  'expiring-before': { type: 'string', value: 'TIMESTAMP', check: CHECKS.timestamp, description: 'only SVIDs expiring before this time (RFC 3339)' },
  ...PAGING,
  ...ADMIN_FLAGS,
});

export const SVID_REVOKE_FLAGS = flags({
  serial: { type: 'string', value: 'HEX', check: CHECKS.serial, description: 'the SVID to revoke, by serial number (hex, either case; cairn svid list prints them)' },
  'spiffe-id': { type: 'string', value: 'ID', check: CHECKS.spiffeId, description: 'revoke every current X.509-SVID of this SPIFFE ID' },
  'trust-domain': { type: 'string', value: 'TD', check: CHECKS.trustDomain, description: "the SVID's trust domain (needed with --serial by a credential scoped to some trust domains)" },
  reason: { type: 'string', value: 'TEXT', description: 'why, recorded with the revocation' },
  ...ADMIN_FLAGS,
});

export const SVID_REVOKED_FLAGS = flags({
  'trust-domain': { type: 'string', value: 'TD', required: true, check: CHECKS.trustDomain, description: 'the trust domain whose revoked SVIDs to list' },
  ...ADMIN_FLAGS,
});

export const SVID_FETCH_FLAGS = flags({
  'spiffe-id': { type: 'string', value: 'ID', check: CHECKS.spiffeId, description: 'which of the SVIDs the caller holds (default: the first)' },
  write: { type: 'string', value: 'DIR', complete: 'dir', description: 'write svid.pem, svid.key (0600), bundle.pem, crl.pem and federated/<td>.pem to DIR' },
  'print-key': { type: 'boolean', default: false, description: 'print the certificate chain, the PRIVATE KEY and the bundle as PEM on stdout' },
  ...JSON_OUTPUT,
  ...SOCKET_FLAGS,
});

export const SVID_WATCH_FLAGS = flags({
  'spiffe-id': SVID_FETCH_FLAGS['spiffe-id'],
  write: { ...SVID_FETCH_FLAGS.write, required: true },
  exec: { type: 'string', value: 'CMD', description: 'a shell command to run after each update (e.g. nginx -s reload)' },
  ...SOCKET_FLAGS,
});

export const JWT_FETCH_FLAGS = flags({
  audience: { type: 'string', multiple: true, value: 'AUD', required: true, check: CHECKS.nonEmpty, description: 'an audience the JWT-SVID is for' },
  'spiffe-id': { type: 'string', value: 'ID', check: CHECKS.spiffeId, description: 'which of the identities the caller holds (default: all)' },
  ...JSON_OUTPUT,
  ...SOCKET_FLAGS,
});

export const JWT_VALIDATE_FLAGS = flags({
  audience: { type: 'string', value: 'AUD', required: true, check: CHECKS.nonEmpty, description: 'the audience the token must carry' },
  ...JSON_OUTPUT,
  ...SOCKET_FLAGS,
});

const mint = () => import('../commands/mint.js');
const workload = () => import('../commands/workload.js');
const revoke = () => import('../commands/revoke.js');

export const x509Group = group({
  name: 'x509',
  summary: 'mint X.509-SVIDs through the admin API',
  commands: [
    command({
      name: 'mint',
      summary: 'issue an X.509-SVID for a key generated here (only a CSR is sent)',
      description: 'Issue an X.509-SVID for a key generated on this machine. Give --write DIR for files, or --print-key for PEM on stdout.',
      flags: X509_MINT_FLAGS,
      apiFields: { spiffeId: 'spiffe-id', ttlSeconds: 'ttl', dnsNames: 'dns' },
      examples: ['cairn x509 mint --spiffe-id spiffe://example.org/web --dns web.example.org --write ./web'],
      run: async (args) => (await mint()).x509Mint(args),
    }),
  ],
});

export const jwtGroup = group({
  name: 'jwt',
  summary: 'mint JWT-SVIDs (admin API); fetch and validate them (Workload API)',
  commands: [
    command({
      name: 'mint',
      summary: 'print a JWT-SVID minted by the CA',
      flags: JWT_MINT_FLAGS,
      apiFields: { spiffeId: 'spiffe-id', audience: 'audience', ttlSeconds: 'ttl' },
      run: async (args) => (await mint()).jwtMint(args),
    }),
    command({ name: 'fetch', summary: "print this caller's JWT-SVIDs from the Workload API", flags: JWT_FETCH_FLAGS, run: async (args) => (await workload()).jwtFetch(args) }),
    command({
      name: 'validate',
      summary: 'validate a JWT-SVID through the Workload API; print its SPIFFE ID and claims',
      flags: JWT_VALIDATE_FLAGS,
      positionals: [{ name: 'TOKEN', description: 'the JWT-SVID', required: true }],
      run: async (args) => (await workload()).jwtValidate(args),
    }),
  ],
});

export const svidGroup = group({
  name: 'svid',
  summary: 'fetch and watch X.509-SVIDs (Workload API); search the issued inventory and revoke (admin API)',
  commands: [
    command({
      name: 'fetch',
      summary: "fetch this caller's X.509-SVID: a summary, files (--write) or PEM (--print-key)",
      description: `Fetch this caller's X.509-SVID from the Workload API (like spire-agent api fetch x509).
Prints a summary (SPIFFE ID, serial, expiry, hint); --write DIR writes the files; --print-key prints the PEMs, key included.`,
      flags: SVID_FETCH_FLAGS,
      examples: ['cairn svid fetch', 'cairn svid fetch --write ./id', 'cairn svid fetch --print-key > bundle-and-key.pem'],
      run: async (args) => (await workload()).svidFetch(args),
    }),
    command({
      name: 'watch',
      summary: 'keep svid.pem, svid.key, bundle.pem and crl.pem current, running a command after each update',
      flags: SVID_WATCH_FLAGS,
      examples: ["cairn svid watch --write ./id --exec 'nginx -s reload'"],
      run: async (args) => (await workload()).svidWatch(args),
    }),
    command({
      name: 'list',
      summary: 'search the inventory of issued X.509-SVIDs',
      flags: SVID_LIST_FLAGS,
      apiFields: { trustDomain: 'trust-domain', spiffeIdPrefix: 'spiffe-id-prefix', serial: 'serial', expiringBefore: 'expiring-before', pageSize: 'page-size', pageToken: 'page-token' },
      run: async (args) => (await mint()).svidList(args),
    }),
    command({
      name: 'revoke',
      summary: 'revoke an X.509-SVID (--serial) or every current SVID of an ID (--spiffe-id): refused for renewal, replaced by its agent, listed in the CRL',
      description: `Revoke one X.509-SVID by serial, or every current X.509-SVID of a SPIFFE ID. The CA refuses it for mTLS and renewal
(a device must be bootstrapped again), the agent holding it replaces it at once, and the trust domain's CRL
(/td/<td>/crl, /td/<td>/crl.pem, and the Workload API's crl field) lists it until it expires.`,
      flags: SVID_REVOKE_FLAGS,
      apiFields: { serial: 'serial', spiffeId: 'spiffe-id', trustDomain: 'trust-domain', reason: 'reason' },
      examples: ['cairn svid revoke --serial 5f0c… --reason "key leaked"', 'cairn svid revoke --spiffe-id spiffe://example.org/web --reason compromised'],
      run: async (args) => (await revoke()).svidRevoke(args),
    }),
    command({
      name: 'revoked',
      summary: "the revoked X.509-SVIDs of a trust domain that have not expired (what its CRL lists)",
      flags: SVID_REVOKED_FLAGS,
      apiFields: { trustDomain: 'trust-domain' },
      run: async (args) => (await revoke()).svidRevoked(args),
    }),
  ],
});
