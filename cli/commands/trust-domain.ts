import type { TrustDomainView } from '../../contract/admin-api.js';
import { parseDuration, formatDuration } from '../../lib/duration.js';
import { requireOneOf, UsageError, type Parsed, type Values } from '../flags.js';
import type { TD_CREATE_FLAGS, TD_DELETE_FLAGS, TD_LIST_FLAGS, TD_SHOW_FLAGS, TD_UPDATE_FLAGS } from '../specs/trust-domain.js';
import { adminClientFor, readInputFile } from '../client.js';
import { printResult, table } from '../output.js';

function describe(td: TrustDomainView): string {
  return table([
    ['name', td.name],
    ['ca key type', td.caKeyType],
    ['jwt key type', td.jwtKeyType],
    ['ca ttl', formatDuration(td.caTtlSeconds)],
    ['x509-svid ttl', formatDuration(td.x509SvidTtlSeconds)],
    ['jwt-svid ttl', formatDuration(td.jwtSvidTtlSeconds)],
    ['jwt issuer', td.jwtIssuer ?? '-'],
    ['authority prepublish', formatDuration(td.authorityPrepublishSeconds)],
    ['bundle sequence', String(td.bundleSequence)],
    ['bundle refresh hint', formatDuration(td.bundleRefreshHintSeconds)],
    ...(td.bundleEndpointUrl
      ? [
        ['bundle endpoint', `${td.bundleEndpointUrl} (${td.bundleEndpointProfile}, listening on ${td.bundleEndpointListen})`],
        td.bundleEndpointProfile === 'https_web' ? ['bundle endpoint cert', `${td.bundleEndpointCert ?? '-'} (key ${td.bundleEndpointKey ?? '-'})`] : ['bundle endpoint id', td.bundleEndpointSpiffeId ?? '-'],
      ]
      : [['bundle endpoint', '-']]),
    ['created', td.createdAt],
  ]);
}

/** The settings both create and update take. */
function settings(values: Values<typeof TD_UPDATE_FLAGS>) {
  return {
    ...(values['ca-ttl'] ? { caTtlSeconds: parseDuration(values['ca-ttl']) } : {}),
    ...(values['x509-svid-ttl'] ? { x509SvidTtlSeconds: parseDuration(values['x509-svid-ttl']) } : {}),
    ...(values['jwt-svid-ttl'] ? { jwtSvidTtlSeconds: parseDuration(values['jwt-svid-ttl']) } : {}),
    ...(values['jwt-issuer'] !== undefined ? { jwtIssuer: values['jwt-issuer'] === '' ? null : values['jwt-issuer'] } : {}),
    ...(values['jwt-key-type'] ? { jwtKeyType: values['jwt-key-type'] } : {}),
    ...(values['authority-prepublish'] !== undefined ? { authorityPrepublishSeconds: parseDuration(values['authority-prepublish']) } : {}),
    ...(values['bundle-refresh-hint'] ? { bundleRefreshHintSeconds: parseDuration(values['bundle-refresh-hint']) } : {}),
    ...(values['bundle-endpoint-listen'] !== undefined ? { bundleEndpointListen: values['bundle-endpoint-listen'] === '' ? null : values['bundle-endpoint-listen'] } : {}),
    ...(values['bundle-endpoint-profile'] !== undefined ? { bundleEndpointProfile: values['bundle-endpoint-profile'] } : {}),
    ...(values['bundle-endpoint-spiffe-id'] !== undefined ? { bundleEndpointSpiffeId: values['bundle-endpoint-spiffe-id'] } : {}),
    ...(values['bundle-endpoint-url'] !== undefined ? { bundleEndpointUrl: values['bundle-endpoint-url'] } : {}),
    // names of files on the CA's hosts, sent as typed: the CA resolves them in its --web-cert-dir
    ...(values['bundle-endpoint-cert'] !== undefined ? { bundleEndpointCert: values['bundle-endpoint-cert'] } : {}),
    ...(values['bundle-endpoint-key'] !== undefined ? { bundleEndpointKey: values['bundle-endpoint-key'] } : {}),
  };
}

