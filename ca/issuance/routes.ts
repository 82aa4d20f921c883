import { errorResponses } from '../../contract/common.js';
import { AdminPaths, MintJwtBody, MintJwtResponse, MintX509Body, MintX509Response } from '../../contract/admin-api.js';
import { TTL_LIMITS } from '../trust-domains/model.js';
import { derToPem } from '../../spiffe/bundle/bundle.js';
import { SpiffeId } from '../../spiffe/id.js';
import { noteChange } from '../admin-auth/access.js';
import type { App } from '../http/types.js';
import { decodeCsrText, verifyCsr } from './csr.js';
import { checkTtl, normalizeDnsNames } from './policy.js';
import { refuseReserved } from './reserved.js';
import type { IssuanceService } from './service.js';

/** Operator mint endpoints, like `spire-server x509 mint` / `jwt mint`: any ID, admin-authorized. */
export function registerMintRoutes(app: App, issuance: IssuanceService): void {
  const tags = ['issuance'];
  app.post(AdminPaths.x509Svids, {
    schema: { tags, summary: 'Sign an X.509-SVID for a CSR (the CSR contributes only its key)', body: MintX509Body, response: { 201: MintX509Response, ...errorResponses } },
  }, async (req, reply) => {
    const spiffeId = SpiffeId.parse(req.body.spiffeId);
    refuseReserved(spiffeId);
    const ttlSeconds = req.body.ttlSeconds === undefined ? undefined : checkTtl(req.body.ttlSeconds, TTL_LIMITS.x509SvidTtlSeconds, 'ttlSeconds');
    const dnsNames = normalizeDnsNames(req.body.dnsNames ?? []);
    const csr = verifyCsr(decodeCsrText(req.body.csr));
    const [svid] = await issuance.issueX509(spiffeId.trustDomain, [{ csr, policy: { spiffeId, ttlSeconds, dnsNames } }], `admin:${req.actor}`);
    noteChange(req, { target: svid!.spiffeId, new: { spiffeId: svid!.spiffeId, serial: svid!.serial, dnsNames, expiresAt: svid!.notAfter.toISOString() } });
    return reply.status(201).send({
      spiffeId: svid!.spiffeId,
      serial: svid!.serial,
      expiresAt: svid!.notAfter.toISOString(),
      certChain: svid!.chain.map((c) => derToPem(c)).join(''),
      bundle: svid!.bundle.map((c) => derToPem(c)).join(''),
    });
  });

  app.post(AdminPaths.jwtSvids, {
    schema: { tags, summary: 'Mint a JWT-SVID', body: MintJwtBody, response: { 201: MintJwtResponse, ...errorResponses } },
  }, async (req, reply) => {
    const spiffeId = SpiffeId.parse(req.body.spiffeId);
    refuseReserved(spiffeId);
    const ttlSeconds = req.body.ttlSeconds === undefined ? undefined : checkTtl(req.body.ttlSeconds, TTL_LIMITS.jwtSvidTtlSeconds, 'ttlSeconds');
    const minted = await issuance.mintJwt(spiffeId.trustDomain, { spiffeId, audience: req.body.audience, ttlSeconds }, `admin:${req.actor}`);
    noteChange(req, { target: minted.spiffeId, new: { spiffeId: minted.spiffeId, audience: req.body.audience, expiresAt: minted.expiresAt.toISOString() } });
    return reply.status(201).send({ spiffeId: minted.spiffeId, token: minted.token, expiresAt: minted.expiresAt.toISOString() });
  });
}
