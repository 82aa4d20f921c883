import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import {
  AgentJwtBody, AgentPaths, AttestBody, BatchX509Body, BatchX509Response, DeviceJwtBody, DeviceSvidMessage, JwtSvidMessage, RenewBody, SyncQuery, SyncResponse, X509SvidMessage,
} from '../../contract/agent-api.js';
import { errorResponses } from '../../contract/common.js';
import type { App } from '../http/types.js';
import type { IssuedX509Svid, MintedJwtSvid } from '../issuance/service.js';
import type { NodeKind } from '../nodes/store.js';
import type { SyncService } from '../sync/service.js';
import type { DeviceSvid, EnrollmentService } from './service.js';
import type { PeerCertificates } from '../authority/client-svid.js';

export function x509Message(s: IssuedX509Svid): X509SvidMessage {
  return { ...batchSvidMessage(s), bundle: s.bundle.map((c) => c.toString('base64')) };
}

/** An SVID in a batch answer: its bundle goes once beside the results, so it is not encoded per SVID. */
function batchSvidMessage(s: IssuedX509Svid): Omit<X509SvidMessage, 'bundle'> {
  return { spiffeId: s.spiffeId, chain: s.chain.map((c) => c.toString('base64')), expiresAt: s.notAfter.toISOString(), serial: s.serial };
}

export function deviceMessage(d: DeviceSvid): DeviceSvidMessage {
  return {
    ...x509Message(d.svid),
    federatedBundles: Object.fromEntries(d.federated.map((b) => [b.trustDomain, b.bundle.x509Authorities.map((c) => c.toString('base64'))])),
  };
}

const jwtMessage = (m: MintedJwtSvid) => ({ spiffeId: m.spiffeId, token: m.token, expiresAt: m.expiresAt.toISOString() });

/** The certificate chain the client presented on this TLS connection, leaf first, as DER. */
export function peerChain(req: FastifyRequest): Buffer[] {
  const socket = req.raw.socket as TLSSocket;
  if (typeof socket.getPeerCertificate !== 'function') return [];
  const chain: Buffer[] = [];
  let cert = socket.getPeerCertificate(true);
  const seen = new Set<string>();
  while (cert && cert.raw && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    chain.push(cert.raw);
    cert = cert.issuerCertificate;
  }
  return chain;
}

/**
 * The client's certificates on this connection: the leaf at once (cheap), the whole chain only when
 * asked (getPeerCertificate(true) builds every certificate's fields and fingerprints).
 */
export function peerCertificates(req: FastifyRequest): PeerCertificates {
  const socket = req.raw.socket as TLSSocket;
  if (typeof socket.getPeerX509Certificate !== 'function') return { leaf: undefined, chain: () => [] };
  return { leaf: socket.getPeerX509Certificate()?.raw, chain: () => peerChain(req) };
}

const sourceOf = (req: FastifyRequest): string => req.ip;

/** Token redemption: no client certificate; failures are rate-limited per source address. */
export function registerBootstrapRoutes(app: App, enrollment: EnrollmentService): void {
  const tags = ['enrollment'];
  app.post(AgentPaths.attest, {
    schema: { tags, summary: 'Attest a node agent with a join token and a CSR', body: AttestBody, response: { 201: X509SvidMessage, ...errorResponses } },
  }, async (req, reply) => reply.status(201).send(x509Message(await enrollment.attestAgent(req.body.token, req.body.csr, sourceOf(req)))));

  app.post(AgentPaths.deviceRedeem, {
    schema: { tags, summary: 'Redeem a workload credential (agentless device or sidecar) with a CSR', body: AttestBody, response: { 201: DeviceSvidMessage, ...errorResponses } },
  }, async (req, reply) => reply.status(201).send(deviceMessage(await enrollment.redeemWorkload(req.body.token, req.body.csr, sourceOf(req)))));
}

