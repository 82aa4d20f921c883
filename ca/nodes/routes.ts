import { errorResponses } from '../../contract/common.js';
import { AdminPaths3, NodeActionBody, NodeList, NodeListQuery, NodeView } from '../../contract/admin-api.js';
import { Type } from 'typebox';
import type { App } from '../http/types.js';
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

export function registerNodeRoutes(app: App, enrollment: EnrollmentService): void {
  const tags = ['agents'];
  app.get(AdminPaths3.agents, {
    schema: { tags, summary: 'List attested agents and devices', querystring: NodeListQuery, response: { 200: NodeList, ...errorResponses } },
  }, async (req) => {
    const page = await enrollment.list(req.query.trustDomain, req.query.pageSize, req.query.pageToken);
    return { agents: page.items.map(nodeView), ...(page.nextPageToken ? { nextPageToken: page.nextPageToken } : {}) };
  });
  app.post(AdminPaths3.agentBan, {
    schema: { tags, summary: 'Ban a node: it is refused everything until unbanned', body: NodeActionBody, response: { 200: NodeView, ...errorResponses } },
  }, async (req) => nodeView(await enrollment.setBanned(req.body.spiffeId, true, req.actor)));
  app.post(AdminPaths3.agentUnban, {
    schema: { tags, summary: 'Lift a ban', body: NodeActionBody, response: { 200: NodeView, ...errorResponses } },
  }, async (req) => nodeView(await enrollment.setBanned(req.body.spiffeId, false, req.actor)));
  app.post(AdminPaths3.agentEvict, {
    schema: { tags, summary: 'Evict a node: its SVID stops working and it must attest again', body: NodeActionBody, response: { 204: Type.Null(), ...errorResponses } },
  }, async (req, reply) => {
    await enrollment.evict(req.body.spiffeId, req.actor);
    return reply.status(204).send(null);
  });
}
