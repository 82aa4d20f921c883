import type { AdminView, CreatedAdminView } from '../../contract/admin-api.js';
import { parseDuration } from '../../lib/duration.js';
import { parse, UsageError } from '../args.js';
import { adminClientFor } from '../client.js';
import { printResult, say, table } from '../output.js';

export const ADMIN_USAGE = `cairn admin create --name NAME --role admin|operator|viewer [--trust-domain TD …] [--ttl D]
                   (prints the secret once, alone on stdout; no --trust-domain: every trust domain; no --ttl: no expiry)
cairn admin list
cairn admin revoke NAME       (at once, on every replica)
Admin verbs authenticate with the admin token, or with an admin SVID over TLS: --svid-dir DIR (svid.pem, svid.key as
cairn svid fetch --write leaves them) or --svid-from-socket (from the Workload API: SPIFFE_ENDPOINT_SOCKET, else cairn up's).`;

const OPTIONS = {
  name: { type: 'string' },
  role: { type: 'string' },
  'trust-domain': { type: 'string', multiple: true },
  ttl: { type: 'string' },
  'page-size': { type: 'string' },
  'page-token': { type: 'string' },
} as const;

const ROLES = ['admin', 'operator', 'viewer'];

const scopeOf = (a: AdminView): string => (a.trustDomains === null ? 'all' : a.trustDomains.join(','));

export async function adminCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, OPTIONS);
  const [verb, name] = positionals;
  switch (verb) {
    case 'create': {
      if (!values.name) throw new UsageError('admin create needs --name NAME');
      if (!values.role) throw new UsageError('admin create needs --role admin|operator|viewer');
      if (!ROLES.includes(values.role)) throw new UsageError(`--role must be admin, operator or viewer, got "${values.role}"`);
      let ttlSeconds: number | undefined;
      if (values.ttl !== undefined) {
        try {
          ttlSeconds = parseDuration(values.ttl);
        } catch {
          throw new UsageError(`--ttl must be a duration like 1h, 30d or 90m, got "${values.ttl}"`);
        }
      }
      const created = await adminClientFor(values).request<CreatedAdminView>('POST', '/v1/admins', {
        name: values.name,
        role: values.role,
        ...(values['trust-domain'] ? { trustDomains: values['trust-domain'] } : {}),
        ...(ttlSeconds !== undefined ? { ttlSeconds } : {}),
      });
      say(`admin credential ${created.name}: role ${created.role}, scope ${scopeOf(created)}, ${created.expiresAt ? `expires ${created.expiresAt}` : 'no expiry'}; the secret is shown only this once`);
      return printResult(values.json, created, () => created.token);
    }
    case 'list': {
      const qs = new URLSearchParams();
      if (values['page-size']) qs.set('pageSize', values['page-size']);
      if (values['page-token']) qs.set('pageToken', values['page-token']);
      const page = await adminClientFor(values).request<{ admins: AdminView[]; nextPageToken?: string }>('GET', `/v1/admins${qs.size ? `?${qs}` : ''}`);
      return printResult(values.json, page, () =>
        table([
          ['NAME', 'ROLE', 'SCOPE', 'CREATED', 'EXPIRES', 'LAST USED'],
          ...page.admins.map((a) => [a.name, a.role, scopeOf(a), a.createdAt, a.expiresAt ?? 'never', a.lastUsedAt ?? 'never']),
        ]) + (page.nextPageToken ? `\n(next page: --page-token ${page.nextPageToken})` : ''),
      );
    }
    case 'revoke': {
      if (!name) throw new UsageError('admin revoke needs the credential\'s NAME');
      await adminClientFor(values).request('DELETE', `/v1/admins/${encodeURIComponent(name)}`);
      say(`admin credential ${name} revoked`);
      return printResult(values.json, { revoked: name }, () => name);
    }
    default:
      throw new UsageError(ADMIN_USAGE);
  }
}