/** Registers an mTLS context whose every route first authenticates the node's SVID. */
export async function registerNodeContext(app: App, kind: NodeKind, enrollment: EnrollmentService, routes: (ctx: App) => void): Promise<void> {
  await app.register(async (ctx) => {
    ctx.addHook('onRoute', (route) => {
      route.config = { ...route.config, access: 'agent' };
    });
    ctx.addHook('onRequest', async (req) => {
      // The connection is the key under which its verified chain is remembered.
      req.node = await enrollment.authenticate(peerCertificates(req), kind, req.raw.socket);
      req.actor = req.node.spiffeId;
    });
    routes(ctx);
  });
}

export function agentRoutes(enrollment: EnrollmentService, sync: SyncService) {
  return (app: App): void => {
    const tags = ['agent'];
    app.post(AgentPaths.renew, {
      schema: { tags, summary: "Renew the agent's own SVID", body: RenewBody, response: { 201: X509SvidMessage, ...errorResponses } },
    }, async (req, reply) => reply.status(201).send(x509Message(await enrollment.renew(req.node, req.body.csr))));

    app.get(AgentPaths.sync, {
      schema: { tags, summary: 'Entries and bundle changed since a revision (long-poll with wait)', querystring: SyncQuery, response: { 200: SyncResponse, ...errorResponses } },
    }, async (req, reply) => {
      const abort = new AbortController();
      reply.raw.once('close', () => abort.abort());
      try {
        return await sync.sync(req.node, { revision: req.query.revision ?? 0, bundleSequence: req.query.bundleSequence ?? 0, waitSeconds: req.query.wait ?? 0, crl: req.query.crl, federated: req.query.federated }, abort.signal);
      } catch (err) {
        // The agent hung up (or the CA is shutting down under it): nobody reads this answer.
        if (abort.signal.aborted) return reply.status(503).send({ code: 'store_unavailable', message: 'the request was abandoned' });
        throw err;
      }
    });

    app.post(AgentPaths.x509Svids, {
      schema: { tags, summary: 'Batch X.509-SVID issuance for entries this agent may serve', body: BatchX509Body, response: { 200: BatchX509Response, ...errorResponses } },
    }, async (req) => {
      const results = await enrollment.issueForEntries(req.node, req.body.requests);
      const bundle = results.find((r) => r.svid)?.svid!.bundle ?? (await enrollment.bundleOf(req.node));
      return {
        bundle: bundle.map((c) => c.toString('base64')),
        results: results.map((r) => (r.svid ? { entryId: r.entryId, svid: batchSvidMessage(r.svid) } : { entryId: r.entryId, error: r.error! })),
      };
    });

    app.post(AgentPaths.jwtSvids, {
      schema: { tags, summary: 'Mint a JWT-SVID for an entry this agent may serve', body: AgentJwtBody, response: { 201: JwtSvidMessage, ...errorResponses } },
    }, async (req, reply) => reply.status(201).send(jwtMessage(await enrollment.mintForEntry(req.node, req.body.entryId, req.body.audience))));
  };
}

export function deviceRoutes(enrollment: EnrollmentService) {
  return (app: App): void => {
    const tags = ['device'];
    app.post(AgentPaths.deviceRenew, {
      schema: { tags, summary: "Renew a device's SVID over mTLS with its current SVID (with the foreign bundles its credential federates with)", body: RenewBody, response: { 201: DeviceSvidMessage, ...errorResponses } },
    }, async (req, reply) => reply.status(201).send(deviceMessage(await enrollment.renewDevice(req.node, req.body.csr))));
    app.post(AgentPaths.deviceJwtSvids, {
      schema: { tags, summary: 'Mint a JWT-SVID for the device identity', body: DeviceJwtBody, response: { 201: JwtSvidMessage, ...errorResponses } },
    }, async (req, reply) => reply.status(201).send(jwtMessage(await enrollment.mintForDevice(req.node, req.body.audience))));
  };
}
