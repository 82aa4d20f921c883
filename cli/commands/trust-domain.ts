import type { TrustDomainView } from '../../contract/admin-api.js';
import { parseDuration, formatDuration } from '../../lib/duration.js';
import { parse, UsageError } from '../args.js';
import { adminClientFor } from '../client.js';
import { printResult, table } from '../output.js';

const OPTIONS = {
  'ca-key-type': { type: 'string' },
  'ca-ttl': { type: 'string' },
  'x509-svid-ttl': { type: 'string' },
  'jwt-svid-ttl': { type: 'string' },
  'jwt-issuer': { type: 'string' },
  force: { type: 'boolean', default: false },
  'page-size': { type: 'string' },
  'page-token': { type: 'string' },
} as const;

export const TRUST_DOMAIN_USAGE = `cairn trust-domain create NAME [--ca-key-type ec-p256|ec-p384|rsa-2048] [--ca-ttl 30d]
                          [--x509-svid-ttl 1h] [--jwt-svid-ttl 5m] [--jwt-issuer URL]
cairn trust-domain list [--page-size N] [--page-token T]
cairn trust-domain show NAME
cairn trust-domain update NAME [--ca-ttl D] [--x509-svid-ttl D] [--jwt-svid-ttl D] [--jwt-issuer URL|""]
cairn trust-domain delete NAME [--force]`;

function describe(td: TrustDomainView): string {
  return table([
    ['name', td.name],
    ['ca key type', td.caKeyType],
    ['ca ttl', formatDuration(td.caTtlSeconds)],
    ['x509-svid ttl', formatDuration(td.x509SvidTtlSeconds)],
    ['jwt-svid ttl', formatDuration(td.jwtSvidTtlSeconds)],
    ['jwt issuer', td.jwtIssuer ?? '-'],
    ['bundle sequence', String(td.bundleSequence)],
    ['created', td.createdAt],
  ]);
}

export async function trustDomainCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, OPTIONS);
  const [verb, name] = positionals;
  const client = adminClientFor(values);
  const ttls = {
    ...(values['ca-ttl'] ? { caTtlSeconds: parseDuration(values['ca-ttl']) } : {}),
    ...(values['x509-svid-ttl'] ? { x509SvidTtlSeconds: parseDuration(values['x509-svid-ttl']) } : {}),
    ...(values['jwt-svid-ttl'] ? { jwtSvidTtlSeconds: parseDuration(values['jwt-svid-ttl']) } : {}),
    ...(values['jwt-issuer'] !== undefined ? { jwtIssuer: values['jwt-issuer'] === '' ? null : values['jwt-issuer'] } : {}),
  };
  const need = (): string => {
    if (!name) throw new UsageError(`trust-domain ${verb} needs a NAME`);
    return encodeURIComponent(name);
  };
  switch (verb) {
    case 'create': {
      const td = await client.request<TrustDomainView>('POST', '/v1/trust-domains', {
        name: name ?? '',
        ...(values['ca-key-type'] ? { caKeyType: values['ca-key-type'] } : {}),
        ...ttls,
      });
      return printResult(values.json, td, () => td.name);
    }
    case 'list': {
      const qs = new URLSearchParams();
      if (values['page-size']) qs.set('pageSize', values['page-size']);
      if (values['page-token']) qs.set('pageToken', values['page-token']);
      const page = await client.request<{ trustDomains: TrustDomainView[]; nextPageToken?: string }>('GET', `/v1/trust-domains?${qs}`);
      return printResult(values.json, page, () =>
        table([['NAME', 'KEY', 'X509 TTL', 'JWT TTL', 'ISSUER'], ...page.trustDomains.map((t) => [t.name, t.caKeyType, formatDuration(t.x509SvidTtlSeconds), formatDuration(t.jwtSvidTtlSeconds), t.jwtIssuer ?? '-'])]) +
        (page.nextPageToken ? `\n(next page: --page-token ${page.nextPageToken})` : ''),
      );
    }
    case 'show': {
      const td = await client.request<TrustDomainView>('GET', `/v1/trust-domains/${need()}`);
      return printResult(values.json, td, () => describe(td));
    }
    case 'update': {
      const td = await client.request<TrustDomainView>('PATCH', `/v1/trust-domains/${need()}`, ttls);
      return printResult(values.json, td, () => describe(td));
    }
    case 'delete': {
      await client.request('DELETE', `/v1/trust-domains/${need()}${values.force ? '?force=true' : ''}`);
      return printResult(values.json, { deleted: name }, () => name ?? '');
    }
    default:
      throw new UsageError(TRUST_DOMAIN_USAGE);
  }
}
