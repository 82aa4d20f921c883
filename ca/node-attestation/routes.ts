import { Type } from 'typebox';
import { errorResponses } from '../../contract/common.js';
import { X509SvidMessage } from '../../contract/agent-api.js';
import {
  AttestorKindParams, AttestorList, AttestorParams, AttestorView, AttestPsatBody, AttestX509PopBody, CaTlsView, NodeAttestationPaths as P, PsatClusterBody,
  TrustDomainParams, X509PopCaBody, X509PopChallenge, X509PopChallengeBody,
} from '../../contract/node-attestation.js';
import { x509Message } from '../enrollment/routes.js';
import { noteChange } from '../admin-auth/access.js';
import type { App } from '../http/types.js';
import { attestorConfigView, type NodeAttestationService } from './service.js';
import type { AttestorRecord } from './store.js';

const view = (a: AttestorRecord) => ({
  trustDomain: a.trustDomain,
  kind: a.kind,
  name: a.name,
  config: attestorConfigView(a),
  createdAt: a.createdAt.toISOString(),
  updatedAt: a.updatedAt.toISOString(),
});

/** On the TLS listener, with no client certificate: the node proves itself with the attestor's evidence. */
export function registerNodeAttestationRoutes(app: App, service: NodeAttestationService): void {
  const tags = ['enrollment'];
  app.post(P.attestPsat, {
    schema: { tags, summary: 'Attest a node agent with a Kubernetes projected service-account token (re-attestable)', body: AttestPsatBody, response: { 201: X509SvidMessage, ...errorResponses } },
  }, async (req, reply) => reply.status(201).send(x509Message(await service.attestPsat(req.body, req.ip))));
  app.post(P.x509PopChallenge, {
    schema: { tags, summary: 'x509pop step 1: present the device certificate chain, receive a nonce to sign', body: X509PopChallengeBody, response: { 201: X509PopChallenge, ...errorResponses } },
  }, async (req, reply) => reply.status(201).send(await service.challengeX509Pop(req.body, req.ip)));
  app.post(P.attestX509Pop, {
    schema: { tags, summary: 'x509pop step 2: the signed nonce and a CSR; answers the agent SVID (re-attestable)', body: AttestX509PopBody, response: { 201: X509SvidMessage, ...errorResponses } },
  }, async (req, reply) => reply.status(201).send(x509Message(await service.attestX509Pop(req.body, req.ip))));
}

/** An attestor's current view, for the admin record's old → new (undefined when there is none). */
async function configured(service: NodeAttestationService, trustDomain: string, kind: string, name: string): Promise<ReturnType<typeof view> | undefined> {
  const found = (await service.list(trustDomain).catch(() => [])).find((a) => a.kind === kind && a.name === name);
  return found && view(found);
}

export function registerAttestorAdminRoutes(app: App, service: NodeAttestationService): void {
  const tags = ['attestors'];
  app.get(P.attestors, {
    schema: { tags, summary: 'Node attestors configured for a trust domain', params: TrustDomainParams, response: { 200: AttestorList, ...errorResponses } },
  }, async (req) => ({ attestors: (await service.list(req.params.trustDomain)).map(view) }));
  app.put(P.psatCluster, {
    schema: { tags, summary: 'Configure a Kubernetes cluster for k8s_psat (TokenReview or offline JWKS); credentials are a set of the CA\'s own (kubeCredentials) or inline, never a host path', params: AttestorParams, body: PsatClusterBody, response: { 200: AttestorView, ...errorResponses } },
  }, async (req) => {
    const before = await configured(service, req.params.trustDomain, 'k8s_psat', req.params.name);
    const after = view(await service.configurePsatCluster(req.params.trustDomain, req.params.name, req.body, req.actor));
    noteChange(req, { target: `k8s_psat/${req.params.name}`, old: before, new: after });
    return after;
  });
  app.put(P.x509PopCa, {
    schema: { tags, summary: 'Configure manufacturer CAs for x509pop', params: AttestorParams, body: X509PopCaBody, response: { 200: AttestorView, ...errorResponses } },
  }, async (req) => {
    const before = await configured(service, req.params.trustDomain, 'x509pop', req.params.name);
    const after = view(await service.configureX509Pop(req.params.trustDomain, req.params.name, req.body, req.actor));
    noteChange(req, { target: `x509pop/${req.params.name}`, old: before, new: after });
    return after;
  });
  app.delete(P.attestor, {
    schema: { tags, summary: 'Remove a node attestor', params: AttestorKindParams, response: { 204: Type.Null(), ...errorResponses } },
  }, async (req, reply) => {
    const kind = req.params.kind === 'k8s-psat' ? 'k8s_psat' : 'x509pop';
    const before = await configured(service, req.params.trustDomain, kind, req.params.name);
    await service.remove(req.params.trustDomain, kind, req.params.name, req.actor);
    noteChange(req, { target: `${kind}/${req.params.name}`, old: before });
    return reply.status(204).send(null);
  });
  app.get(P.caTls, {
    schema: { tags, summary: "The TLS listener's URL and the pin agents configured without a token need", response: { 200: CaTlsView, ...errorResponses } },
  }, async () => service.caTls());
}
