import { errorResponses } from '../../contract/common.js';
import { AdminPaths3, BanBody, BanList, BanListQuery, BanView, NodeActionBody, NodeList, NodeListQuery, NodeView, UnbanBody } from '../../contract/admin-api.js';
import { Type } from 'typebox';
import { listScope, noteChange } from '../admin-auth/access.js';
import type { App } from '../http/types.js';
import type { BanService } from '../bans/service.js';
import type { Ban } from '../bans/store.js';
import type { EnrollmentService } from '../enrollment/service.js';
import type { AttestedNode } from './store.js';

export function nodeView(n: AttestedNode): NodeView {
  return {
    spiffeId: n.spiffeId,
    trustDomain: n.trustDomain,
    kind: n.kind,
    attestationType: n.attestationType,
    selectors: [...n.selectors],
    serial: n.serial,
    expiresAt: n.expiresAt.toISOString(),
    banned: n.banned,
    createdAt: n.createdAt.toISOString(),
    updatedAt: n.updatedAt.toISOString(),
  };
}

export function banView(b: Ban): BanView {
  const key = { spiffe_id: 'spiffeId', x509pop_fingerprint: 'fingerprint', k8s_psat_node_uid: 'nodeUid' }[b.kind];
  return { trustDomain: b.trustDomain, [key]: b.value, reason: b.reason, createdBy: b.createdBy, createdAt: b.createdAt.toISOString() };
}

export function registerNodeRoutes(app: App, enrollment: EnrollmentService, bans: BanService): void {
  const tags = ['agents'];
  app.get(AdminPaths3.agents, {
    schema: { tags, summary: 'List attested agents and devices', querystring: NodeListQuery, response: { 200: NodeList, ...errorResponses } },
  }, async (req) => {
    const page = await enrollment.list(req.query.trustDomain, req.query.pageSize, req.query.pageToken, listScope(req));
    return { agents: page.items.map(nodeView), ...(page.nextPageToken ? { nextPageToken: page.nextPageToken } : {}) };
  });
  app.post(AdminPaths3.agentBan, {
    schema: {
      tags,
      summary: 'Ban a node by SPIFFE ID, x509pop device fingerprint or Kubernetes node UID, attested or not: every attestation and renewal is refused until unbanned; evicting does not lift it',
      body: BanBody,
      response: { 200: BanView, ...errorResponses },
    },
  }, async (req) => {
    const ban = banView(await bans.ban(req.body, req.actor));
    noteChange(req, { trustDomain: ban.trustDomain, new: ban });
    return ban;
  });
  app.post(AdminPaths3.agentUnban, {
    schema: { tags, summary: 'Lift a ban (the same target as banned)', body: UnbanBody, response: { 200: BanView, ...errorResponses } },
  }, async (req) => {
    const lifted = banView(await bans.unban(req.body, req.actor));
    noteChange(req, { trustDomain: lifted.trustDomain, old: lifted });
    return lifted;
  });
  app.get(AdminPaths3.agentBans, {
    schema: { tags, summary: 'The deny-list of nodes', querystring: BanListQuery, response: { 200: BanList, ...errorResponses } },
  }, async (req) => {
    const page = await bans.list(req.query.trustDomain, req.query.pageSize, req.query.pageToken, listScope(req));
    return { bans: page.items.map(banView), ...(page.nextPageToken ? { nextPageToken: page.nextPageToken } : {}) };
  });
  app.post(AdminPaths3.agentEvict, {
    schema: { tags, summary: 'Evict a node: its SVID stops working and it must attest again (a ban stays in force)', body: NodeActionBody, response: { 204: Type.Null(), ...errorResponses } },
  }, async (req, reply) => {
    await enrollment.evict(req.body.spiffeId, req.actor);
    return reply.status(204).send(null);
  });
}
