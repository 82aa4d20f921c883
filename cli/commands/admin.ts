import type { AdminView, CreatedAdminView } from '../../contract/admin-api.js';
import { parseDuration } from '../../lib/duration.js';
import type { Parsed } from '../flags.js';
import type { ADMIN_CREATE_FLAGS, ADMIN_LIST_FLAGS, ADMIN_REVOKE_FLAGS } from '../specs/admin.js';
import { adminClientFor } from '../client.js';
import { printResult, say, table } from '../output.js';

const scopeOf = (a: AdminView): string => (a.trustDomains === null ? 'all' : a.trustDomains.join(','));

export async function adminCreate({ values }: Parsed<typeof ADMIN_CREATE_FLAGS>): Promise<void> {
  const created = await adminClientFor(values).request<CreatedAdminView>('POST', '/v1/admins', {
    name: values.name,
    role: values.role,
    ...(values['trust-domain'] ? { trustDomains: values['trust-domain'] } : {}),
    // checked by the flag table
    ...(values.ttl !== undefined ? { ttlSeconds: parseDuration(values.ttl) } : {}),
  });
  say(`admin credential ${created.name}: role ${created.role}, scope ${scopeOf(created)}, ${created.expiresAt ? `expires ${created.expiresAt}` : 'no expiry'}; the secret is shown only this once`);
  printResult(values.json, created, () => created.token);
}

export async function adminList({ values }: Parsed<typeof ADMIN_LIST_FLAGS>): Promise<void> {
  const qs = new URLSearchParams();
  if (values['page-size']) qs.set('pageSize', values['page-size']);
  if (values['page-token']) qs.set('pageToken', values['page-token']);
  const page = await adminClientFor(values).request<{ admins: AdminView[]; nextPageToken?: string }>('GET', `/v1/admins${qs.size ? `?${qs}` : ''}`);
  printResult(values.json, page, () =>
    table([
      ['NAME', 'ROLE', 'SCOPE', 'CREATED', 'EXPIRES', 'LAST USED'],
      ...page.admins.map((a) => [a.name, a.role, scopeOf(a), a.createdAt, a.expiresAt ?? 'never', a.lastUsedAt ?? 'never']),
    ]) + (page.nextPageToken ? `\n(next page: --page-token ${page.nextPageToken})` : ''),
  );
}

export async function adminRevoke({ values, positionals }: Parsed<typeof ADMIN_REVOKE_FLAGS>): Promise<void> {
  const name = positionals[0]!;
  await adminClientFor(values).request('DELETE', `/v1/admins/${encodeURIComponent(name)}`);
  say(`admin credential ${name} revoked`);
  printResult(values.json, { revoked: name }, () => name);
}
