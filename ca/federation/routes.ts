import { Type } from 'typebox';
import { errorResponses } from '../../contract/common.js';
import {
  CreateRelationshipBody, DeleteForeignBundleQuery, FederationParams, FederationPaths, ForeignBundleList, ForeignBundleParams, ForeignBundleView, RelationshipList,
  RelationshipView, SetForeignBundleBody,
} from '../../contract/federation-api.js';
import type { Relationship } from './store.js';
import type { RelationshipService } from './relationships.js';
import { encodeSpiffeBundle } from '../../spiffe/bundle/bundle.js';
import { noteChange } from '../admin-auth/access.js';
import type { App } from '../http/types.js';
import { storedBundle, type FederationService } from './service.js';
import type { StoredForeignBundle } from './store.js';

export function foreignBundleView(b: StoredForeignBundle): ForeignBundleView {
  const bundle = storedBundle(b);
  return {
    trustDomain: b.trustDomain,
    foreignTrustDomain: b.foreignTrustDomain,
    source: b.source,
    sequence: b.sequence,
    refreshHintSeconds: b.refreshHintSeconds,
    x509Authorities: bundle.x509Authorities.length,
    jwtAuthorities: bundle.jwtAuthorities.length,
    bundle: encodeSpiffeBundle({ ...bundle, sequence: b.sequence ?? undefined, refreshHintSeconds: b.refreshHintSeconds ?? undefined }),
    updatedAt: b.updatedAt.toISOString(),
    updatedBy: b.updatedBy,
  };
}

/** What the admin record keeps of a bundle: enough to see what changed, not the whole document. */
const recordOf = (v: ForeignBundleView) => ({ sequence: v.sequence, x509Authorities: v.x509Authorities, jwtAuthorities: v.jwtAuthorities, source: v.source });

/** Admin routes for foreign bundles (set, delete: admin role; list, show: viewer), scoped by the local trust domain. */
export function relationshipView(r: Relationship, sequence: number | null): RelationshipView {
  return {
    trustDomain: r.trustDomain,
    foreignTrustDomain: r.foreignTrustDomain,
    bundleEndpointUrl: r.bundleEndpointUrl,
    profile: r.profile,
    endpointSpiffeId: r.endpointSpiffeId,
    webRoots: r.webRoots !== null,
    sequence,
    lastRefreshAt: r.lastRefreshAt?.toISOString() ?? null,
    lastAttemptAt: r.lastAttemptAt?.toISOString() ?? null,
    lastError: r.lastError,
    failures: r.failures,
    nextRefreshAt: r.nextRefreshAt.toISOString(),
    createdAt: r.createdAt.toISOString(),
    createdBy: r.createdBy,
  };
}

export function registerFederationRoutes(app: App, federation: FederationService, relationships: RelationshipService): void {
  const tags = ['federation'];
  const view = async (r: Relationship): Promise<RelationshipView> => relationshipView(r, (await federation.held(r.trustDomain, r.foreignTrustDomain))?.sequence ?? null);

  app.post(FederationPaths.relationships, {
    schema: {
      tags,
      summary: 'Create a federation relationship: the CA polls the foreign bundle endpoint (https_spiffe or https_web) at its refresh hint',
      params: FederationParams,
      body: CreateRelationshipBody,
      response: { 201: RelationshipView, ...errorResponses },
    },
  }, async (req, reply) => {
    const { relationship } = await relationships.create(req.params.trustDomain, req.body, req.actor);
    const v = await view(relationship);
    noteChange(req, { target: v.foreignTrustDomain, new: { bundleEndpointUrl: v.bundleEndpointUrl, profile: v.profile, endpointSpiffeId: v.endpointSpiffeId, webRoots: v.webRoots, sequence: v.sequence } });
    return reply.status(201).send(v);
  });

  app.get(FederationPaths.relationships, {
    schema: { tags, summary: "A trust domain's federation relationships and how their refreshes go", params: FederationParams, response: { 200: RelationshipList, ...errorResponses } },
  }, async (req) => ({ trustDomain: req.params.trustDomain, relationships: await Promise.all((await relationships.list(req.params.trustDomain)).map(view)) }));

  app.get(FederationPaths.relationship, {
    schema: { tags, summary: 'A federation relationship: endpoint, profile, last refresh, current sequence, last error', params: ForeignBundleParams, response: { 200: RelationshipView, ...errorResponses } },
  }, async (req) => view(await relationships.get(req.params.trustDomain, req.params.foreign)));

  app.delete(FederationPaths.relationship, {
    schema: {
      tags,
      summary: 'End a federation relationship: stop polling and delete the bundle (refused while entries federate with it, unless force=true)',
      params: ForeignBundleParams,
      querystring: DeleteForeignBundleQuery,
      response: { 204: Type.Null(), ...errorResponses },
    },
  }, async (req, reply) => {
    const gone = await relationships.delete(req.params.trustDomain, req.params.foreign, req.query.force ?? false, req.actor);
    noteChange(req, { target: gone.foreignTrustDomain, old: { bundleEndpointUrl: gone.bundleEndpointUrl, profile: gone.profile } });
    return reply.status(204).send(null);
  });

  app.post(FederationPaths.relationshipRefresh, {
    schema: {
      tags,
      summary: 'Refresh a foreign bundle from its endpoint now; the answer tells how it went (lastError null: it worked)',
      params: ForeignBundleParams,
      response: { 200: RelationshipView, ...errorResponses },
    },
  }, async (req) => view(await relationships.refreshNow(req.params.trustDomain, req.params.foreign, req.actor)));

  app.get(FederationPaths.bundles, {
    schema: { tags, summary: 'The foreign trust domains\' bundles this trust domain holds', params: FederationParams, response: { 200: ForeignBundleList, ...errorResponses } },
  }, async (req) => ({ trustDomain: req.params.trustDomain, bundles: (await federation.listBundles(req.params.trustDomain)).map(foreignBundleView) }));

  app.get(FederationPaths.bundle, {
    schema: { tags, summary: "A foreign trust domain's bundle as this trust domain holds it", params: ForeignBundleParams, response: { 200: ForeignBundleView, ...errorResponses } },
  }, async (req) => foreignBundleView(await federation.getBundle(req.params.trustDomain, req.params.foreign)));

  app.put(FederationPaths.bundle, {
    schema: {
      tags,
      summary: "Set a foreign trust domain's bundle (SPIFFE bundle JSON or PEM); workloads whose entries federate with it receive it at once",
      params: ForeignBundleParams,
      body: SetForeignBundleBody,
      response: { 200: ForeignBundleView, ...errorResponses },
    },
  }, async (req) => {
    const { before, after } = await federation.setBundle(req.params.trustDomain, req.params.foreign, req.body.bundle, req.actor);
    const view = foreignBundleView(after);
    noteChange(req, { target: after.foreignTrustDomain, old: before ? recordOf(foreignBundleView(before)) : undefined, new: recordOf(view) });
    return view;
  });

  app.delete(FederationPaths.bundle, {
    schema: {
      tags,
      summary: 'Delete a foreign bundle (refused while entries federate with it, unless force=true)',
      params: ForeignBundleParams,
      querystring: DeleteForeignBundleQuery,
      response: { 204: Type.Null(), ...errorResponses },
    },
  }, async (req, reply) => {
    const gone = await federation.deleteBundle(req.params.trustDomain, req.params.foreign, req.query.force ?? false, req.actor);
    noteChange(req, { target: gone.foreignTrustDomain, old: recordOf(foreignBundleView(gone)) });
    return reply.status(204).send(null);
  });
}
