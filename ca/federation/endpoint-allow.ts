import { CairnError } from '../../lib/errors.js';
import { parsePattern } from '../../lib/endpoint-pattern.js';

/**
 * Which bundle endpoints the CA may fetch, as the operator configured them (--federation-endpoints,
 * never the admin API): the CA connects wherever a relationship points, so without this an admin
 * credential would be a way to make the CA reach any host and port. Patterns: `host`, `host:port`,
 * `*.domain` (any name under it), `*.domain:port`, an IP literal (`[v6]` with a port), or `*` for any
 * endpoint. No pattern: no relationship can be created or refreshed.
 */
export class EndpointAllowList {
  private readonly patterns: readonly { host: string; suffix: boolean; port: number | undefined }[];

  constructor(readonly configured: readonly string[]) {
    this.patterns = configured.map(parsePattern);
  }

  allows(url: URL): boolean {
    const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
    const port = url.port === '' ? 443 : Number(url.port);
    return this.patterns.some((p) => (p.port === undefined || p.port === port) && (p.host === '*' || (p.suffix ? host.endsWith(`.${p.host}`) : host === p.host)));
  }

  /** Throws the refusal an admin sees, naming the setting that would allow the URL. */
  check(url: URL): void {
    if (this.allows(url)) return;
    throw new CairnError('federation_endpoint_not_allowed', this.configured.length === 0
      ? `this CA fetches no bundle endpoint until its operator allows some (--federation-endpoints / CAIRN_FEDERATION_ENDPOINTS, e.g. ${url.hostname}); ${url.host} is not allowed`
      : `${url.host} is not among the bundle endpoints this CA may fetch (--federation-endpoints ${this.configured.join(',')})`);
  }
}
