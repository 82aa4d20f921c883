import { Type } from 'typebox';
import { errorResponses } from '../../contract/common.js';
import type { FastifyRequest } from 'fastify';
import {
  AdminPaths3,
  BatchCreateEntriesBody,
  BatchCreateEntriesResult,
  CreateEntryBody,
  ENTRY_BATCH_BODY_LIMIT,
  EntryList,
  EntryListQuery,
  EntryParams,
  EntryView,
  MAX_ENTRY_BATCH,
  UpdateEntryBody,
} from '../../contract/admin-api.js';
import { CairnError } from '../../lib/errors.js';
import { statusOf } from '../../lib/status.js';
import { listScope, noteChange, noteItems, safeTrustDomainOf, type ItemNote } from '../admin-auth/access.js';
import { toHttpError } from '../http/errors.js';
import type { App } from '../http/types.js';
import type { EntryInput, EntryService } from './service.js';
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

  // Items are checked one by one against the single create's schema (same compiler, same coercion),
  // before authorization reads them, so one malformed item fails alone. Kept per request here.
  const malformed = new WeakMap<FastifyRequest, Map<number, CairnError>>();
  app.post(AdminPaths3.entriesBatch, {
    bodyLimit: ENTRY_BATCH_BODY_LIMIT,
    schema: {
      tags,
      summary: `Create up to ${MAX_ENTRY_BATCH} registration entries in one transaction; each item succeeds or fails on its own`,
      body: BatchCreateEntriesBody,
      response: { 200: BatchCreateEntriesResult, ...errorResponses },
    },
    preValidation: async (req) => {
      const items = (req.body as { entries?: unknown } | null | undefined)?.entries;
      if (!Array.isArray(items)) return; // the schema answers
      if (items.length > MAX_ENTRY_BATCH) {
        throw new CairnError('batch_too_large', `entries holds ${items.length} items; at most ${MAX_ENTRY_BATCH} per request (split the batch)`, { details: { max: MAX_ENTRY_BATCH } });
      }
      const check = req.compileValidationSchema(CreateEntryBody, 'body');
      const failed = new Map<number, CairnError>();
      items.forEach((item, i) => {
        if (check(item)) return;
        const e = check.errors?.[0];
        failed.set(i, new CairnError('invalid_request', `body${e?.instancePath ?? ''} ${e?.message ?? 'is invalid'}`));
      });
      malformed.set(req, failed);
    },
  }, async (req) => {
    const failed = malformed.get(req) ?? new Map<number, CairnError>();
    const items = req.body.entries as EntryInput[];
    const pending = items.map((input, index) => ({ input, index })).filter(({ index }) => !failed.has(index));
    const outcomes = await entries.createMany(pending.map((t) => t.input), req.actor);
    const results: BatchCreateEntriesResult['results'] = new Array(items.length);
    const notes: ItemNote[] = new Array(items.length);
    const fail = (index: number, err: CairnError): void => {
      const { body } = toHttpError(err);
      results[index] = { error: body };
      // a malformed item may hold anything where its spiffeId should be: the record names only a string
      const spiffeId: unknown = (items[index] as { spiffeId?: unknown } | null | undefined)?.spiffeId;
      const target = typeof spiffeId === 'string' ? spiffeId : undefined;
      notes[index] = { note: { target, trustDomain: safeTrustDomainOf(target) }, status: statusOf(err.code).http, code: err.code };
    };
    for (const [index, err] of failed) fail(index, err);
    pending.forEach(({ index }, k) => {
      const outcome = outcomes[k]!;
      if ('error' in outcome) return fail(index, outcome.error);
      const view = entryView(outcome.entry);
      results[index] = { entry: view };
      notes[index] = { note: { target: view.id, trustDomain: view.trustDomain, new: view }, status: 201 };
    });
    noteItems(req, notes);
    return { results };
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

