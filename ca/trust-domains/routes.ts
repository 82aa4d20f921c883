import { errorResponses } from '../../contract/common.js';
import {
  AdminPaths, CreateTrustDomainBody, DeleteQuery, ListQuery, TrustDomainList, TrustDomainParams, TrustDomainView, UpdateTrustDomainBody,
} from '../../contract/admin-api.js';
import { Type } from 'typebox';
import { listScope, noteChange } from '../admin-auth/access.js';
import type { App } from '../http/types.js';
import type { TrustDomain } from './model.js';
import type { TrustDomainService } from './service.js';

export function trustDomainView(td: TrustDomain): TrustDomainView {
  return {
    name: td.name,
    caKeyType: td.caKeyType,
    jwtKeyType: td.jwtKeyType,
    caTtlSeconds: td.caTtlSeconds,
    x509SvidTtlSeconds: td.x509SvidTtlSeconds,
    jwtSvidTtlSeconds: td.jwtSvidTtlSeconds,
    jwtIssuer: td.jwtIssuer,
    authorityPrepublishSeconds: td.authorityPrepublishSeconds,
    bundleSequence: td.bundleSequence,
    bundleRefreshHintSeconds: td.bundleRefreshHintSeconds,
    ...(td.bundleEndpoint ? { bundleEndpointListen: td.bundleEndpoint.listen, bundleEndpointUrl: td.bundleEndpoint.url, bundleEndpointProfile: td.bundleEndpoint.profile } : {}),
    ...(td.bundleEndpoint?.profile === 'https_spiffe' ? { bundleEndpointSpiffeId: td.bundleEndpoint.spiffeId } : {}),
    ...(td.bundleEndpoint?.profile === 'https_web' ? { bundleEndpointCert: td.bundleEndpoint.certFile, bundleEndpointKey: td.bundleEndpoint.keyFile } : {}),
    createdAt: td.createdAt.toISOString(),
    updatedAt: td.updatedAt.toISOString(),
  };
}

export function registerTrustDomainRoutes(app: App, service: TrustDomainService): void {
  const tags = ['trust domains'];
  app.post(AdminPaths.trustDomains, {
    schema: { tags, summary: 'Create a trust domain with a new CA and JWT signing key', body: CreateTrustDomainBody, response: { 201: TrustDomainView, ...errorResponses } },
  }, async (req, reply) => {
    const view = trustDomainView(await service.create(req.body, req.actor));
    noteChange(req, { new: view });
    return reply.status(201).send(view);
  });

  app.get(AdminPaths.trustDomains, {
    schema: { tags, summary: 'List trust domains', querystring: ListQuery, response: { 200: TrustDomainList, ...errorResponses } },
  }, async (req) => {
    const page = await service.list(req.query.pageSize, req.query.pageToken, listScope(req));
    return { trustDomains: page.items.map(trustDomainView), ...(page.nextPageToken ? { nextPageToken: page.nextPageToken } : {}) };
  });

  app.get(AdminPaths.trustDomain, {
    schema: { tags, summary: 'Get a trust domain', params: TrustDomainParams, response: { 200: TrustDomainView, ...errorResponses } },
  }, async (req) => trustDomainView(await service.get(req.params.name)));

  app.patch(AdminPaths.trustDomain, {
    schema: { tags, summary: 'Update TTLs, the JWT issuer, the JWT key type (applied at the next JWT key) or the pre-publication window', params: TrustDomainParams, body: UpdateTrustDomainBody, response: { 200: TrustDomainView, ...errorResponses } },
  }, async (req) => trustDomainView(await service.update(req.params.name, req.body, req.actor, (before, after) => noteChange(req, { old: trustDomainView(before), new: trustDomainView(after) }))));

  app.delete(AdminPaths.trustDomain, {
    schema: { tags, summary: 'Delete a trust domain (refused while entries exist unless force=true)', params: TrustDomainParams, querystring: DeleteQuery, response: { 204: Type.Null(), ...errorResponses } },
  }, async (req, reply) => {
    await service.delete(req.params.name, req.query.force ?? false, req.actor);
    return reply.status(204).send(null);
  });
}
