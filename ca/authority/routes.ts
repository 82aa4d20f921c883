import { errorResponses } from '../../contract/common.js';
import {
  ActivateAuthorityBody, ActivateAuthorityResponse, AuthorityList, AuthorityListQuery, AuthorityParams, AuthorityPaths, AuthorityTrustDomainParams,
  AuthorityView, ImportAuthorityBody, PrepareAuthorityBody, PreparedAuthority, RevokeAuthorityBody, TaintAuthorityBody,
} from '../../contract/authority-api.js';
import type { OfflineUpstream } from '../upstream/offline.js';
import { noteChange } from '../admin-auth/access.js';
import type { App } from '../http/types.js';
import { validateTrustDomainName } from '../trust-domains/service.js';
import { CairnError } from '../../lib/errors.js';
import type { AuthorityLifecycle } from './lifecycle.js';

/** Admin routes for a trust domain's authorities (prepare/activate/taint/revoke: admin role; list: viewer). */
export function registerAuthorityRoutes(app: App, lifecycle: AuthorityLifecycle, offline: OfflineUpstream): void {
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
    const authorities = await lifecycle.list(td, req.query.kind);
    const upstream = await lifecycle.upstreamStatus(td, offline);
    return { trustDomain: td, authorities, ...(upstream ? { upstream } : {}) };
  });

  app.post(AuthorityPaths.prepare, {
    schema: {
      tags,
      summary: 'Generate and publish a successor key (it signs nothing until activated); with csr (X.509), a key and a CSR for an offline upstream to sign',
      params: AuthorityTrustDomainParams,
      body: PrepareAuthorityBody,
      response: { 201: PreparedAuthority, ...errorResponses },
    },
  }, async (req, reply) => {
    const td = validateTrustDomainName(req.params.name);
    if (req.body.csr) {
      if (req.body.kind !== 'x509') throw new CairnError('invalid_request', 'csr applies to kind x509 only: JWT keys are not certified by an upstream');
      const { key, csr, reused } = await offline.prepareCsr(td, req.actor);
      const view = (await lifecycle.list(td, 'x509')).find((v) => v.id === key.id)!;
      if (!reused) noteChange(req, { target: view.id, new: { kind: view.kind, status: view.status, keyType: view.keyType, publicKeyFingerprint: view.publicKeyFingerprint, awaitingCertificate: true } });
      return reply.status(201).send({ ...view, csr });
    }
    const view = await lifecycle.prepare(td, req.body.kind, req.actor);
    noteChange(req, { target: view.id, new: { kind: view.kind, status: view.status, keyType: view.keyType, publicKeyFingerprint: view.publicKeyFingerprint } });
    return reply.status(201).send(view);
  });

  app.post(AuthorityPaths.import, {
    schema: {
      tags,
      summary: 'Import the upstream-signed CA certificate for the key prepared with csr; it is published at once and signs once activated',
      params: AuthorityTrustDomainParams,
      body: ImportAuthorityBody,
      response: { 200: AuthorityView, ...errorResponses },
    },
  }, async (req) => {
    const td = validateTrustDomainName(req.params.name);
    const key = await offline.import(td, req.body.certificate, req.body.chain, req.actor);
    const view = (await lifecycle.list(td, 'x509')).find((v) => v.id === key.id)!;
    noteChange(req, { target: key.id, old: { awaitingCertificate: true }, new: { status: view.status, notAfter: view.notAfter, upstreamSigned: true } });
    return view;
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
