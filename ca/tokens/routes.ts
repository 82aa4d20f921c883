import { errorResponses } from '../../contract/common.js';
import { AdminPaths3, CreatedTokenView, CreateTokenBody } from '../../contract/admin-api.js';
import { noteChange } from '../admin-auth/access.js';
import type { App } from '../http/types.js';
import type { TokenService } from './service.js';

export function registerTokenRoutes(app: App, tokens: TokenService): void {
  app.post(AdminPaths3.tokens, {
    schema: {
      tags: ['enrollment'],
      summary: 'Create a one-time token: a join token for an agent, or (with spiffeId) a workload credential for an agentless device',
      body: CreateTokenBody,
      response: { 201: CreatedTokenView, ...errorResponses },
    },
  }, async (req, reply) => {
    const t = await tokens.create(req.body, req.actor);
    noteChange(req, { target: t.id, new: { id: t.id, kind: t.kind, trustDomain: req.body.trustDomain, spiffeId: t.spiffeId, selectors: req.body.selectors ?? [], federatesWith: [...t.federatesWith], expiresAt: t.expiresAt.toISOString() } });
    return reply.status(201).send({ id: t.id, kind: t.kind, token: t.token, spiffeId: t.spiffeId, expiresAt: t.expiresAt.toISOString(), ...(t.kind === 'workload' ? { federatesWith: [...t.federatesWith] } : {}) });
  });
}
