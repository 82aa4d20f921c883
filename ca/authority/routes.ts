import { errorResponses } from '../../contract/common.js';
import {
  ActivateAuthorityBody, ActivateAuthorityResponse, AuthorityList, AuthorityListQuery, AuthorityParams, AuthorityPaths, AuthorityTrustDomainParams,
  AuthorityView, PrepareAuthorityBody, RevokeAuthorityBody, TaintAuthorityBody,
} from '../../contract/authority-api.js';
import { noteChange } from '../admin-auth/access.js';
import type { App } from '../http/types.js';
import { validateTrustDomainName } from '../trust-domains/service.js';
import type { AuthorityLifecycle } from './lifecycle.js';

/** Admin routes for a trust domain's authorities (prepare/activate/taint/revoke: admin role; list: viewer). */
export function registerAuthorityRoutes(app: App, lifecycle: AuthorityLifecycle): void {
  const tags = ['authorities'];
  app.get(AuthorityPaths.list, {
    schema: {
      tags,
      summary: "List a trust domain's X.509 CAs and JWT keys: status, validity, fingerprint, SVIDs signed",
      params: AuthorityTrustDomainParams,
      querystring: AuthorityListQuery,
      response: { 200: AuthorityList, ...errorResponses },
    },
  }, async (req) => {
    const td = validateTrustDomainName(req.params.name);
    return { trustDomain: td, authorities: await lifecycle.list(td, req.query.kind) };
  });

  app.post(AuthorityPaths.prepare, {
    schema: { tags, summary: 'Generate and publish a successor key (it signs nothing until activated)', params: AuthorityTrustDomainParams, body: PrepareAuthorityBody, response: { 201: AuthorityView, ...errorResponses } },
  }, async (req, reply) => {
    const view = await lifecycle.prepare(validateTrustDomainName(req.params.name), req.body.kind, req.actor);
    noteChange(req, { target: view.id, new: { kind: view.kind, status: view.status, keyType: view.keyType, publicKeyFingerprint: view.publicKeyFingerprint } });
    return reply.status(201).send(view);
  });

  app.post(AuthorityPaths.activate, {
    schema: {
      tags,
      summary: 'Activate the prepared key now (forced rotation); the active one becomes old',
      params: AuthorityTrustDomainParams,
      body: ActivateAuthorityBody,
      response: { 200: ActivateAuthorityResponse, ...errorResponses },
    },
  }, async (req) => {
    const out = await lifecycle.activate(validateTrustDomainName(req.params.name), req.body.kind, { id: req.body.id, minPublishedSeconds: req.body.minPublishedSeconds }, req.actor);
    noteChange(req, {
      target: out.activated.id,
      old: { active: out.previous?.id ?? null, prepared: out.activated.id },
      new: { active: out.activated.id, old: out.previous?.id ?? null, publishedSeconds: out.publishedSeconds },
    });
    return out;
  });

  app.post(AuthorityPaths.taint, {
    schema: { tags, summary: 'Taint an old authority: agents re-issue everything it signed at once', params: AuthorityParams, body: TaintAuthorityBody, response: { 200: AuthorityView, ...errorResponses } },
  }, async (req) => {
    const view = await lifecycle.taint(validateTrustDomainName(req.params.name), req.body.kind, req.params.id, req.actor);
    noteChange(req, { target: view.id, old: { status: 'old' }, new: { status: view.status } });
    return view;
  });

  app.post(AuthorityPaths.revoke, {
    schema: {
      tags,
      summary: 'Revoke a tainted authority: it leaves the bundle for good (refused while what it signed is in use, unless force)',
      params: AuthorityParams,
      body: RevokeAuthorityBody,
      response: { 200: AuthorityView, ...errorResponses },
    },
  }, async (req) => {
    const view = await lifecycle.revoke(validateTrustDomainName(req.params.name), req.body.kind, req.params.id, req.body.force ?? false, req.actor);
    noteChange(req, { target: view.id, old: { status: 'tainted' }, new: { status: view.status, forced: req.body.force ?? false } });
    return view;
  });
}
