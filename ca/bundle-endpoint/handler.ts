import type { IncomingMessage, ServerResponse } from 'node:http';
import { isCairnError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import type { AuthorityService } from '../authority/service.js';
import { jwksUriOf, oidcDiscovery, oidcJwks, spiffeBundleDocument } from '../bundle/documents.js';
import type { BundleEndpoint } from '../trust-domains/model.js';

type Published = Awaited<ReturnType<AuthorityService['published']>>;

const DISCOVERY = '/.well-known/openid-configuration';
const JWKS = '/jwks';

/** What one endpoint's requests need: the trust domain it serves and the last keys read (served while the database is away). */
export interface EndpointState {
  readonly name: string;
  readonly endpoint: BundleEndpoint;
  last?: Published;
}

/**
 * One request to a trust domain's bundle endpoint. `GET /` is the SPIFFE bundle document (as SPIRE's
 * server). An https_web endpoint also serves the trust domain's OIDC discovery document and JWKS
 * under its issuer's path (`<path>/.well-known/openid-configuration`, `<path>/jwks`), so an https
 * issuer can be this endpoint's URL: its certificate is one that OIDC consumers (AWS, GCP,
 * mod_auth_openidc) trust, which an SVID is not.
 */
export async function serveEndpoint(authority: Pick<AuthorityService, 'published'>, logger: Logger, state: EndpointState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?')[0]!;
  const web = state.endpoint.profile === 'https_web';
  const kind = path === '/' ? 'bundle' : web && path.endsWith(DISCOVERY) ? 'discovery' : web && path.endsWith(JWKS) ? 'jwks' : undefined;
  if (!kind) return end(res, 404, { code: 'not_found', message: web ? 'the bundle is served at /, OIDC discovery under the issuer\'s path' : 'the bundle is served at /' });
  if (req.method !== 'GET' && req.method !== 'HEAD') return end(res, 405, { code: 'invalid_request', message: 'the bundle endpoint answers GET only' }, { allow: 'GET, HEAD' });
  let published: Published;
  try {
    published = await authority.published(state.name);
    state.last = published;
  } catch (err) {
    // nothing can rotate a key while the database is away: the last answer is still true
    if (!(isCairnError(err, 'store_unavailable') && state.last)) {
      logger.warn({ err: { message: (err as Error).message }, trustDomain: state.name }, 'bundle endpoint could not read the bundle');
      return end(res, 503, { code: 'store_unavailable', message: 'the bundle cannot be read right now; retry later' });
    }
    published = state.last;
  }
  const { trustDomain, keys } = published;
  if (kind === 'bundle') return send(req, res, JSON.stringify(spiffeBundleDocument(trustDomain, keys)), 'no-cache');
  const issuer = trustDomain.jwtIssuer;
  const issuerPath = issuer?.startsWith('https://') ? new URL(issuer).pathname.replace(/\/+$/, '') : undefined;
  if (issuer === null || issuerPath === undefined) {
    return end(res, 404, { code: 'oidc_issuer_not_configured', message: `trust domain ${state.name} has no https JWT issuer; set jwtIssuer to this endpoint's URL to publish OIDC discovery here` });
  }
  const [served, body] = kind === 'discovery'
    ? [`${issuerPath}${DISCOVERY}`, () => JSON.stringify(oidcDiscovery(issuer, jwksUriOf(issuer), keys))]
    : [`${issuerPath}${JWKS}`, () => JSON.stringify(oidcJwks(keys))];
  if (path !== served) return end(res, 404, { code: 'not_found', message: `the issuer ${issuer} is served at ${served}` });
  return send(req, res, body(), 'public, max-age=300');
}

function send(req: IncomingMessage, res: ServerResponse, body: string, cacheControl: string): void {
  res.writeHead(200, { 'content-type': 'application/json', 'cache-control': cacheControl, 'access-control-allow-origin': '*', 'content-length': Buffer.byteLength(body) });
  res.end(req.method === 'HEAD' ? undefined : body);
}

export function end(res: ServerResponse, status: number, body: { code: string; message: string }, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}
