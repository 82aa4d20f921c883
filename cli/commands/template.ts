import type { TemplateView } from '../../contract/template-api.js';
import { formatDuration, parseDuration } from '../../lib/duration.js';
import { UsageError, type Parsed } from '../flags.js';
import type { TEMPLATE_CREATE_FLAGS, TEMPLATE_ID_FLAGS, TEMPLATE_LIST_FLAGS } from '../specs/template.js';
import { adminClientFor } from '../client.js';
import { printResult, table } from '../output.js';

function describeTemplate(t: TemplateView): string {
  return table([
    ['id', t.id],
    ['trust domain', t.trustDomain],
    ['spiffe id template', t.spiffeIdTemplate],
    ['parent id', t.parentId],
    ['selectors', t.selectors.join(' ') || '- (every caller of the parent)'],
    ['dns templates', t.dnsTemplates.join(' ') || '-'],
    ['x509-svid ttl', t.x509SvidTtl === null ? 'trust domain default' : formatDuration(t.x509SvidTtl)],
    ['jwt-svid ttl', t.jwtSvidTtl === null ? 'trust domain default' : formatDuration(t.jwtSvidTtl)],
    ['hint', t.hint ?? '-'],
    ['admin', t.admin ? `yes, role ${t.adminRole}` : 'no'],
    ['federates with', t.federatesWith.join(' ') || '-'],
    ['revision', String(t.revision)],
  ]);
}

export async function templateCreate({ values, command }: Parsed<typeof TEMPLATE_CREATE_FLAGS>): Promise<void> {
  if (values.admin === false && values['admin-role'] !== undefined) throw new UsageError('--admin-role is for admin templates: drop it or --admin', command);
  const t = await adminClientFor(values).request<TemplateView>('POST', '/v1/templates', {
    trustDomain: values['trust-domain'],
    parentId: values['parent-id'],
    spiffeIdTemplate: values['spiffe-id-template'],
    ...(values.selector ? { selectors: values.selector } : {}),
    ...(values['dns-template'] ? { dnsTemplates: values['dns-template'] } : {}),
    ...(values['x509-svid-ttl'] ? { x509SvidTtl: parseDuration(values['x509-svid-ttl']) } : {}),
    ...(values['jwt-svid-ttl'] ? { jwtSvidTtl: parseDuration(values['jwt-svid-ttl']) } : {}),
    ...(values.hint !== undefined ? { hint: values.hint } : {}),
    ...(values.admin !== undefined ? { admin: values.admin } : {}),
    ...(values['admin-role'] !== undefined ? { adminRole: values['admin-role'] } : {}),
    ...(values['federates-with'] ? { federatesWith: values['federates-with'] } : {}),
    ...(values['allow-unknown-selector-type'] ? { allowUnknownSelectorTypes: true } : {}),
  });
  printResult(values.json, t, () => t.id);
}

export async function templateList({ values }: Parsed<typeof TEMPLATE_LIST_FLAGS>): Promise<void> {
  const qs = new URLSearchParams();
  if (values['trust-domain']) qs.set('trustDomain', values['trust-domain']);
  if (values['parent-id']) qs.set('parentId', values['parent-id']);
  if (values['page-size']) qs.set('pageSize', values['page-size']);
  if (values['page-token']) qs.set('pageToken', values['page-token']);
  const page = await adminClientFor(values).request<{ templates: TemplateView[]; nextPageToken?: string }>('GET', `/v1/templates?${qs}`);
  printResult(values.json, page, () =>
    table([['ID', 'SPIFFE ID TEMPLATE', 'PARENT', 'SELECTORS'], ...page.templates.map((t) => [t.id, t.spiffeIdTemplate, t.parentId, t.selectors.join(' ') || '-'])]) +
    (page.nextPageToken ? `\n(next page: --page-token ${page.nextPageToken})` : ''),
  );
}

export async function templateShow({ values, positionals }: Parsed<typeof TEMPLATE_ID_FLAGS>): Promise<void> {
  const t = await adminClientFor(values).request<TemplateView>('GET', `/v1/templates/${encodeURIComponent(positionals[0]!)}`);
  printResult(values.json, t, () => describeTemplate(t));
}

export async function templateDelete({ values, positionals }: Parsed<typeof TEMPLATE_ID_FLAGS>): Promise<void> {
  const id = positionals[0]!;
  await adminClientFor(values).request('DELETE', `/v1/templates/${encodeURIComponent(id)}`);
  printResult(values.json, { deleted: id }, () => id);
}
