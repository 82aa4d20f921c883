import { Type } from 'typebox';
import { errorResponses } from '../../contract/common.js';
import { PublicPaths, TrustDomainPathParams } from '../../contract/public-api.js';
import { RevocationPaths, RevokeBody, RevokedList, RevokedListQuery, RevokeResponse, type RevokedSvidView } from '../../contract/revocation-api.js';
import { CairnError } from '../../lib/errors.js';
import { derToPem } from '../../spiffe/bundle/bundle.js';
import { noteChange } from '../admin-auth/access.js';
import type { App } from '../http/types.js';
import { validateTrustDomainName } from '../trust-domains/service.js';
import type { PublishedCrls, RevocationService } from './service.js';
import type { RevokedSvid } from './store.js';

const view = (r: RevokedSvid): RevokedSvidView => ({
  serial: r.serial,
  trustDomain: r.trustDomain,
  spiffeId: r.spiffeId,
  issuedTo: r.issuedTo,
  notAfter: r.notAfter.toISOString(),
  reason: r.reason,
  revokedAt: r.revokedAt.toISOString(),
  revokedBy: r.revokedBy,
});

export function registerRevocationRoutes(app: App, revocation: RevocationService): void {
  const tags = ['issuance'];
  app.post(RevocationPaths.revoke, {
    schema: {
      tags,
      summary: 'Revoke one X.509-SVID by serial, or every current SVID of a SPIFFE ID: refused for node mTLS and renewal, replaced by its agent at once, listed in the CRL until it expires',
      body: RevokeBody,
      response: { 200: RevokeResponse, ...errorResponses },
    },
  }, async (req) => {
    const outcome = await revocation.revoke(req.body, req.actor);
    const svids = outcome.svids.map(view);
    noteChange(req, { trustDomain: outcome.trustDomain, target: req.body.serial?.toLowerCase() ?? req.body.spiffeId, new: { svids: svids.map((s) => s.serial), reason: req.body.reason ?? null } });
    return { trustDomain: outcome.trustDomain, svids };
  });
  app.get(RevocationPaths.revoked, {
    schema: { tags, summary: 'The revoked X.509-SVIDs of a trust domain that have not expired (what its CRL lists)', querystring: RevokedListQuery, response: { 200: RevokedList, ...errorResponses } },
  }, async (req) => ({ svids: (await revocation.list(validateTrustDomainName(req.query.trustDomain))).map(view) }));
}

/**
 * GET /td/{td}/crl (DER, the active CA's CRL) and /td/{td}/crl.pem (every published CA's CRL, as
 * nginx's ssl_crl and HAProxy's crl-file take them). Served like the bundle: cacheable with an ETag,
 * and the last answer while the database is unreachable (a CRL stays valid until its nextUpdate).
 */
export function registerCrlRoutes(app: App, revocation: RevocationService): void {
  const tags = ['public'];
  const params = TrustDomainPathParams;
  const last = new Map<string, PublishedCrls>();
  const current = async (name: string): Promise<PublishedCrls> => {
    const td = validateTrustDomainName(name);
    try {
      const crls = await revocation.current(td);
      last.set(td, crls);
      return crls;
    } catch (err) {
      const kept = last.get(td);
      if (kept && err instanceof CairnError && err.code === 'store_unavailable') return kept;
      if (err instanceof CairnError && err.code === 'trust_domain_not_found') last.delete(td);
      throw err;
    }
  };
  const headers = (crls: PublishedCrls) => ({
    // Relying parties may cache it until well before it lapses; the CA re-signs at half its life.
    'cache-control': 'public, max-age=60',
    etag: `"${crls.digest}"`,
    'access-control-allow-origin': '*',
  });

  app.get(PublicPaths.crl, {
    schema: { tags, summary: "The CRL (DER) signed by the trust domain's active CA; crl.pem has every published CA's", params, response: { 200: Type.Any(), 304: Type.Null(), ...errorResponses } },
  }, async (req, reply) => {
    const crls = await current(req.params.trustDomain);
    if (!crls.active) throw new CairnError('authority_expired', `trust domain ${req.params.trustDomain} has no active CA to sign its CRL`);
    void reply.headers(headers(crls));
    if (req.headers['if-none-match'] === `"${crls.digest}"`) return reply.status(304).send(null);
    return reply.status(200).type('application/pkix-crl').send(crls.active.der);
  });

  app.get(PublicPaths.crlPem, {
    schema: { tags, summary: "The CRLs of every published CA of the trust domain, PEM (for nginx ssl_crl, HAProxy crl-file, openssl -CRLfile)", params, response: { 200: Type.String(), 304: Type.Null(), ...errorResponses } },
  }, async (req, reply) => {
    const crls = await current(req.params.trustDomain);
    void reply.headers(headers(crls));
    if (req.headers['if-none-match'] === `"${crls.digest}"`) return reply.status(304).send(null);
    return reply.status(200).type('application/x-pem-file').send(crls.crls.map((c) => derToPem(c.der, 'X509 CRL')).join(''));
  });
}
