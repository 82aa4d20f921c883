import { apiFieldsFor, CHECKS, command, flags, group } from '../flags.js';
import { ADMIN_FLAGS } from './common.js';

const TRUST_DOMAIN = flags({
  'trust-domain': { type: 'string', value: 'TD', required: true, check: CHECKS.trustDomain, description: 'the local trust domain (hosted by this CA)' },
});
const FOREIGN = flags({
  foreign: { type: 'string', value: 'FTD', required: true, check: CHECKS.trustDomain, description: 'the foreign trust domain whose bundle this is' },
});

export const BUNDLE_SHOW_FLAGS = flags({
  ...TRUST_DOMAIN,
  foreign: { type: 'string', value: 'FTD', check: CHECKS.trustDomain, description: "a foreign trust domain's bundle as TD holds it (default: TD's own bundle)" },
  format: { type: 'string', choices: ['pem', 'spiffe'], default: 'pem', description: 'pem: the X.509 authorities as PEM; spiffe: the SPIFFE bundle (JWKS JSON, JWT keys included)' },
  ...ADMIN_FLAGS,
});
export const BUNDLE_SET_FLAGS = flags({
  ...TRUST_DOMAIN,
  ...FOREIGN,
  file: { type: 'string', value: 'FILE', required: true, complete: 'file', description: "the foreign trust domain's bundle: SPIFFE bundle JSON or PEM CA certificates (told apart by content)" },
  ...ADMIN_FLAGS,
});
export const BUNDLE_DELETE_FLAGS = flags({
  ...TRUST_DOMAIN,
  ...FOREIGN,
  force: { type: 'boolean', default: false, description: 'delete even while entries federate with it (their workloads stop trusting it at once)' },
  ...ADMIN_FLAGS,
});
export const BUNDLE_LIST_FLAGS = flags({ ...TRUST_DOMAIN, ...ADMIN_FLAGS });

const FIELDS = { bundle: 'file', force: 'force', trustDomain: 'trust-domain', foreign: 'foreign' };

const bundle = () => import('../commands/bundle.js');

export const bundleGroup = group({
  name: 'bundle',
  summary: "trust bundles: a trust domain's own, and foreign trust domains' for federation (show, set, list, delete)",
  description: `Trust bundles (SPIFFE federation). A local trust domain holds the bundles of foreign trust domains
its workloads may trust; an entry lists those it federates with (cairn entry create --federates-with FTD),
and its workloads receive them from the Workload API (federated_bundles, FetchX509Bundles,
FetchJWTBundles, ValidateJWTSVID; cairn svid watch writes federated/<td>.pem). A trust domain hosted by
this CA needs no bundle set: entries may federate with it directly.`,
  commands: [
    command({
      name: 'show',
      summary: "print a trust domain's own bundle, or a foreign one it holds (--foreign)",
      flags: BUNDLE_SHOW_FLAGS,
      apiFields: apiFieldsFor(BUNDLE_SHOW_FLAGS, FIELDS),
      examples: ['cairn bundle show --trust-domain example.org > example.org.pem', 'cairn bundle show --trust-domain example.org --format spiffe > example.org.json', 'cairn bundle show --trust-domain example.org --foreign partner.org'],
      run: async (args) => (await bundle()).bundleShow(args),
    }),
    command({
      name: 'set',
      summary: "set (or replace) a foreign trust domain's static bundle; refused if older (spiffe_sequence) than the one held",
      flags: BUNDLE_SET_FLAGS,
      apiFields: apiFieldsFor(BUNDLE_SET_FLAGS, FIELDS),
      examples: ['cairn bundle set --trust-domain example.org --foreign partner.org --file partner.org.json'],
      run: async (args) => (await bundle()).bundleSet(args),
    }),
    command({
      name: 'list',
      summary: 'the foreign bundles a trust domain holds',
      flags: BUNDLE_LIST_FLAGS,
      apiFields: apiFieldsFor(BUNDLE_LIST_FLAGS, FIELDS),
      examples: ['cairn bundle list --trust-domain example.org'],
      run: async (args) => (await bundle()).bundleList(args),
    }),
    command({
      name: 'delete',
      summary: 'delete a foreign bundle (refused while entries federate with it, unless --force)',
      flags: BUNDLE_DELETE_FLAGS,
      apiFields: apiFieldsFor(BUNDLE_DELETE_FLAGS, FIELDS),
      examples: ['cairn bundle delete --trust-domain example.org --foreign partner.org'],
      run: async (args) => (await bundle()).bundleDelete(args),
    }),
  ],
});
