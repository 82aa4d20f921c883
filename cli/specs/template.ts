import { TTL_LIMITS } from '../../ca/trust-domains/model.js';
import { apiFieldsFor, CHECKS, command, flags, group } from '../flags.js';
import { ADMIN_FLAGS, PAGING } from './common.js';

export const TEMPLATE_CREATE_FLAGS = flags({
  'trust-domain': { type: 'string', value: 'TD', required: true, check: CHECKS.trustDomain, description: 'the trust domain the template belongs to ({td} in the template)' },
  'parent-id': { type: 'string', value: 'ID', required: true, check: CHECKS.spiffeId, description: 'the agent (or node alias) whose callers it serves' },
  'spiffe-id-template': {
    type: 'string',
    value: 'T',
    required: true,
    description: "the SPIFFE ID, with placeholders from the caller's selectors: spiffe://{td}/ns/{k8s:ns}/sa/{k8s:sa}, spiffe://{td}/uid/{unix:uid}",
  },
  selector: { type: 'string', multiple: true, value: 'TYPE:VALUE', check: CHECKS.selector, description: 'a selector the caller must have (none: every caller of the parent), e.g. k8s:ns:payments' },
  'dns-template': { type: 'string', multiple: true, value: 'T', description: 'a DNS name for the X.509-SVID, with the same placeholders, e.g. {k8s:sa}.{k8s:ns}.svc' },
  'x509-svid-ttl': { type: 'string', value: 'DURATION', check: CHECKS.durationBetween(TTL_LIMITS.x509SvidTtlSeconds), description: "X.509-SVID lifetime (default: the trust domain's)" },
  'jwt-svid-ttl': { type: 'string', value: 'DURATION', check: CHECKS.durationBetween(TTL_LIMITS.jwtSvidTtlSeconds), description: "JWT-SVID lifetime (default: the trust domain's)" },
  hint: { type: 'string', value: 'TEXT', description: 'a hint for workloads holding several SVIDs (e.g. internal, external)' },
  admin: { type: 'boolean', description: "the template's SVIDs are admin credentials over mTLS, with --admin-role (admin role only)" },
  'admin-role': { type: 'string', choices: ['admin', 'operator', 'viewer'], description: "the role an admin template's SVIDs get (default admin)" },
  'federates-with': { type: 'string', multiple: true, value: 'TD', check: CHECKS.trustDomain, description: 'a foreign trust domain whose bundle the workload also gets' },
  'allow-unknown-selector-type': { type: 'boolean', description: 'accept selectors and placeholders of a type Cairn does not know (otherwise refused)' },
  ...ADMIN_FLAGS,
});
export const TEMPLATE_LIST_FLAGS = flags({
  'trust-domain': { type: 'string', value: 'TD', check: CHECKS.trustDomain, description: 'only templates of this trust domain' },
  'parent-id': { type: 'string', value: 'ID', check: CHECKS.spiffeId, description: 'only templates with this parent' },
  ...PAGING,
  ...ADMIN_FLAGS,
});
export const TEMPLATE_ID_FLAGS = ADMIN_FLAGS;

/** API fields → flags, for the CA's 4xx messages. */
const TEMPLATE_API_FIELDS = {
  trustDomain: 'trust-domain',
  parentId: 'parent-id',
  spiffeIdTemplate: 'spiffe-id-template',
  selectors: 'selector',
  dnsTemplates: 'dns-template',
  x509SvidTtl: 'x509-svid-ttl',
  jwtSvidTtl: 'jwt-svid-ttl',
  hint: 'hint',
  admin: 'admin',
  adminRole: 'admin-role',
  federatesWith: 'federates-with',
  allowUnknownSelectorTypes: 'allow-unknown-selector-type',
  pageSize: 'page-size',
  pageToken: 'page-token',
};

const ID = { name: 'ID', description: 'the template ID, as cairn template list prints it', required: true, check: CHECKS.nonEmpty } as const;
const template = () => import('../commands/template.js');

export const templateGroup = group({
  name: 'template',
  summary: 'workload identity templates: one rule gives every matching caller an ID from its selectors',
  commands: [
    command({
      name: 'create',
      summary: 'serve every caller of the parent that has these selectors (and matches no entry) with the rendered SPIFFE ID',
      flags: TEMPLATE_CREATE_FLAGS,
      apiFields: apiFieldsFor(TEMPLATE_CREATE_FLAGS, TEMPLATE_API_FIELDS),
      examples: [
        "cairn template create --trust-domain example.org --parent-id spiffe://example.org/cairn/agent/local --spiffe-id-template 'spiffe://{td}/uid/{unix:uid}'",
        "cairn template create --trust-domain example.org --parent-id ID --selector k8s:ns:payments --spiffe-id-template 'spiffe://{td}/ns/{k8s:ns}/sa/{k8s:sa}'",
      ],
      run: async (args) => (await template()).templateCreate(args),
    }),
    command({ name: 'list', summary: 'list templates, filtered by trust domain or parent', flags: TEMPLATE_LIST_FLAGS, apiFields: apiFieldsFor(TEMPLATE_LIST_FLAGS, TEMPLATE_API_FIELDS), run: async (args) => (await template()).templateList(args) }),
    command({ name: 'show', summary: 'show one template', flags: TEMPLATE_ID_FLAGS, positionals: [ID], run: async (args) => (await template()).templateShow(args) }),
    command({ name: 'delete', summary: 'delete a template; agents stop serving its identities', flags: TEMPLATE_ID_FLAGS, positionals: [ID], run: async (args) => (await template()).templateDelete(args) }),
  ],
});
