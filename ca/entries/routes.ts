import { Type } from 'typebox';
import { errorResponses } from '../../contract/common.js';
import { AdminPaths3, CreateEntryBody, EntryList, EntryListQuery, EntryParams, EntryView, UpdateEntryBody } from '../../contract/admin-api.js';
import { listScope, noteChange } from '../admin-auth/access.js';
import type { App } from '../http/types.js';
import type { EntryService } from './service.js';
import { entryView } from './view.js';

export function registerEntryRoutes(app: App, entries: EntryService): void {
  const tags = ['registration entries'];
  app.post(AdminPaths3.entries, {
    schema: { tags, summary: 'Create a registration entry', body: CreateEntryBody, response: { 201: EntryView, ...errorResponses } },
  }, async (req, reply) => {
    const view = entryView(await entries.create(req.body, req.actor));
    noteChange(req, { target: view.id, trustDomain: view.trustDomain, new: view });
    return reply.status(201).send(view);
  });

  app.get(AdminPaths3.entries, {
    schema: { tags, summary: 'List entries, filtered by trust domain, parent, SPIFFE ID or selectors (all must match)', querystring: EntryListQuery, response: { 200: EntryList, ...errorResponses } },
  }, async (req) => {
    const q = req.query;
    const selectors = q.selector === undefined ? undefined : Array.isArray(q.selector) ? q.selector : [q.selector];
    const page = await entries.list({ trustDomain: q.trustDomain, trustDomains: listScope(req), parentId: q.parentId, spiffeId: q.spiffeId, selectors }, q.pageSize, q.pageToken);
    return { entries: page.items.map(entryView), ...(page.nextPageToken ? { nextPageToken: page.nextPageToken } : {}) };
  });

  app.get(AdminPaths3.entry, {
    schema: { tags, summary: 'Show an entry', params: EntryParams, response: { 200: EntryView, ...errorResponses } },
  }, async (req) => entryView(await entries.get(req.params.id)));

  app.patch(AdminPaths3.entry, {
    schema: { tags, summary: 'Update an entry', params: EntryParams, body: UpdateEntryBody, response: { 200: EntryView, ...errorResponses } },
  }, async (req) => entryView(await entries.update(req.params.id, req.body, req.actor, (before, after) => noteChange(req, { old: entryView(before), new: entryView(after) }))));

  app.delete(AdminPaths3.entry, {
    schema: { tags, summary: 'Delete an entry', params: EntryParams, response: { 204: Type.Null(), ...errorResponses } },
  }, async (req, reply) => {
    const gone = await entries.delete(req.params.id, req.actor);
    noteChange(req, { old: entryView(gone) });
    return reply.status(204).send(null);
  });
}
