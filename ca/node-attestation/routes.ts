import { Type } from 'typebox';
import { errorResponses } from '../../contract/common.js';
import { X509SvidMessage } from '../../contract/agent-api.js';
import {
  AttestorKindParams, AttestorList, AttestorParams, AttestorView, AttestPsatBody, AttestX509PopBody, CaTlsView, NodeAttestationPaths as P, PsatClusterBody,
  TrustDomainParams, X509PopCaBody, X509PopChallenge, X509PopChallengeBody,
} from '../../contract/node-attestation.js';
import { x509Message } from '../enrollment/routes.js';
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

export function registerAttestorAdminRoutes(app: App, service: NodeAttestationService): void {
  const tags = ['attestors'];
  app.get(P.attestors, {
    schema: { tags, summary: 'Node attestors configured for a trust domain', params: TrustDomainParams, response: { 200: AttestorList, ...errorResponses } },
  }, async (req) => ({ attestors: (await service.list(req.params.trustDomain)).map(view) }));
  app.put(P.psatCluster, {
    schema: { tags, summary: 'Configure a Kubernetes cluster for k8s_psat (TokenReview or offline JWKS); credentials are a set of the CA\'s own (kubeCredentials) or inline, never a host path', params: AttestorParams, body: PsatClusterBody, response: { 200: AttestorView, ...errorResponses } },
  }, async (req) => view(await service.configurePsatCluster(req.params.trustDomain, req.params.name, req.body, req.actor)));
  app.put(P.x509PopCa, {
    schema: { tags, summary: 'Configure manufacturer CAs for x509pop', params: AttestorParams, body: X509PopCaBody, response: { 200: AttestorView, ...errorResponses } },
  }, async (req) => view(await service.configureX509Pop(req.params.trustDomain, req.params.name, req.body, req.actor)));
  app.delete(P.attestor, {
    schema: { tags, summary: 'Remove a node attestor', params: AttestorKindParams, response: { 204: Type.Null(), ...errorResponses } },
  }, async (req, reply) => {
    await service.remove(req.params.trustDomain, req.params.kind === 'k8s-psat' ? 'k8s_psat' : 'x509pop', req.params.name, req.actor);
    return reply.status(204).send(null);
  });
  app.get(P.caTls, {
    schema: { tags, summary: "The TLS listener's URL and the pin agents configured without a token need", response: { 200: CaTlsView, ...errorResponses } },
  }, async () => service.caTls());
}
