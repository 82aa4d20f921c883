import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { errorResponses } from '../../contract/common.js';
import { OidcDiscoverySchema, OidcJwksSchema, PublicPaths, SpiffeBundleSchema, TrustDomainPathParams } from '../../contract/public-api.js';
import { CairnError, isCairnError } from '../../lib/errors.js';
import { derToPem } from '../../spiffe/bundle/bundle.js';
import type { AuthorityService } from '../authority/service.js';
import { validateTrustDomainName } from '../trust-domains/service.js';
import type { App } from '../http/types.js';
import { bundleOf, jwksUriOf, oidcDiscovery, oidcJwks, spiffeBundleDocument } from './documents.js';

export interface PublicRouteDeps {
  readonly authority: AuthorityService;
}

/**
 * Gateways poll these. Mesh consumers ignore cache headers, generic ones honour them, so a
 * moderate max-age plus an ETag (answering 304) serves both.
 */
function sendCacheable(req: FastifyRequest, reply: FastifyReply, body: string, contentType: string): FastifyReply {
  const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
  void reply.header('cache-control', 'public, max-age=300').header('etag', etag).header('access-control-allow-origin', '*');
  const inm = req.headers['if-none-match'];
  if (inm && (inm === '*' || inm.split(',').some((t) => t.trim().replace(/^W\//, '') === etag))) {
    return reply.status(304).send();
  }
  return reply.status(200).type(contentType).send(body);
}

export function registerPublicRoutes(app: App, deps: PublicRouteDeps): void {
  const tags = ['public'];
  const params = TrustDomainPathParams;
  // The last published keys per trust domain, served while the database is unreachable: gateways
  // refetch JWKS and bundles on a timer and would otherwise drop verification keys during an outage.
  // Nothing can rotate or revoke a key while the database is down, so the last answer is still true.
  const lastPublished = new Map<string, Awaited<ReturnType<AuthorityService['published']>>>();
  const published = async (name: string) => {
    const td = validateTrustDomainName(name);
    try {
      const current = await deps.authority.published(td);
      lastPublished.set(td, current);
      return current;
    } catch (err) {
      const last = lastPublished.get(td);
      if (last && err instanceof CairnError && err.code === 'store_unavailable') return last;
      if (err instanceof CairnError && err.code === 'trust_domain_not_found') lastPublished.delete(td);
      throw err;
    }
  };

  app.get(PublicPaths.bundle, {
    schema: { tags, summary: 'The SPIFFE trust bundle (JWKS form) of a trust domain', params, response: { 200: SpiffeBundleSchema, 304: Type.Null(), ...errorResponses } },
  }, async (req, reply) => {
    const { trustDomain, keys } = await published(req.params.trustDomain);
    return sendCacheable(req, reply, JSON.stringify(spiffeBundleDocument(trustDomain, keys)), 'application/json');
  });

  app.get(PublicPaths.bundlePem, {
    schema: { tags, summary: 'The X.509 authorities of a trust domain as PEM', params, response: { 200: Type.String(), 304: Type.Null(), ...errorResponses } },
  }, async (req, reply) => {
    const { trustDomain, keys } = await published(req.params.trustDomain);
    const pem = bundleOf(trustDomain, keys).x509Authorities.map((d) => derToPem(d)).join('');
    return sendCacheable(req, reply, pem, 'application/x-pem-file');
  });

  app.get(PublicPaths.jwks, {
    schema: { tags, summary: 'A plain JWKS of the JWT-SVID signing keys (for Envoy, Istio, cloud federation)', params, response: { 200: OidcJwksSchema, 304: Type.Null(), ...errorResponses } },
  }, async (req, reply) => {
    const { keys } = await published(req.params.trustDomain);
    return sendCacheable(req, reply, JSON.stringify(oidcJwks(keys)), 'application/json');
  });

  // jwks_uri follows the stored issuer, never the request: documents served with `Cache-Control:
  // public` would let one forged Host header point every cache's jwks_uri at an attacker.
  app.get(PublicPaths.oidcDiscovery, {
    schema: { tags, summary: 'OIDC discovery document; issuer equals the JWT-SVID iss', params, response: { 200: OidcDiscoverySchema, 304: Type.Null(), ...errorResponses } },
  }, async (req, reply) => {
    const { trustDomain, keys } = await published(req.params.trustDomain);
    if (!trustDomain.jwtIssuer) {
      throw new CairnError('oidc_issuer_not_configured', `trust domain ${trustDomain.name} has no JWT issuer; set jwtIssuer to publish OIDC discovery`);
    }
    return sendCacheable(req, reply, JSON.stringify(oidcDiscovery(trustDomain.jwtIssuer, jwksUriOf(trustDomain.jwtIssuer), keys)), 'application/json');
  });
}

export function registerHealthRoutes(app: App, ready: () => Promise<{ readonly ready: boolean; readonly reason?: string }>, version: string): void {
  const Health = Type.Object({ status: Type.String(), version: Type.String() });
  const Readiness = Type.Object({ status: Type.String(), reason: Type.Optional(Type.String()) });
  app.get(PublicPaths.healthz, { schema: { tags: ['health'], response: { 200: Health } } }, async () => ({ status: 'ok', version }));
  app.get(PublicPaths.readyz, { schema: { tags: ['health'], response: { 200: Readiness, 503: Readiness } } }, async (_req, reply) => {
    const state = await ready().catch((err: unknown) => ({ ready: false, reason: `the database does not answer: ${isCairnError(err) ? err.message : 'unexpected error'}` }));
    return state.ready ? { status: 'ready' } : reply.status(503).send({ status: 'not ready', reason: state.reason ?? 'not ready' });
  });
}
