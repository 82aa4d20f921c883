import { CHECKS, command, flags, group } from '../flags.js';
import { ADMIN_FLAGS, PAGING } from './common.js';

export const ADMIN_CREATE_FLAGS = flags({
  name: { type: 'string', value: 'NAME', required: true, check: CHECKS.nonEmpty, description: 'the credential\'s name, unique; shown as the actor in the records of its requests' },
  role: { type: 'string', required: true, choices: ['admin', 'operator', 'viewer'], description: 'admin: everything; operator: entries, tokens, agents, SVIDs; viewer: read only' },
  'trust-domain': { type: 'string', multiple: true, value: 'TD', check: CHECKS.trustDomain, description: 'limit it to this trust domain (default: every trust domain)' },
  ttl: { type: 'string', value: 'DURATION', check: CHECKS.duration, description: 'how long it stays valid (default: no expiry)' },
  ...ADMIN_FLAGS,
});
export const ADMIN_LIST_FLAGS = flags({ ...PAGING, ...ADMIN_FLAGS });
export const ADMIN_REVOKE_FLAGS = ADMIN_FLAGS;

const admin = () => import('../commands/admin.js');

export const adminGroup = group({
  name: 'admin',
  summary: 'named admin credentials: create (the secret once), list, revoke',
  description: `Named admin credentials with a role and an optional trust-domain scope and expiry. Admin verbs authenticate
with the admin token, or with an admin SVID over TLS: --svid-dir DIR or --svid-from-socket.`,
  commands: [
    command({
      name: 'create',
      summary: 'create a named admin credential; its secret is printed once, alone on stdout',
      flags: ADMIN_CREATE_FLAGS,
      apiFields: { name: 'name', role: 'role', trustDomains: 'trust-domain', ttlSeconds: 'ttl' },
      examples: ['cairn admin create --name ci --role operator --trust-domain example.org --ttl 30d > ci-token'],
      run: async (args) => (await admin()).adminCreate(args),
    }),
    command({ name: 'list', summary: 'admin credentials: role, scope, expiry, last use (never the secret)', flags: ADMIN_LIST_FLAGS, apiFields: { pageSize: 'page-size', pageToken: 'page-token' }, run: async (args) => (await admin()).adminList(args) }),
    command({
      name: 'revoke',
      summary: 'revoke a credential, at once on every replica',
      flags: ADMIN_REVOKE_FLAGS,
      positionals: [{ name: 'NAME', description: 'the credential\'s name, as cairn admin list prints it', required: true, check: CHECKS.nonEmpty }],
      run: async (args) => (await admin()).adminRevoke(args),
    }),
  ],
});
