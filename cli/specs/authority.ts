import { apiFieldsFor, CHECKS, command, flags, group } from '../flags.js';
import { ADMIN_FLAGS } from './common.js';

const TRUST_DOMAIN = flags({
  'trust-domain': { type: 'string', value: 'TD', required: true, check: CHECKS.trustDomain, description: 'the trust domain whose keys these are' },
});
const KIND = flags({
  kind: { type: 'string', required: true, choices: ['x509', 'jwt'], description: 'x509: a CA certificate and key; jwt: a JWT-SVID signing key' },
});
const ID = flags({
  id: { type: 'string', value: 'ID', required: true, check: CHECKS.nonEmpty, description: 'the authority, as cairn authority list prints it (for JWT keys, the kid)' },
});

export const AUTHORITY_LIST_FLAGS = flags({
  ...TRUST_DOMAIN,
  kind: { type: 'string', choices: ['x509', 'jwt'], description: 'only authorities of this kind' },
  ...ADMIN_FLAGS,
});
export const AUTHORITY_PREPARE_FLAGS = flags({
  ...TRUST_DOMAIN,
  ...KIND,
  'csr-out': {
    type: 'string',
    value: 'FILE',
    complete: 'file',
    description: 'x509, offline upstream: write a PKCS#10 CSR for the new key to FILE for the upstream to sign (then cairn authority import); the key is not published until then',
  },
  ...ADMIN_FLAGS,
});
export const AUTHORITY_IMPORT_FLAGS = flags({
  ...TRUST_DOMAIN,
  cert: { type: 'string', value: 'FILE', required: true, complete: 'file', description: 'PEM: the upstream-signed CA certificate for the key prepared with --csr-out' },
  chain: { type: 'string', value: 'FILE', complete: 'file', description: 'PEM: the certificates above it up to the self-signed root (needed the first time; the root goes into the bundle)' },
  ...ADMIN_FLAGS,
});
export const AUTHORITY_ACTIVATE_FLAGS = flags({
  ...TRUST_DOMAIN,
  ...KIND,
  id: { type: 'string', value: 'ID', check: CHECKS.nonEmpty, description: 'the prepared authority to activate (refused if another one is prepared)' },
  'min-published': {
    type: 'string',
    value: 'DURATION',
    check: CHECKS.duration,
    description: 'wait until the prepared key has been published this long before activating it (default: activate at once)',
  },
  ...ADMIN_FLAGS,
});
export const AUTHORITY_TAINT_FLAGS = flags({ ...TRUST_DOMAIN, ...KIND, ...ID, ...ADMIN_FLAGS });
export const AUTHORITY_REVOKE_FLAGS = flags({
  ...TRUST_DOMAIN,
  ...KIND,
  ...ID,
  force: { type: 'boolean', default: false, description: 'revoke even while unexpired SVIDs it signed are still in use (they stop verifying at once)' },
  ...ADMIN_FLAGS,
});

const FIELDS = { kind: 'kind', id: 'id', minPublishedSeconds: 'min-published', force: 'force', csr: 'csr-out', certificate: 'cert', chain: 'chain' };

const authority = () => import('../commands/authority.js');

export const authorityGroup = group({
  name: 'authority',
  summary: "a trust domain's signing keys: list, prepare, import, activate, taint, revoke",
  description: `The operator's levers over a trust domain's X.509 CA and JWT signing keys (SPIRE's localauthority).
A key is prepared (published in the bundle, signing nothing), active (signing), old (replaced, still
published until it expires), tainted (agents re-issue everything it signed at once) and revoked (out
of the bundle for good). After a compromise: prepare, activate, taint the old key, then revoke it.`,
  commands: [
    command({
      name: 'list',
      summary: 'every CA and JWT key: status, validity, fingerprint, unexpired SVIDs it signed',
      flags: AUTHORITY_LIST_FLAGS,
      apiFields: apiFieldsFor(AUTHORITY_LIST_FLAGS, FIELDS),
      examples: ['cairn authority list --trust-domain example.org'],
      run: async (args) => (await authority()).authorityList(args),
    }),
    command({
      name: 'prepare',
      summary: 'generate a successor key and publish it in the bundle (it signs nothing until activated)',
      flags: AUTHORITY_PREPARE_FLAGS,
      apiFields: apiFieldsFor(AUTHORITY_PREPARE_FLAGS, FIELDS),
      examples: ['cairn authority prepare --trust-domain example.org --kind x509', 'cairn authority prepare --trust-domain example.org --kind x509 --csr-out ca.csr'],
      run: async (args) => (await authority()).authorityPrepare(args),
    }),
    command({
      name: 'import',
      summary: 'import the upstream-signed CA certificate for the key prepared with --csr-out (it is published, and signs once activated)',
      description: `The offline upstream flow: cairn authority prepare --kind x509 --csr-out ca.csr writes a CSR, the upstream
signs it (keeping its extensions: cA, keyCertSign, URI SAN spiffe://<td>), and import checks the certificate
(the prepared key's, a CA, the trust domain's SPIFFE ID, a chain to a self-signed root that outlives it) and
publishes it; the bundle then carries the upstream root. Rotation activates it on its schedule, or
cairn authority activate does at once. From then on rotation makes no self-signed CA for the trust domain:
authority list, the logs and cairn_authority_successor_due_timestamp_seconds say when the next one is due.`,
      flags: AUTHORITY_IMPORT_FLAGS,
      apiFields: apiFieldsFor(AUTHORITY_IMPORT_FLAGS, FIELDS),
      examples: ['cairn authority import --trust-domain example.org --cert ca.pem --chain enterprise-chain.pem'],
      run: async (args) => (await authority()).authorityImport(args),
    }),
    command({
      name: 'activate',
      summary: 'make the prepared key sign now (forced rotation); the active one becomes old',
      description: `Make the prepared key sign now; the active one becomes old and stays published until it expires.
It works at once and says how long the key has been published (verifiers that cache the bundle, such
as Envoy for 10 minutes or istiod for 20, may not know a key published for less); --min-published D
waits until the key has been published that long.`,
      flags: AUTHORITY_ACTIVATE_FLAGS,
      apiFields: apiFieldsFor(AUTHORITY_ACTIVATE_FLAGS, FIELDS),
      examples: ['cairn authority activate --trust-domain example.org --kind x509', 'cairn authority activate --trust-domain example.org --kind jwt --min-published 30m'],
      run: async (args) => (await authority()).authorityActivate(args),
    }),
    command({
      name: 'taint',
      summary: 'taint an old key: agents re-issue every SVID it signed at once and drop its JWT-SVIDs',
      flags: AUTHORITY_TAINT_FLAGS,
      apiFields: apiFieldsFor(AUTHORITY_TAINT_FLAGS, FIELDS),
      examples: ['cairn authority taint --trust-domain example.org --kind x509 --id 4c1f…'],
      run: async (args) => (await authority()).authorityTaint(args),
    }),
    command({
      name: 'revoke',
      summary: 'remove a tainted key from the bundle for good (refused while what it signed is in use, unless --force)',
      flags: AUTHORITY_REVOKE_FLAGS,
      apiFields: apiFieldsFor(AUTHORITY_REVOKE_FLAGS, FIELDS),
      examples: ['cairn authority revoke --trust-domain example.org --kind x509 --id 4c1f…'],
      run: async (args) => (await authority()).authorityRevoke(args),
    }),
  ],
});
