import { createPublicKey, X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentPaths, type BatchX509Response } from '../../contract/agent-api.js';
import type { TemplateX509Response } from '../../contract/template-api.js';
import { generateKeyAndCsr } from '../../lib/pkcs10.js';
import { fetchPinnedAuthority, requestJson, type JsonResponse } from '../../lib/tls-client.js';
import { derToPem } from '../../spiffe/bundle/bundle.js';
import { subjectPublicKeyFromDer } from '../../ca/issuance/spki.js';
import { pemChain, redeem, type TestNode } from '../support/agent-client.js';
import { callAs, recordOf } from '../support/admins.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { referenceLeaf, testCaCertificate } from '../support/certs.js';
import { FakeClock } from '../support/clock.js';
import { storeKind } from '../support/db.js';

const TD = 'svid-admin.test';
const OTHER = 'other-svid-admin.test';

interface Creds {
  readonly cert: string;
  readonly key: string;
  readonly serial: string;
}

describe(`admin by X.509-SVID over mTLS (${storeKind()} store)`, { timeout: 120_000 }, () => {
  let ca: TestCa;
  let authority: string;
  let agent: TestNode;
  // the real time, moved by hand past an SVID's expiry
  const clock = new FakeClock(new Date());
  const admin = (method: string, path: string, body?: unknown) => callAs(ca, ca.adminToken, method, path, body);
  const asSvid = (creds: Pick<Creds, 'cert' | 'key'> | undefined, method: string, path: string, body?: unknown, bearer?: string): Promise<JsonResponse<any>> =>
    requestJson<any>(method, ca.tlsUrl + path, body, { ca: authority, ...(creds ? { cert: creds.cert, key: creds.key } : {}), ...(bearer ? { bearer } : {}) });
  /** What an agent gets for an entry it serves: the SVID and its key, as a workload holds them. */
  const svidFor = async (entryId: string, node = agent): Promise<Creds> => {
    const key = generateKeyAndCsr();
    const res = await node.call<BatchX509Response>('POST', AgentPaths.x509Svids, { requests: [{ entryId, csr: key.csr.toString('base64') }] });
    const item = res.body.results[0]!;
    if (!item.svid) throw new Error(`no SVID for ${entryId}: ${JSON.stringify(item.error)}`);
    return { cert: pemChain(item.svid), key: key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(), serial: item.svid.serial };
  };
  const entry = async (body: Record<string, unknown>): Promise<string> => {
    const res = await admin('POST', '/v1/entries', { parentId: agent.spiffeId, selectors: ['unix:uid:0'], ...body });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return res.body.id;
  };

  beforeAll(async () => {
    ca = await startTestCa({ clock });
    authority = await fetchPinnedAuthority(ca.tlsUrl, await ca.core.serverTls.pin());
    for (const td of [TD, OTHER]) expect((await admin('POST', '/v1/trust-domains', { name: td, x509SvidTtlSeconds: 3600 })).status).toBe(201);
    const { token } = (await admin('POST', '/v1/tokens', { trustDomain: TD, agentId: `spiffe://${TD}/host` })).body;
    agent = (await redeem(token)).node!;
  }, 120_000);
  afterAll(() => ca.close());

  it('an SVID of an entry marked admin calls the admin API with the entry\'s role, scoped to its trust domain, without a bearer token', async () => {
    const id = await entry({ spiffeId: `spiffe://${TD}/ops`, admin: true, adminRole: 'operator' });
    const creds = await svidFor(id);
    const list = await asSvid(creds, 'GET', '/v1/entries');
    expect(list.status, JSON.stringify(list.body)).toBe(200);
    expect(list.body.entries.map((e: { trustDomain: string }) => e.trustDomain)).toContain(TD);
    expect(new Set(list.body.entries.map((e: { trustDomain: string }) => e.trustDomain))).toEqual(new Set([TD]));
    // operator: entries yes, trust domains no; its own trust domain only
    const created = await asSvid(creds, 'POST', '/v1/entries', { spiffeId: `spiffe://${TD}/by-svid`, parentId: agent.spiffeId, selectors: ['unix:uid:77'] });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect((await asSvid(creds, 'PATCH', `/v1/trust-domains/${TD}`, { jwtSvidTtlSeconds: 600 })).body.code).toBe('permission_denied');
    expect((await asSvid(creds, 'POST', '/v1/tokens', { trustDomain: OTHER })).body.code).toBe('permission_denied');
    expect((await asSvid(creds, 'GET', '/v1/admins')).body.code).toBe('permission_denied');
    // recorded under the SPIFFE ID
    const line = await recordOf(ca, 'admin.action', (r) => r.action === 'entry.create' && r.target === created.body.id);
    expect(line).toMatchObject({ actor: `spiffe://${TD}/ops`, credential: 'svid', outcome: 'success', target: created.body.id });
    expect(ca.logs()).toContain(`"event":"entry.created"`);
    // the default role of an admin entry is admin (SPIRE's admin: true)
    const full = await svidFor(await entry({ spiffeId: `spiffe://${TD}/breakglass`, admin: true }));
    expect((await asSvid(full, 'PATCH', `/v1/trust-domains/${TD}`, { jwtSvidTtlSeconds: 600 })).status).toBe(200);
    expect((await asSvid(full, 'PATCH', `/v1/trust-domains/${OTHER}`, { jwtSvidTtlSeconds: 600 })).body.code).toBe('permission_denied');
  });

  it('an SVID issued from an admin template is an admin credential with its role; a plain template\'s is not, and deleting the template stops it', async () => {
    const template = async (body: Record<string, unknown>): Promise<string> => {
      const res = await admin('POST', '/v1/templates', { trustDomain: TD, parentId: agent.spiffeId, ...body });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      return res.body.id;
    };
    const byTemplate = async (templateId: string, selectors: string[]): Promise<Creds> => {
      const key = generateKeyAndCsr();
      const res = await agent.call<TemplateX509Response>('POST', AgentPaths.templateX509Svids, { requests: [{ templateId, selectors, csr: key.csr.toString('base64') }] });
      const item = res.body.results[0]!;
      if (!item.svid) throw new Error(`no SVID from template ${templateId}: ${JSON.stringify(item.error)}`);
      return { cert: pemChain(item.svid), key: key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(), serial: item.svid.serial };
    };
    const adminTpl = await template({ spiffeIdTemplate: 'spiffe://{td}/tpl-admin/{unix:uid}', adminRole: 'viewer' });
    const creds = await byTemplate(adminTpl, ['unix:uid:501']);
    const list = await asSvid(creds, 'GET', '/v1/templates');
    expect(list.status, JSON.stringify(list.body)).toBe(200);
    expect((await asSvid(creds, 'POST', '/v1/tokens', { trustDomain: TD })).body.code).toBe('permission_denied');
    // a template without admin: its SVIDs are workload SVIDs only, whatever ID they carry
    const plain = await byTemplate(await template({ spiffeIdTemplate: 'spiffe://{td}/tpl-plain/{unix:uid}' }), ['unix:uid:501']);
    expect((await asSvid(plain, 'GET', '/v1/templates')).status).toBe(401);
    expect((await admin('DELETE', `/v1/templates/${adminTpl}`)).status).toBe(204);
    expect((await asSvid(creds, 'GET', '/v1/templates')).status).toBe(401);
  });

  it('works only while the entry is marked admin: a removed flag or a deleted entry stops it at once', async () => {
    const id = await entry({ spiffeId: `spiffe://${TD}/flagged`, admin: true, adminRole: 'viewer' });
    const creds = await svidFor(id);
    expect((await asSvid(creds, 'GET', '/v1/trust-domains')).status).toBe(200);
    expect((await asSvid(creds, 'POST', '/v1/tokens', { trustDomain: TD })).body.code).toBe('permission_denied');
    expect((await admin('PATCH', `/v1/entries/${id}`, { admin: false })).status).toBe(200);
    const off = await asSvid(creds, 'GET', '/v1/trust-domains');
    expect([off.status, off.body.code]).toEqual([401, 'unauthenticated']);
    expect(off.body.message).toContain('not marked admin');
    expect((await admin('PATCH', `/v1/entries/${id}`, { adminRole: 'viewer' })).status).toBe(200);
    expect((await asSvid(creds, 'GET', '/v1/trust-domains')).status).toBe(200);
    expect((await admin('DELETE', `/v1/entries/${id}`)).status).toBe(204);
    const gone = await asSvid(creds, 'GET', '/v1/trust-domains');
    expect([gone.status, gone.body.code]).toEqual([401, 'unauthenticated']);
    expect(gone.body.message).toContain('no longer exists');
  });

  it('only an SVID issued for the admin entry counts: not a minted one, not one of another entry with the same ID, not an agent\'s', async () => {
    const spiffeId = `spiffe://${TD}/same-id`;
    await entry({ spiffeId, admin: true, adminRole: 'admin' });
    const otherEntry = await entry({ spiffeId, selectors: ['unix:uid:1234'] });
    const sibling = await svidFor(otherEntry);
    const key = generateKeyAndCsr();
    const minted = await admin('POST', '/v1/x509-svids', { spiffeId, csr: key.csr.toString('base64') });
    const mintedCreds = { cert: minted.body.certChain, key: key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() };
    for (const creds of [sibling, mintedCreds, { cert: pemChain(agent.svid), key: agent.keyPem }]) {
      const res = await asSvid(creds, 'GET', '/v1/trust-domains');
      expect([res.status, res.body.code]).toEqual([401, 'unauthenticated']);
      expect(res.body.message).toMatch(/not an admin SVID|not marked admin/);
    }
  });

  it('refuses an SVID signed by anyone else, even with a real admin SVID\'s ID and serial', async () => {
    const id = await entry({ spiffeId: `spiffe://${TD}/forged`, admin: true });
    const real = await svidFor(id);
    const serial = Buffer.from(new X509Certificate(real.cert).serialNumber, 'hex');
    for (const td of [TD, 'not-hosted.test']) {
      const rogue = await testCaCertificate(td);
      const key = generateKeyAndCsr();
      const now = new Date();
      const subjectKey = subjectPublicKeyFromDer(createPublicKey(key.privateKey).export({ format: 'der', type: 'spki' }));
      const leaf = await referenceLeaf(rogue, { spiffeId: `spiffe://${td}/forged`, serial, notBefore: new Date(now.getTime() - 60_000), notAfter: new Date(now.getTime() + 3600_000), dnsNames: [], publicKey: subjectKey }, subjectKey);
      const res = await asSvid({ cert: derToPem(leaf) + derToPem(rogue.der), key: key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() }, 'GET', '/v1/trust-domains');
      expect([res.status, res.body.code], td).toEqual([401, 'unauthenticated']);
    }
    const record = await recordOf(ca, 'admin.auth_failed', (r) => r.actor === 'spiffe://not-hosted.test/forged');
    expect(record).toMatchObject({ actor: 'spiffe://not-hosted.test/forged', credential: 'svid', outcome: 'failure', status: 401 });
  });

  it('stops when the SVID expires, or the agent it was issued to is banned or evicted', async () => {
    const id = await entry({ spiffeId: `spiffe://${TD}/aging`, admin: true, x509SvidTtl: 600 });
    const creds = await svidFor(id);
    expect((await asSvid(creds, 'GET', '/v1/trust-domains')).status).toBe(200);
    expect((await admin('POST', '/v1/agents/ban', { spiffeId: agent.spiffeId })).status).toBe(200);
    expect((await asSvid(creds, 'GET', '/v1/trust-domains')).body.message).toContain('no longer attested');
    expect((await admin('POST', '/v1/agents/unban', { spiffeId: agent.spiffeId })).status).toBe(200);
    expect((await asSvid(creds, 'GET', '/v1/trust-domains')).status).toBe(200);
    clock.advance(601);
    const expired = await asSvid(creds, 'GET', '/v1/trust-domains');
    expect([expired.status, expired.body.code]).toEqual([401, 'unauthenticated']);
    expect(expired.body.message).toContain('expired');
    clock.set(new Date());
    // eviction: a node of its own, evicted
    const { token } = (await admin('POST', '/v1/tokens', { trustDomain: TD, agentId: `spiffe://${TD}/host-2` })).body;
    const other = (await redeem(token)).node!;
    const evictable = await svidFor(await entry({ spiffeId: `spiffe://${TD}/evictable`, parentId: other.spiffeId, admin: true }), other);
    expect((await asSvid(evictable, 'GET', '/v1/trust-domains')).status).toBe(200);
    expect((await admin('POST', '/v1/agents/evict', { spiffeId: other.spiffeId })).status).toBe(204);
    expect((await asSvid(evictable, 'GET', '/v1/trust-domains')).status).toBe(401);
  });

  it('a bearer token wins over a client certificate; with neither, 401; on the plain listener there is no SVID path', async () => {
    const creds = await svidFor(await entry({ spiffeId: `spiffe://${TD}/both`, admin: true, adminRole: 'viewer' }));
    // the viewer SVID, with the bootstrap bearer: the bearer is who acts
    expect((await asSvid(creds, 'POST', '/v1/tokens', { trustDomain: TD }, ca.adminToken)).status).toBe(201);
    expect((await asSvid(creds, 'GET', '/v1/trust-domains', undefined, 'cairn-admin.wrong')).status).toBe(401);
    const none = await asSvid(undefined, 'GET', '/v1/trust-domains');
    expect([none.status, none.body.code]).toEqual([401, 'unauthenticated']);
    expect((await callAs(ca, undefined, 'GET', '/v1/trust-domains')).status).toBe(401);
  });
});
