import { Type } from 'typebox';
import { errorResponses } from '../../contract/common.js';
import { CreateTemplateBody, TemplateList, TemplateListQuery, TemplateParams, TemplatePaths, TemplateView } from '../../contract/template-api.js';
import { listScope, noteChange } from '../admin-auth/access.js';
import type { App } from '../http/types.js';
import type { TemplateService } from './service.js';
import { templateView } from './view.js';

export function registerTemplateRoutes(app: App, templates: TemplateService): void {
  const tags = ['workload identity templates'];
  app.post(TemplatePaths.templates, {
    schema: { tags, summary: 'Create a workload identity template', body: CreateTemplateBody, response: { 201: TemplateView, ...errorResponses } },
  }, async (req, reply) => {
    const view = templateView(await templates.create(req.body, req.actor));
    noteChange(req, { target: view.id, trustDomain: view.trustDomain, new: view });
    return reply.status(201).send(view);
  });

  app.get(TemplatePaths.templates, {
    schema: { tags, summary: 'List templates, filtered by trust domain or parent', querystring: TemplateListQuery, response: { 200: TemplateList, ...errorResponses } },
  }, async (req) => {
    const q = req.query;
    const page = await templates.list({ trustDomain: q.trustDomain, trustDomains: listScope(req), parentId: q.parentId }, q.pageSize, q.pageToken);
    return { templates: page.items.map(templateView), ...(page.nextPageToken ? { nextPageToken: page.nextPageToken } : {}) };
  });

  app.get(TemplatePaths.template, {
    schema: { tags, summary: 'Show a template', params: TemplateParams, response: { 200: TemplateView, ...errorResponses } },
  }, async (req) => templateView(await templates.get(req.params.id)));

  app.delete(TemplatePaths.template, {
    schema: { tags, summary: 'Delete a template; agents stop serving its identities', params: TemplateParams, response: { 204: Type.Null(), ...errorResponses } },
  }, async (req, reply) => {
    const gone = await templates.delete(req.params.id, req.actor);
    noteChange(req, { target: gone.id, trustDomain: gone.trustDomain, old: templateView(gone) });
    return reply.status(204).send(null);
  });
}
