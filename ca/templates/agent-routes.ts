import { AgentPaths } from '../../contract/paths.js';
import { JwtSvidMessage } from '../../contract/agent-api.js';
import { errorResponses } from '../../contract/common.js';
import { TemplateJwtBody, TemplateX509Body, TemplateX509Response } from '../../contract/template-api.js';
import { x509Message } from '../enrollment/routes.js';
import type { App } from '../http/types.js';
import type { IssuedX509Svid } from '../issuance/service.js';
import type { TemplateIssuance } from './issuance.js';

/** Agent routes (mTLS context) for issuance by template. */
export function templateAgentRoutes(issuance: TemplateIssuance, bundleOf: (trustDomain: string) => Promise<Buffer[]>) {
  return (app: App): void => {
    const tags = ['agent'];
    app.post(AgentPaths.templateX509Svids, {
      schema: { tags, summary: 'Batch X.509-SVID issuance by workload identity template: the CA renders each ID from the selectors the agent vouches for', body: TemplateX509Body, response: { 200: TemplateX509Response, ...errorResponses } },
    }, async (req) => {
      const results = await issuance.issueX509(req.node, req.body.requests);
      const first: IssuedX509Svid | undefined = results.find((r) => r.svid)?.svid;
      const bundle = first?.bundle ?? (await bundleOf(req.node.trustDomain));
      return {
        bundle: bundle.map((c) => c.toString('base64')),
        results: results.map((r) => {
          if (!r.svid) return { templateId: r.templateId, error: r.error! };
          const { bundle: _omit, ...svid } = x509Message(r.svid);
          return { templateId: r.templateId, svid };
        }),
      };
    });
    app.post(AgentPaths.templateJwtSvids, {
      schema: { tags, summary: 'Mint a JWT-SVID by workload identity template', body: TemplateJwtBody, response: { 201: JwtSvidMessage, ...errorResponses } },
    }, async (req, reply) => {
      const m = await issuance.mintJwt(req.node, req.body.templateId, req.body.selectors, req.body.audience);
      return reply.status(201).send({ spiffeId: m.spiffeId, token: m.token, expiresAt: m.expiresAt.toISOString() });
    });
  };
}
