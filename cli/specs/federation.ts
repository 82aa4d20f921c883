import { apiFieldsFor, CHECKS, command, flags, group } from '../flags.js';
import { ADMIN_FLAGS } from './common.js';

const TRUST_DOMAIN = flags({
  'trust-domain': { type: 'string', value: 'TD', required: true, check: CHECKS.trustDomain, description: 'the local trust domain (hosted by this CA) whose workloads trust the foreign one' },
});
const FOREIGN = flags({
  foreign: { type: 'string', value: 'FTD', required: true, check: CHECKS.trustDomain, description: 'the foreign trust domain' },
});

export const FEDERATION_CREATE_FLAGS = flags({
  ...TRUST_DOMAIN,
  ...FOREIGN,
  'bundle-endpoint': { type: 'string', value: 'URL', required: true, description: "the foreign trust domain's bundle endpoint (https, no credentials)" },
  profile: { type: 'string', required: true, choices: ['https_spiffe', 'https_web'], description: 'https_spiffe: the endpoint authenticates with an X.509-SVID; https_web: with a web PKI certificate' },
  'endpoint-spiffe-id': { type: 'string', value: 'ID', check: CHECKS.spiffeId, description: "https_spiffe: the endpoint's SPIFFE ID (default spiffe://FTD/cairn/bundle-endpoint)" },
  'bundle-file': { type: 'string', value: 'FILE', complete: 'file', description: 'https_spiffe: the bootstrap bundle of FTD (SPIFFE bundle JSON or PEM)' },
  ...ADMIN_FLAGS,
  // Here --ca-file is the endpoint's web roots; the connection to the CA trusts --ca-pin, CAIRN_CA_PIN / CAIRN_CA_FILE or endpoints.json.
  'ca-file': { type: 'string', value: 'PEM', complete: 'file', description: "https_web: the roots that authenticate the endpoint (default: the system's); not the admin connection's trust" },
});
export const FEDERATION_LIST_FLAGS = flags({ ...TRUST_DOMAIN, ...ADMIN_FLAGS });
export const FEDERATION_SHOW_FLAGS = flags({ ...TRUST_DOMAIN, ...FOREIGN, ...ADMIN_FLAGS });
export const FEDERATION_REFRESH_FLAGS = flags({ ...TRUST_DOMAIN, ...FOREIGN, ...ADMIN_FLAGS });
export const FEDERATION_DELETE_FLAGS = flags({
  ...TRUST_DOMAIN,
  ...FOREIGN,
  force: { type: 'boolean', default: false, description: 'delete even while entries federate with it (their workloads stop trusting it at once)' },
  ...ADMIN_FLAGS,
});

const FIELDS = {
  foreignTrustDomain: 'foreign',
  bundleEndpointUrl: 'bundle-endpoint',
  profile: 'profile',
  endpointSpiffeId: 'endpoint-spiffe-id',
  bundle: 'bundle-file',
  webRoots: 'ca-file',
  force: 'force',
};

const federation = () => import('../commands/federation.js');

export const federationGroup = group({
  name: 'federation',
  summary: "federation relationships: foreign trust domains' bundle endpoints the CA polls (create, list, show, refresh, delete)",
  description: `A relationship names where a foreign trust domain publishes its bundle (SPIFFE Federation): the
endpoint URL, the profile and, for https_spiffe, the endpoint's SPIFFE ID and a bootstrap bundle. The CA
fetches the bundle at its refresh hint (5 s to 1 h, with jitter; failures retry from 2 s, doubling),
keeps the last good one while the endpoint is away, refuses a document for another trust domain or
with an older spiffe_sequence, and reports the last refresh, the current sequence and the last error.
Entries then federate with the foreign trust domain (cairn entry create --federates-with FTD).`,
  commands: [
    command({
      name: 'create',
      summary: 'start polling a foreign bundle endpoint',
      flags: FEDERATION_CREATE_FLAGS,
      apiFields: apiFieldsFor(FEDERATION_CREATE_FLAGS, FIELDS),
      examples: [
        'cairn federation create --trust-domain example.org --foreign partner.org --bundle-endpoint https://bundle.partner.org:8443/ --profile https_spiffe --bundle-file partner.org.json',
        'cairn federation create --trust-domain example.org --foreign partner.org --bundle-endpoint https://partner.org/bundle --profile https_web',
      ],
      run: async (args) => (await federation()).federationCreate(args),
    }),
    command({
      name: 'list',
      summary: "a trust domain's relationships: endpoint, profile, last refresh, sequence, last error",
      flags: FEDERATION_LIST_FLAGS,
      apiFields: apiFieldsFor(FEDERATION_LIST_FLAGS, FIELDS),
      examples: ['cairn federation list --trust-domain example.org'],
      run: async (args) => (await federation()).federationList(args),
    }),
    command({
      name: 'show',
      summary: 'one relationship and how its refreshes go',
      flags: FEDERATION_SHOW_FLAGS,
      apiFields: apiFieldsFor(FEDERATION_SHOW_FLAGS, FIELDS),
      examples: ['cairn federation show --trust-domain example.org --foreign partner.org'],
      run: async (args) => (await federation()).federationShow(args),
    }),
    command({
      name: 'refresh',
      summary: 'fetch a foreign bundle from its endpoint now (e.g. after a foreign rotation) and report how it went',
      flags: FEDERATION_REFRESH_FLAGS,
      apiFields: apiFieldsFor(FEDERATION_REFRESH_FLAGS, FIELDS),
      examples: ['cairn federation refresh --trust-domain example.org --foreign partner.org'],
      run: async (args) => (await federation()).federationRefresh(args),
    }),
    command({
      name: 'delete',
      summary: 'stop polling and delete the foreign bundle (refused while entries federate with it, unless --force)',
      flags: FEDERATION_DELETE_FLAGS,
      apiFields: apiFieldsFor(FEDERATION_DELETE_FLAGS, FIELDS),
      examples: ['cairn federation delete --trust-domain example.org --foreign partner.org'],
      run: async (args) => (await federation()).federationDelete(args),
    }),
  ],
});
