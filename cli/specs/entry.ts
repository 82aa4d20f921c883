import { TTL_LIMITS } from '../../ca/trust-domains/model.js';
import { apiFieldsFor, CHECKS, command, flags, group } from '../flags.js';
import { ADMIN_FLAGS, PAGING } from './common.js';

const ENTRY_FIELDS = flags({
  'spiffe-id': { type: 'string', value: 'ID', check: CHECKS.spiffeId, description: 'the SPIFFE ID the workload gets' },
  'parent-id': { type: 'string', value: 'ID', check: CHECKS.spiffeId, description: 'the agent (or node alias) whose callers may get it' },
  selector: { type: 'string', multiple: true, value: 'TYPE:VALUE', check: CHECKS.selector, description: 'a selector the caller must have, e.g. unix:uid:1000 or k8s:ns:shop' },
  'x509-svid-ttl': { type: 'string', value: 'DURATION', check: CHECKS.durationBetween(TTL_LIMITS.x509SvidTtlSeconds), description: "X.509-SVID lifetime (default: the trust domain's)" },
  'jwt-svid-ttl': { type: 'string', value: 'DURATION', check: CHECKS.durationBetween(TTL_LIMITS.jwtSvidTtlSeconds), description: "JWT-SVID lifetime (default: the trust domain's)" },
  dns: { type: 'string', multiple: true, value: 'NAME', description: 'a DNS name for the X.509-SVID' },
  hint: { type: 'string', value: 'TEXT', description: 'a hint for workloads holding several SVIDs (e.g. internal, external)' },
  admin: { type: 'boolean', description: "the entry's SVIDs are admin credentials over mTLS, with --admin-role (--admin=false or, on update, --no-admin removes it)" },
  'admin-role': { type: 'string', choices: ['admin', 'operator', 'viewer'], description: "the role an admin entry's SVIDs get (default admin)" },
  'federates-with': { type: 'string', multiple: true, value: 'TD', check: CHECKS.trustDomain, description: "a foreign trust domain whose bundle the workload also gets" },
  'expires-at': { type: 'string', value: 'TIMESTAMP', check: CHECKS.timestamp, description: 'when the entry stops being served (RFC 3339)' },
});

/** Not an entry field: lets create and update store a selector type the CA does not know. */
const ALLOW_UNKNOWN = flags({
  'allow-unknown-selector-type': { type: 'boolean', description: 'store selectors of a type Cairn does not know (otherwise refused as invalid_selector)' },
});

export const ENTRY_CREATE_FLAGS = flags({
  ...ENTRY_FIELDS,
  ...ALLOW_UNKNOWN,
  'spiffe-id': { ...ENTRY_FIELDS['spiffe-id'], required: true, requiredUnless: 'file' },
  'parent-id': { ...ENTRY_FIELDS['parent-id'], required: true, requiredUnless: 'file' },
  selector: { ...ENTRY_FIELDS.selector, required: true, requiredUnless: 'file' },
  file: {
    type: 'string',
    value: 'FILE',
    complete: 'file',
    description: 'create many entries from a JSON file: {"entries": [...]} or an array, each item as the API\'s entry body; - reads stdin',
  },
  ...ADMIN_FLAGS,
});
export const ENTRY_UPDATE_FLAGS = flags({
  ...ENTRY_FIELDS,
  'no-admin': { type: 'boolean', description: "the entry's SVIDs stop being admin credentials (as --admin=false)" },
  ...ALLOW_UNKNOWN,
  ...ADMIN_FLAGS,
});
export const ENTRY_LIST_FLAGS = flags({
  'trust-domain': { type: 'string', value: 'TD', check: CHECKS.trustDomain, description: 'only entries of this trust domain' },
  'parent-id': { ...ENTRY_FIELDS['parent-id'], description: 'only entries with this parent' },
  'spiffe-id': { ...ENTRY_FIELDS['spiffe-id'], description: 'only entries for this SPIFFE ID' },
  selector: { ...ENTRY_FIELDS.selector, description: 'only entries having this selector (all given must match)' },
  ...PAGING,
  ...ADMIN_FLAGS,
});
export const ENTRY_ID_FLAGS = ADMIN_FLAGS;

/** API fields → flags, for the CA's 4xx messages. */
const ENTRY_API_FIELDS = {
  spiffeId: 'spiffe-id',
  parentId: 'parent-id',
  selectors: 'selector',
  selector: 'selector',
  x509SvidTtl: 'x509-svid-ttl',
  jwtSvidTtl: 'jwt-svid-ttl',
  dnsNames: 'dns',
  hint: 'hint',
  admin: 'admin',
  adminRole: 'admin-role',
  federatesWith: 'federates-with',
  expiresAt: 'expires-at',
  allowUnknownSelectorTypes: 'allow-unknown-selector-type',
  trustDomain: 'trust-domain',
  pageSize: 'page-size',
  pageToken: 'page-token',
};

const ID = { name: 'ID', description: 'the entry ID, as cairn entry list prints it', required: true, check: CHECKS.nonEmpty } as const;
const entry = () => import('../commands/enrollment.js');

export const entryGroup = group({
  name: 'entry',
  summary: 'registration entries: which workload gets which SPIFFE ID',
  commands: [
    command({
      name: 'create',
      summary: 'register a workload: callers with all these selectors under the parent get the SPIFFE ID',
      flags: ENTRY_CREATE_FLAGS,
      apiFields: apiFieldsFor(ENTRY_CREATE_FLAGS, ENTRY_API_FIELDS),
      examples: [
        'cairn entry create --spiffe-id spiffe://example.org/web --parent-id spiffe://example.org/cairn/agent/local --selector unix:uid:1000',
        'cairn entry create --spiffe-id spiffe://example.org/ns/shop/sa/cart --parent-id ID --selector k8s:ns:shop --selector k8s:sa:cart',
        'cairn entry create --file entries.json',
      ],
      run: async (args) => (await entry()).entryCreate(args),
    }),
    command({ name: 'list', summary: 'list entries, filtered by trust domain, parent, SPIFFE ID or selectors', flags: ENTRY_LIST_FLAGS, apiFields: apiFieldsFor(ENTRY_LIST_FLAGS, ENTRY_API_FIELDS), run: async (args) => (await entry()).entryList(args) }),
    command({ name: 'show', summary: 'show one entry', flags: ENTRY_ID_FLAGS, positionals: [ID], run: async (args) => (await entry()).entryShow(args) }),
    command({
      name: 'update',
      summary: 'change an entry (the flags given replace those fields)',
      flags: ENTRY_UPDATE_FLAGS,
      positionals: [ID],
      apiFields: apiFieldsFor(ENTRY_UPDATE_FLAGS, ENTRY_API_FIELDS),
      run: async (args) => (await entry()).entryUpdate(args),
    }),
    command({ name: 'delete', summary: 'delete an entry; agents stop serving it', flags: ENTRY_ID_FLAGS, positionals: [ID], run: async (args) => (await entry()).entryDelete(args) }),
  ],
});
