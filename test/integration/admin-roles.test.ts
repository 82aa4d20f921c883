import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdminAccess } from '../../ca/admin-auth/access.js';
import { ADMIN_ROUTES, type RouteRule } from '../../ca/admin-auth/route-table.js';
import type { AdminRecord } from '../../ca/admin-auth/record.js';
import { errorHandler } from '../../ca/http/errors.js';
import type { App } from '../../ca/http/types.js';
import { generateKeyAndCsr } from '../../lib/pkcs10.js';
import { redeem, type TestNode } from '../support/agent-client.js';
import { callAs, createAdmin, pathOf, recordOf } from '../support/admins.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';

const A = 'a.roles.test';
const B = 'b.roles.test';
const csr = (): string => generateKeyAndCsr().csr.toString('base64');
const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

describe(`admin roles, scopes and guards (${storeKind()} store)`, { timeout: 120_000 }, () => {
  let ca: TestCa;
  const tokens: Record<string, string> = {};
  const agents: Record<string, TestNode> = {};
  const entries: Record<string, string> = {};
  const templates: Record<string, string> = {};
  const as = (who: string, method: string, path: string, body?: unknown) => callAs(ca, who === 'bootstrap' ? ca.adminToken : tokens[who], method, path, body);
  const ok = async (who: string, method: string, path: string, body?: unknown) => {
    const res = await as(who, method, path, body);
    expect(res.status, `${who} ${method} ${path}: ${JSON.stringify(res.body)}`).toBeLessThan(300);
    return res.body;
  };
  const refused = async (who: string, method: string, path: string, body?: unknown) => {
    const res = await as(who, method, path, body);
    expect(res.status, `${who} ${method} ${path}: ${JSON.stringify(res.body)}`).toBe(403);
    expect(res.body.code).toBe('permission_denied');
    return res.body;
  };

  beforeAll(async () => {
    ca = await startTestCa();
    for (const td of [A, B]) {
      await ok('bootstrap', 'POST', '/v1/trust-domains', { name: td });
      const { token } = await ok('bootstrap', 'POST', '/v1/tokens', { trustDomain: td, agentId: `spiffe://${td}/node-1`, selectors: ['join_token:plain'] });
      agents[td] = (await redeem(token)).node!;
      entries[td] = (await ok('bootstrap', 'POST', '/v1/entries', { spiffeId: `spiffe://${td}/web`, parentId: agents[td]!.spiffeId, selectors: ['unix:uid:1000'] })).id;
      templates[td] = (await ok('bootstrap', 'POST', '/v1/templates', { trustDomain: td, parentId: agents[td]!.spiffeId, spiffeIdTemplate: 'spiffe://{td}/uid/{unix:uid}' })).id;
      await ok('bootstrap', 'POST', '/v1/x509-svids', { spiffeId: `spiffe://${td}/minted`, csr: csr() });
    }
    tokens.viewer = await createAdmin(ca, { name: 'viewer', role: 'viewer' });
    tokens.operator = await createAdmin(ca, { name: 'operator', role: 'operator' });
    tokens.opA = await createAdmin(ca, { name: 'op-a', role: 'operator', trustDomains: [A] });
    tokens.adminA = await createAdmin(ca, { name: 'admin-a', role: 'admin', trustDomains: [A] });
    tokens.viewerA = await createAdmin(ca, { name: 'viewer-a', role: 'viewer', trustDomains: [A] });
  }, 180_000);
  afterAll(() => ca.close());

  it('has exactly one row per admin route, on both listeners, and denies a route without one', async () => {
    for (const app of [ca.app, ca.tlsApp]) {
      const admin = app.routes.filter((r) => r.access === 'admin').map((r) => `${r.method} ${r.url}`);
      const missing = admin.filter((key) => !Object.hasOwn(ADMIN_ROUTES, key));
      expect(missing, 'admin routes without a row in ca/admin-auth/route-table.ts (add one: role, action, trust domain rule)').toEqual([]);
      const stale = Object.keys(ADMIN_ROUTES).filter((key) => !admin.includes(key));
      expect(stale, 'rows in ca/admin-auth/route-table.ts that name no admin route').toEqual([]);
    }
    for (const [key, rule] of Object.entries(ADMIN_ROUTES)) {
      expect(rule.action, key).toMatch(/^[a-z0-9_]+\.[a-z0-9_]+$/);
      // a row about no trust domain is open to every scope: only reads may be
      if (rule.trustDomain.from === 'none') expect([key.split(' ')[0], rule.role], key).toEqual(['GET', 'viewer']);
      if (WRITES.has(key.split(' ')[0]!)) expect(rule.role, `${key} writes: a viewer must not reach it`).not.toBe('viewer');
    }

    // the same hooks over a table that lacks the route: refused to the strongest credential
    const records: AdminRecord[] = [];
    const app = Fastify() as unknown as App;
    app.setErrorHandler(errorHandler);
    await app.register(async (admin) => {
      const table: Record<string, RouteRule> = { 'GET /listed': { role: 'viewer', action: 'test.listed', trustDomain: { from: 'none' } } };
      new AdminAccess({ clock: { now: () => new Date() }, tokens: ca.core.adminAuth, svids: { verify: async () => { throw new Error('unused'); } }, facts: { entry: async () => undefined, template: async () => undefined, adminParents: async () => [], aliasesFor: async () => [], nodesBannedBy: async () => [] }, sink: { append: async (r) => void records.push(r), appendAll: async (rs) => void records.push(...rs) }, table }).install(admin);
      admin.get('/listed', async () => ({ ok: true }));
      admin.get('/unlisted', async () => ({ ok: true }));
      admin.post('/unlisted', async () => ({ ok: true }));
    });
    const auth = { authorization: `Bearer ${ca.adminToken}` };
    expect((await app.inject({ method: 'GET', url: '/listed', headers: auth })).statusCode).toBe(200);
    for (const method of ['GET', 'POST'] as const) {
      const res = await app.inject({ method, url: '/unlisted', headers: auth, ...(method === 'POST' ? { payload: {} } : {}) });
      expect(res.statusCode).toBe(403);
      expect(res.json()).toMatchObject({ code: 'permission_denied', message: expect.stringContaining('no row in the access table') });
    }
    expect(records.map((r) => [r.actor, r.action, r.outcome, r.code])).toEqual([
      ['bootstrap', 'GET /unlisted', 'failure', 'permission_denied'],
      ['bootstrap', 'POST /unlisted', 'failure', 'permission_denied'],
    ]);
    await app.close();
  });

  it('a viewer reads everything and writes nothing', async () => {
    for (const key of Object.keys(ADMIN_ROUTES)) {
      const [method, url] = key.split(' ') as [string, string];
      const path = pathOf(url, { name: A, trustDomain: A, id: entries[A]!, kind: 'x509pop' });
      if (WRITES.has(method)) {
        const body = await refused('viewer', method, path, method === 'DELETE' ? undefined : {});
        expect(body.message).toContain('role');
      } else {
        const res = await as('viewer', method, path);
        expect(res.status, key).not.toBe(403);
        expect(res.status, key).not.toBe(401);
      }
    }
    expect((await ok('viewer', 'GET', '/v1/entries')).entries.map((e: { trustDomain: string }) => e.trustDomain).sort()).toEqual([A, B]);
  });

  it('an operator manages entries, tokens, agents and SVIDs, but no trust domain, attestor or admin credential', async () => {
    const e = await ok('operator', 'POST', '/v1/entries', { spiffeId: `spiffe://${A}/op`, parentId: agents[A]!.spiffeId, selectors: ['unix:uid:2000'] });
    await ok('operator', 'PATCH', `/v1/entries/${e.id}`, { selectors: ['unix:uid:2001'] });
    await ok('operator', 'DELETE', `/v1/entries/${e.id}`);
    await ok('operator', 'POST', '/v1/tokens', { trustDomain: A });
    await ok('operator', 'POST', '/v1/x509-svids', { spiffeId: `spiffe://${A}/op-minted`, csr: csr() });
    await ok('operator', 'POST', '/v1/jwt-svids', { spiffeId: `spiffe://${A}/op-minted`, audience: ['x'] });
    const { token } = await ok('operator', 'POST', '/v1/tokens', { trustDomain: A });
    const node = (await redeem(token)).node!;
    await ok('operator', 'POST', '/v1/agents/ban', { spiffeId: node.spiffeId });
    await ok('operator', 'POST', '/v1/agents/unban', { spiffeId: node.spiffeId });
    await ok('operator', 'POST', '/v1/agents/evict', { spiffeId: node.spiffeId });

    await refused('operator', 'POST', '/v1/trust-domains', { name: 'c.roles.test' });
    await refused('operator', 'PATCH', `/v1/trust-domains/${A}`, { jwtSvidTtlSeconds: 600 });
    await refused('operator', 'DELETE', `/v1/trust-domains/${A}?force=true`);
    await refused('operator', 'PUT', `/v1/trust-domains/${A}/attestors/x509pop/acme`, { caCertificates: 'x' });
    await refused('operator', 'PUT', `/v1/trust-domains/${A}/attestors/k8s-psat/prod`, { mode: 'jwks', allowedServiceAccounts: ['a:b'] });
    await refused('operator', 'DELETE', `/v1/trust-domains/${A}/attestors/x509pop/acme`);
    await refused('operator', 'POST', '/v1/admins', { name: 'sneaky', role: 'admin' });
    await refused('operator', 'DELETE', '/v1/admins/bootstrap');
    // every admin-role row refuses an operator, whatever the body
    for (const [key, rule] of Object.entries(ADMIN_ROUTES).filter(([, r]) => r.role === 'admin')) {
      const [method, url] = key.split(' ') as [string, string];
      await refused('operator', method, pathOf(url, { name: A, trustDomain: A, kind: 'x509pop' }), method === 'DELETE' ? undefined : {});
      expect(rule.role).toBe('admin');
    }
    expect((await ok('bootstrap', 'GET', `/v1/trust-domains/${A}`)).jwtSvidTtlSeconds).toBe(300);
    expect((await ok('bootstrap', 'GET', '/v1/admins')).admins.map((a: { name: string }) => a.name)).not.toContain('sneaky');
  });

  /** For every row that names a trust domain, a request at trust domain B: a credential scoped to A must get 403 from each. */
  const crossDomain = (): Record<string, [string, unknown?]> => ({
    'POST /v1/trust-domains': ['/v1/trust-domains', { name: 'c.roles.test' }],
    'GET /v1/trust-domains/:name': [`/v1/trust-domains/${B}`],
    'PATCH /v1/trust-domains/:name': [`/v1/trust-domains/${B}`, { jwtSvidTtlSeconds: 600 }],
    'DELETE /v1/trust-domains/:name': [`/v1/trust-domains/${B}?force=true`],
    'GET /v1/trust-domains/:trustDomain/attestors': [`/v1/trust-domains/${B}/attestors`],
    'PUT /v1/trust-domains/:trustDomain/attestors/k8s-psat/:name': [`/v1/trust-domains/${B}/attestors/k8s-psat/prod`, { mode: 'jwks', issuer: 'https://i.example', jwks: { keys: [] }, allowedServiceAccounts: ['a:b'] }],
    'PUT /v1/trust-domains/:trustDomain/attestors/x509pop/:name': [`/v1/trust-domains/${B}/attestors/x509pop/acme`, { caCertificates: 'x' }],
    'DELETE /v1/trust-domains/:trustDomain/attestors/:kind/:name': [`/v1/trust-domains/${B}/attestors/x509pop/acme`],
    'POST /v1/x509-svids': ['/v1/x509-svids', { spiffeId: `spiffe://${B}/w`, csr: csr() }],
    'GET /v1/x509-svids': [`/v1/x509-svids?trustDomain=${B}`],
    'POST /v1/jwt-svids': ['/v1/jwt-svids', { spiffeId: `spiffe://${B}/w`, audience: ['x'] }],
    'POST /v1/x509-svids/revoke': ['/v1/x509-svids/revoke', { spiffeId: `spiffe://${B}/w` }],
    'GET /v1/x509-svids/revoked': [`/v1/x509-svids/revoked?trustDomain=${B}`],
    'POST /v1/tokens': ['/v1/tokens', { trustDomain: B }],
    'POST /v1/entries': ['/v1/entries', { spiffeId: `spiffe://${B}/x`, parentId: agents[B]!.spiffeId, selectors: ['unix:uid:1'] }],
    // one item of B among A's refuses the whole batch
    'POST /v1/entries/batch': ['/v1/entries/batch', { entries: [{ spiffeId: `spiffe://${A}/x`, parentId: agents[A]!.spiffeId, selectors: ['unix:uid:1'] }, { spiffeId: `spiffe://${B}/x`, parentId: agents[B]!.spiffeId, selectors: ['unix:uid:1'] }] }],
    'GET /v1/entries': [`/v1/entries?trustDomain=${B}`],
    'GET /v1/entries/:id': [`/v1/entries/${entries[B]}`],
    'PATCH /v1/entries/:id': [`/v1/entries/${entries[B]}`, { selectors: ['unix:uid:1'] }],
    'DELETE /v1/entries/:id': [`/v1/entries/${entries[B]}`],
    'POST /v1/templates': ['/v1/templates', { trustDomain: B, parentId: agents[B]!.spiffeId, spiffeIdTemplate: 'spiffe://{td}/t/{unix:uid}' }],
    'GET /v1/templates': [`/v1/templates?trustDomain=${B}`],
    'GET /v1/templates/:id': [`/v1/templates/${templates[B]}`],
    'DELETE /v1/templates/:id': [`/v1/templates/${templates[B]}`],
    'GET /v1/agents': [`/v1/agents?trustDomain=${B}`],
    'POST /v1/agents/ban': ['/v1/agents/ban', { spiffeId: agents[B]!.spiffeId }],
    'POST /v1/agents/unban': ['/v1/agents/unban', { spiffeId: agents[B]!.spiffeId }],
    'POST /v1/agents/evict': ['/v1/agents/evict', { spiffeId: agents[B]!.spiffeId }],
    'GET /v1/agents/bans': [`/v1/agents/bans?trustDomain=${B}`],
    'GET /v1/trust-domains/:name/authorities': [`/v1/trust-domains/${B}/authorities`],
    'POST /v1/trust-domains/:name/authorities/prepare': [`/v1/trust-domains/${B}/authorities/prepare`, { kind: 'x509' }],
    'POST /v1/trust-domains/:name/authorities/activate': [`/v1/trust-domains/${B}/authorities/activate`, { kind: 'x509' }],
    'POST /v1/trust-domains/:name/authorities/import': [`/v1/trust-domains/${B}/authorities/import`, { kind: 'x509', certificate: '-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n' }],
    'POST /v1/trust-domains/:name/authorities/:id/taint': [`/v1/trust-domains/${B}/authorities/k1/taint`, { kind: 'x509' }],
    'POST /v1/trust-domains/:name/authorities/:id/revoke': [`/v1/trust-domains/${B}/authorities/k1/revoke`, { kind: 'x509', force: true }],
    'GET /v1/trust-domains/:trustDomain/federation/bundles': [`/v1/trust-domains/${B}/federation/bundles`],
    'GET /v1/trust-domains/:trustDomain/federation/bundles/:foreign': [`/v1/trust-domains/${B}/federation/bundles/partner.test`],
    'PUT /v1/trust-domains/:trustDomain/federation/bundles/:foreign': [`/v1/trust-domains/${B}/federation/bundles/partner.test`, { bundle: '{"keys":[]}' }],
    'DELETE /v1/trust-domains/:trustDomain/federation/bundles/:foreign': [`/v1/trust-domains/${B}/federation/bundles/partner.test?force=true`],
    'POST /v1/trust-domains/:trustDomain/federation/relationships': [`/v1/trust-domains/${B}/federation/relationships`, { foreignTrustDomain: 'partner.test', bundleEndpointUrl: 'https://partner.example/bundle', profile: 'https_web' }],
    'GET /v1/trust-domains/:trustDomain/federation/relationships': [`/v1/trust-domains/${B}/federation/relationships`],
    'GET /v1/trust-domains/:trustDomain/federation/relationships/:foreign': [`/v1/trust-domains/${B}/federation/relationships/partner.test`],
    'DELETE /v1/trust-domains/:trustDomain/federation/relationships/:foreign': [`/v1/trust-domains/${B}/federation/relationships/partner.test?force=true`],
    'POST /v1/trust-domains/:trustDomain/federation/relationships/:foreign/refresh': [`/v1/trust-domains/${B}/federation/relationships/partner.test/refresh`, {}],
  });

  it('a credential scoped to one trust domain cannot touch another through any route', async () => {
    const cases = crossDomain();
    // every row that finds a trust domain in the request (lists without a filter are the next test's)
    const scopedRows = Object.entries(ADMIN_ROUTES).filter(([, r]) => {
      const td = r.trustDomain;
      return td.from !== 'none' && td.from !== 'installation' && !(td.from === 'list' && td.query === undefined);
    });
    expect(scopedRows.map(([k]) => k).filter((k) => !cases[k]), 'rows without a cross-trust-domain case here').toEqual([]);
    for (const [key, [path, body]] of Object.entries(cases)) {
      const method = key.split(' ')[0]!;
      // the scoped admin has every role: only the scope stops it
      const res = await refused('adminA', method, path, body);
      expect(res.message, key).toMatch(/trust domain|scoped/);
    }
    // a ban by device fingerprint or node UID names its trust domain; with none, a scoped credential is refused
    await refused('adminA', 'POST', '/v1/agents/ban', { trustDomain: B, fingerprint: 'ab'.repeat(20) });
    await refused('adminA', 'POST', '/v1/agents/ban', { trustDomain: B, nodeUid: 'node-1' });
    await refused('adminA', 'POST', '/v1/agents/ban', { fingerprint: 'ab'.repeat(20) });
    await refused('adminA', 'POST', '/v1/agents/ban', { trustDomain: A, spiffeId: agents[B]!.spiffeId });
    // a revocation by serial alone names no trust domain: a scoped credential must add its own
    await refused('adminA', 'POST', '/v1/x509-svids/revoke', { serial: 'ab12' });
    await refused('adminA', 'POST', '/v1/x509-svids/revoke', { serial: 'ab12', trustDomain: B });
    expect((await ok('bootstrap', 'GET', '/v1/agents/bans')).bans).toEqual([]);
    // nothing happened in B
    expect((await ok('bootstrap', 'GET', `/v1/entries/${entries[B]}`)).selectors).toEqual(['unix:uid:1000']);
    expect((await ok('bootstrap', 'GET', `/v1/templates/${templates[B]}`)).id).toBe(templates[B]);
    expect((await ok('bootstrap', 'GET', `/v1/agents?trustDomain=${B}`)).agents.find((a: { spiffeId: string }) => a.spiffeId === agents[B]!.spiffeId).banned).toBe(false);
    expect((await ok('bootstrap', 'GET', `/v1/trust-domains/${B}`)).jwtSvidTtlSeconds).toBe(300);
    // and the same requests in A work for it
    await ok('adminA', 'PATCH', `/v1/trust-domains/${A}`, { jwtSvidTtlSeconds: 300 });
    await ok('adminA', 'GET', `/v1/entries/${entries[A]}`);
    await ok('adminA', 'POST', '/v1/tokens', { trustDomain: A });
  });

  it('lists show a scoped credential only its trust domains, with or without a filter', async () => {
    const only = (items: { trustDomain?: string; name?: string }[]) => [...new Set(items.map((i) => i.trustDomain ?? i.name))];
    for (const who of ['viewerA', 'opA', 'adminA']) {
      expect(only((await ok(who, 'GET', '/v1/entries')).entries)).toEqual([A]);
      expect(only((await ok(who, 'GET', `/v1/entries?trustDomain=${A}`)).entries)).toEqual([A]);
      expect(only((await ok(who, 'GET', '/v1/agents')).agents)).toEqual([A]);
      expect(only((await ok(who, 'GET', '/v1/x509-svids')).svids)).toEqual([A]);
      expect((await ok(who, 'GET', `/v1/x509-svids?spiffeIdPrefix=${encodeURIComponent(`spiffe://${B}/`)}`)).svids).toEqual([]);
      expect((await ok(who, 'GET', `/v1/entries?spiffeId=${encodeURIComponent(`spiffe://${B}/web`)}`)).entries).toEqual([]);
      expect(only((await ok(who, 'GET', '/v1/trust-domains')).trustDomains)).toEqual([A]);
      // paging stays within the scope
      const first = await ok(who, 'GET', '/v1/entries?pageSize=1');
      expect(first.entries).toHaveLength(1);
    }
    // an unscoped credential sees both
    expect(only((await ok('viewer', 'GET', '/v1/entries')).entries).sort()).toEqual([A, B]);
    // and the deny-list
    for (const td of [A, B]) await ok('bootstrap', 'POST', '/v1/agents/ban', { trustDomain: td, nodeUid: 'listed-node' });
    expect(only((await ok('opA', 'GET', '/v1/agents/bans')).bans)).toEqual([A]);
    expect(only((await ok('viewer', 'GET', '/v1/agents/bans')).bans).sort()).toEqual([A, B]);
    for (const td of [A, B]) await ok('bootstrap', 'POST', '/v1/agents/unban', { trustDomain: td, nodeUid: 'listed-node' });
  });

  it('admin credentials are managed only by admins scoped to every trust domain', async () => {
    await refused('adminA', 'POST', '/v1/admins', { name: 'from-scoped', role: 'admin' });
    await refused('adminA', 'DELETE', '/v1/admins/viewer');
    await refused('viewerA', 'GET', '/v1/admins');
    const list = await ok('viewer', 'GET', '/v1/admins');
    expect(list.admins.map((a: { name: string }) => a.name)).toEqual(['admin-a', 'bootstrap', 'op-a', 'operator', 'viewer', 'viewer-a']);
    expect(JSON.stringify(list)).not.toContain('cairn-admin.');
    expect(list.admins.find((a: { name: string }) => a.name === 'op-a')).toMatchObject({ role: 'operator', trustDomains: [A], expiresAt: null, createdBy: 'bootstrap' });
  });

  it('operators cannot make, change or feed admin entries (no way to an admin SVID of their own)', async () => {
    // an admin entry served through a node alias, and one parented to an agent directly
    const alias = `spiffe://${A}/nodes/prod`;
    const aliasEntry = await ok('bootstrap', 'POST', '/v1/entries', { spiffeId: alias, parentId: `spiffe://${A}/cairn/server`, selectors: ['join_token:prod'] });
    const viaAlias = await ok('bootstrap', 'POST', '/v1/entries', { spiffeId: `spiffe://${A}/ops-tool`, parentId: alias, selectors: ['unix:uid:0'], admin: true, adminRole: 'operator' });
    const { token } = await ok('bootstrap', 'POST', '/v1/tokens', { trustDomain: A, agentId: `spiffe://${A}/admin-host` });
    const adminHost = (await redeem(token)).node!;
    const direct = await ok('bootstrap', 'POST', '/v1/entries', { spiffeId: `spiffe://${A}/breakglass`, parentId: adminHost.spiffeId, selectors: ['unix:uid:0'], admin: true });
    expect(direct.adminRole).toBe('admin');
    expect(viaAlias.adminRole).toBe('operator');

    for (const who of ['operator', 'opA']) {
      await refused(who, 'POST', '/v1/entries', { spiffeId: `spiffe://${A}/me`, parentId: agents[A]!.spiffeId, selectors: ['unix:uid:3000'], admin: true });
      await refused(who, 'POST', '/v1/entries', { spiffeId: `spiffe://${A}/me`, parentId: agents[A]!.spiffeId, selectors: ['unix:uid:3000'], adminRole: 'viewer' });
      await refused(who, 'PATCH', `/v1/entries/${entries[A]}`, { admin: true });
      await refused(who, 'PATCH', `/v1/entries/${direct.id}`, { selectors: ['unix:uid:3000'] });
      await refused(who, 'PATCH', `/v1/entries/${direct.id}`, { parentId: agents[A]!.spiffeId });
      await refused(who, 'DELETE', `/v1/entries/${direct.id}`);
      // the alias that serves an admin entry, and a second alias entry with its ID
      await refused(who, 'PATCH', `/v1/entries/${aliasEntry.id}`, { selectors: ['join_token:mine'] });
      await refused(who, 'POST', '/v1/entries', { spiffeId: alias, parentId: `spiffe://${A}/cairn/server`, selectors: ['join_token:mine'] });
      // in a batch too, each item as its own request: one admin item (here a string the schema turns into
      // true, so the guard must read items after their coercion) or one alias item refuses the whole batch
      const plain = { spiffeId: `spiffe://${A}/batch-${who}`, parentId: agents[A]!.spiffeId, selectors: ['unix:uid:3001'] };
      for (const bad of [{ ...plain, spiffeId: `spiffe://${A}/me`, admin: 'true' }, { ...plain, adminRole: 'viewer' }, { spiffeId: alias, parentId: `spiffe://${A}/cairn/server`, selectors: ['join_token:mine'] }]) {
        expect((await refused(who, 'POST', '/v1/entries/batch', { entries: [plain, bad] })).message).toMatch(/^entries\[1\]: /);
      }
      expect((await ok('bootstrap', 'GET', `/v1/entries?spiffeId=${encodeURIComponent(plain.spiffeId)}`)).entries).toEqual([]);
      expect((await ok(who, 'POST', '/v1/entries/batch', { entries: [plain] })).results[0].entry.spiffeId).toBe(plain.spiffeId);
      // a join token for the agent that serves an admin entry, or one whose selectors join that alias
      await refused(who, 'POST', '/v1/tokens', { trustDomain: A, agentId: adminHost.spiffeId });
      await refused(who, 'POST', '/v1/tokens', { trustDomain: A, selectors: ['join_token:prod', 'join_token:extra'] });
      // other tokens and entries stay theirs
      await ok(who, 'POST', '/v1/tokens', { trustDomain: A, selectors: ['join_token:plain'] });
      await ok(who, 'POST', '/v1/tokens', { trustDomain: A, agentId: `spiffe://${A}/node-2` });
    }
    // a banned agent that serves an admin entry is unbanned by admins only
    await ok('operator', 'POST', '/v1/agents/ban', { spiffeId: adminHost.spiffeId });
    await refused('operator', 'POST', '/v1/agents/unban', { spiffeId: adminHost.spiffeId });
    await ok('bootstrap', 'POST', '/v1/agents/unban', { spiffeId: adminHost.spiffeId });
    // and by what an x509pop or k8s_psat agent is banned by: its device fingerprint, its node UID
    const fp = 'c0ffee'.repeat(6) + 'c0fe';
    const psatAgent = `spiffe://${A}/cairn/agent/k8s_psat/prod/uid-7`;
    const viaDevice = await ok('bootstrap', 'POST', '/v1/entries', { spiffeId: `spiffe://${A}/device-admin`, parentId: `spiffe://${A}/cairn/agent/x509pop/${fp}`, selectors: ['unix:uid:0'], admin: true });
    const viaNode = await ok('bootstrap', 'POST', '/v1/entries', { spiffeId: `spiffe://${A}/node-admin`, parentId: psatAgent, selectors: ['unix:uid:0'], admin: true });
    await ok('bootstrap', 'POST', '/v1/agents/ban', { trustDomain: A, fingerprint: fp.toUpperCase() });
    await ok('bootstrap', 'POST', '/v1/agents/ban', { trustDomain: A, nodeUid: 'uid-7' });
    await refused('operator', 'POST', '/v1/agents/unban', { trustDomain: A, fingerprint: fp.match(/../g)!.join(':') });
    await refused('operator', 'POST', '/v1/agents/unban', { trustDomain: A, nodeUid: 'uid-7' });
    await ok('bootstrap', 'DELETE', `/v1/entries/${viaDevice.id}`);
    await ok('bootstrap', 'DELETE', `/v1/entries/${viaNode.id}`);
    await ok('operator', 'POST', '/v1/agents/unban', { trustDomain: A, fingerprint: fp });
    await ok('operator', 'POST', '/v1/agents/unban', { trustDomain: A, nodeUid: 'uid-7' });
    // admins may do all of it
    await ok('bootstrap', 'PATCH', `/v1/entries/${direct.id}`, { adminRole: 'viewer' });
    await ok('adminA', 'PATCH', `/v1/entries/${direct.id}`, { admin: false });
    expect((await ok('bootstrap', 'GET', `/v1/entries/${direct.id}`))).toMatchObject({ admin: false, adminRole: null });
    // an entry that is no longer admin (and no longer parents one) is an operator's again
    await ok('operator', 'DELETE', `/v1/entries/${direct.id}`);
    await ok('bootstrap', 'DELETE', `/v1/entries/${viaAlias.id}`);
    await ok('operator', 'PATCH', `/v1/entries/${aliasEntry.id}`, { selectors: ['join_token:other'] });
    await ok('operator', 'POST', '/v1/tokens', { trustDomain: A, agentId: adminHost.spiffeId });
  });

  it('entries carry adminRole: implied by it, cleared with admin, refused without admin', async () => {
    const e = await ok('bootstrap', 'POST', '/v1/entries', { spiffeId: `spiffe://${A}/roles`, parentId: agents[A]!.spiffeId, selectors: ['unix:uid:4000'], adminRole: 'viewer' });
    expect(e).toMatchObject({ admin: true, adminRole: 'viewer' });
    expect(await ok('bootstrap', 'PATCH', `/v1/entries/${e.id}`, { selectors: ['unix:uid:4001'] })).toMatchObject({ admin: true, adminRole: 'viewer' });
    expect(await ok('bootstrap', 'PATCH', `/v1/entries/${e.id}`, { admin: false })).toMatchObject({ admin: false, adminRole: null });
    expect(await ok('bootstrap', 'PATCH', `/v1/entries/${e.id}`, { admin: true })).toMatchObject({ admin: true, adminRole: 'admin' });
    const bad = await as('bootstrap', 'POST', '/v1/entries', { spiffeId: `spiffe://${A}/roles2`, parentId: agents[A]!.spiffeId, selectors: ['unix:uid:4000'], admin: false, adminRole: 'viewer' });
    expect([bad.status, bad.body.code]).toEqual([400, 'invalid_request']);
    const wrong = await as('bootstrap', 'POST', '/v1/entries', { spiffeId: `spiffe://${A}/roles3`, parentId: agents[A]!.spiffeId, selectors: ['unix:uid:4000'], adminRole: 'root' });
    expect([wrong.status, wrong.body.code]).toEqual([400, 'invalid_request']);
    await ok('bootstrap', 'DELETE', `/v1/entries/${e.id}`);
  });

  it('records every change with the actor\'s name, old → new and the outcome; refusals and failed authentication too; never a secret', async () => {
    const before = ca.logs().length;
    await ok('operator', 'PATCH', `/v1/entries/${entries[A]}`, { selectors: ['unix:uid:1001'] });
    await refused('viewer', 'POST', '/v1/tokens', { trustDomain: A });
    await refused('opA', 'GET', `/v1/entries/${entries[B]}`);
    expect((await callAs(ca, 'cairn-admin.not-a-real-one-but-long-enough-to-look-real', 'GET', '/v1/entries')).status).toBe(401);
    expect((await callAs(ca, undefined, 'DELETE', `/v1/entries/${entries[A]}`)).status).toBe(401);
    const created = await ok('bootstrap', 'POST', '/v1/admins', { name: 'rec', role: 'viewer', ttlSeconds: 3600 });
    await ok('bootstrap', 'DELETE', '/v1/admins/rec');
    await ok('operator', 'PATCH', `/v1/entries/${entries[A]}`, { selectors: ['unix:uid:1000'] });
    // the last request's record is written once its response has gone out
    await recordOf(ca, 'admin.action', (r) => r.action === 'entry.update' && r.new?.selectors?.[0] === 'unix:uid:1000', before);
    const lines = ca.logs().slice(before).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>);
    const records = lines.filter((l) => l.event === 'admin.action' || l.event === 'admin.auth_failed');
    const update = records.find((r) => r.action === 'entry.update')!;
    expect(update).toMatchObject({ event: 'admin.action', actor: 'operator', credential: 'token', target: entries[A], trustDomain: A, outcome: 'success', status: 200, old: { selectors: ['unix:uid:1000'] }, new: { selectors: ['unix:uid:1001'] } });
    expect(records.find((r) => r.actor === 'viewer')).toMatchObject({ action: 'token.create', outcome: 'failure', status: 403, code: 'permission_denied' });
    expect(records.find((r) => r.actor === 'op-a')).toMatchObject({ action: 'entry.show', outcome: 'failure', status: 403, code: 'permission_denied', target: entries[B] });
    const failed = records.filter((r) => r.event === 'admin.auth_failed');
    expect(failed.map((r) => [r.actor, r.credential, r.status, r.code])).toEqual([
      ['anonymous', 'token', 401, 'unauthenticated'],
      ['anonymous', 'none', 401, 'unauthenticated'],
    ]);
    expect(records.find((r) => r.action === 'admin.create')).toMatchObject({ actor: 'bootstrap', target: 'rec', new: { name: 'rec', role: 'viewer' } });
    expect(records.find((r) => r.action === 'admin.revoke')).toMatchObject({ actor: 'bootstrap', target: 'rec', old: { name: 'rec' } });
    // the services' own lines carry the same actor
    expect(lines.find((l) => l.event === 'entry.updated')).toMatchObject({ actor: 'operator' });
    const text = ca.logs().slice(before);
    expect(text).not.toContain(created.token);
    expect(text).not.toContain('not-a-real-one');
    expect(text).not.toContain('admin:bootstrap');
  });
});
