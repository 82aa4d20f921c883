import { Type } from 'typebox';
import { errorResponses } from '../../contract/common.js';
import { AdminList, AdminListQuery, AdminParams, AdminPaths13, AdminView, CreateAdminBody, CreatedAdminView } from '../../contract/admin-api.js';
import type { App } from '../http/types.js';
import { noteChange } from './access.js';
import type { AdminCredential } from './model.js';
import type { AdminAuthService } from './service.js';

export function adminView(c: AdminCredential): AdminView {
  return {
    name: c.name,
    role: c.role,
    trustDomains: c.trustDomains === null ? null : [...c.trustDomains],
    createdAt: c.createdAt.toISOString(),
    createdBy: c.createdBy,
    expiresAt: c.expiresAt?.toISOString() ?? null,
    lastUsedAt: c.lastUsedAt?.toISOString() ?? null,
  };
}

/** `cairn admin create | list | revoke`: named admin credentials. */
export function registerAdminRoutes(app: App, admins: AdminAuthService): void {
  const tags = ['admin credentials'];
  app.post(AdminPaths13.admins, {
    schema: { tags, summary: 'Create a named admin credential; the answer carries its secret, shown this once', body: CreateAdminBody, response: { 201: CreatedAdminView, ...errorResponses } },
  }, async (req, reply) => {
    const { credential, token } = await admins.create(req.body, req.actor);
    noteChange(req, { target: credential.name, new: adminView(credential) });
    return reply.status(201).send({ ...adminView(credential), token });
  });

  app.get(AdminPaths13.admins, {
    schema: { tags, summary: 'List admin credentials (never their secrets)', querystring: AdminListQuery, response: { 200: AdminList, ...errorResponses } },
  }, async (req) => {
    const page = await admins.list(req.query.pageSize, req.query.pageToken);
    return { admins: page.items.map(adminView), ...(page.nextPageToken ? { nextPageToken: page.nextPageToken } : {}) };
  });

  app.delete(AdminPaths13.admin, {
    schema: { tags, summary: 'Revoke an admin credential: it stops working at once, on every replica', params: AdminParams, response: { 204: Type.Null(), ...errorResponses } },
  }, async (req, reply) => {
    const gone = await admins.revoke(req.params.name, req.actor);
    noteChange(req, { target: gone.name, old: adminView(gone) });
    return reply.status(204).send(null);
  });
}