const pathOf = (name: string | undefined): string => `/v1/trust-domains/${encodeURIComponent(name!)}`;

/** --upstream-ca-cert and --upstream-ca-key, both or neither. The CLI reads the files and sends their content: the CA never opens a path an admin names. */
function upstreamOf(values: { 'upstream-ca-cert'?: string | undefined; 'upstream-ca-key'?: string | undefined }, command: string): { upstreamCaCertificate?: string; upstreamCaKey?: string } {
  const cert = values['upstream-ca-cert'];
  const key = values['upstream-ca-key'];
  if ((cert === undefined) !== (key === undefined)) {
    throw new UsageError(`${cert === undefined ? '--upstream-ca-cert' : '--upstream-ca-key'} is required with ${cert === undefined ? '--upstream-ca-key' : '--upstream-ca-cert'}: a disk upstream authority needs its certificate and its key`, command);
  }
  return cert !== undefined && key !== undefined
    ? { upstreamCaCertificate: readInputFile(cert, 'the upstream CA certificate (--upstream-ca-cert)'), upstreamCaKey: readInputFile(key, 'the upstream CA key (--upstream-ca-key)') }
    : {};
}

export async function tdCreate({ values, positionals, command }: Parsed<typeof TD_CREATE_FLAGS>): Promise<void> {
  const upstream = upstreamOf(values, command);
  const td = await adminClientFor(values).request<TrustDomainView>('POST', '/v1/trust-domains', {
    name: positionals[0]!,
    ...(values['ca-key-type'] ? { caKeyType: values['ca-key-type'] } : {}),
    ...settings(values),
    ...upstream,
  });
  printResult(values.json, td, () => td.name);
}

export async function tdList({ values }: Parsed<typeof TD_LIST_FLAGS>): Promise<void> {
  const qs = new URLSearchParams();
  if (values['page-size']) qs.set('pageSize', values['page-size']);
  if (values['page-token']) qs.set('pageToken', values['page-token']);
  const page = await adminClientFor(values).request<{ trustDomains: TrustDomainView[]; nextPageToken?: string }>('GET', `/v1/trust-domains?${qs}`);
  printResult(values.json, page, () =>
    table([['NAME', 'KEY', 'X509 TTL', 'JWT TTL', 'ISSUER'], ...page.trustDomains.map((t) => [t.name, t.caKeyType, formatDuration(t.x509SvidTtlSeconds), formatDuration(t.jwtSvidTtlSeconds), t.jwtIssuer ?? '-'])]) +
    (page.nextPageToken ? `\n(next page: --page-token ${page.nextPageToken})` : ''),
  );
}

export async function tdShow({ values, positionals }: Parsed<typeof TD_SHOW_FLAGS>): Promise<void> {
  const td = await adminClientFor(values).request<TrustDomainView>('GET', pathOf(positionals[0]));
  printResult(values.json, td, () => describe(td));
}

export async function tdUpdate({ values, positionals, command }: Parsed<typeof TD_UPDATE_FLAGS>): Promise<void> {
  requireOneOf(values, ['ca-ttl', 'x509-svid-ttl', 'jwt-svid-ttl', 'jwt-issuer', 'jwt-key-type', 'authority-prepublish', 'bundle-refresh-hint', 'bundle-endpoint-listen', 'bundle-endpoint-profile', 'bundle-endpoint-spiffe-id', 'bundle-endpoint-url', 'bundle-endpoint-cert', 'bundle-endpoint-key', 'upstream-ca-cert', 'upstream-ca-key'], command);
  const td = await adminClientFor(values).request<TrustDomainView>('PATCH', pathOf(positionals[0]), { ...settings(values), ...upstreamOf(values, command) });
  printResult(values.json, td, () => describe(td));
}

export async function tdDelete({ values, positionals }: Parsed<typeof TD_DELETE_FLAGS>): Promise<void> {
  const name = positionals[0]!;
  await adminClientFor(values).request('DELETE', `${pathOf(name)}${values.force ? '?force=true' : ''}`);
  printResult(values.json, { deleted: name }, () => name);
}
