import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CaClient, CaError } from '../../node-agent/ca-client.js';
import { generateKeyAndCsr } from '../../lib/pkcs10.js';
import { callAs, createAdmin } from '../support/admins.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';
import { fetchAsUid, grpc } from '../support/grpc-workload.js';
import { runCairnAsync, spawnCairn, type Spawned } from '../support/processes.js';

const TD = 'tpl.test';
const isRoot = process.getuid?.() === 0;
// uids with no entry, served by templates; names in the agent's /etc/passwd (a bind mount in its own mount namespace)
const ALICE = 3151; // tpl-alice
const DOTDOT = 3152; // ".."
const SLASHY = 3153; // "evil/../../cairn/agent/x"
const ENTRY_UID = 3154; // has an explicit entry
const BOB = 3155; // tpl-bob
const PASSWD_EXTRA = [`tpl-alice:x:${ALICE}:${ALICE}::/:/bin/false`, `..:x:${DOTDOT}:${DOTDOT}::/:/bin/false`, `evil/../../cairn/agent/x:x:${SLASHY}:${SLASHY}::/:/bin/false`, `tpl-bob:x:${BOB}:${BOB}::/:/bin/false`];

async function until<T>(what: string, f: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A private mount namespace where /etc/passwd is `file`; a sleep holds it. */
async function passwdNamespace(file: string): Promise<{ wrapper: string[]; close(): Promise<void> }> {
  const holder: ChildProcess = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'mount --bind "$0" /etc/passwd && echo mounted && exec sleep infinity', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => holder.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    let err = '';
    holder.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    holder.stdout!.on('data', (d: Buffer) => (d.toString().includes('mounted') ? resolve() : undefined));
    void exited.then(() => reject(new Error(`could not bind-mount a passwd file (root needed): ${err}`)));
  });
  return {
    wrapper: ['nsenter', '-t', String(holder.pid), '-m', '--'],
    async close() {
      if (holder.exitCode === null && holder.signalCode === null) holder.kill('SIGKILL');
      await exited;
    },
  };
}

/**
 * Registration by template, off-cluster with the unix attestor: a real agent process (its /etc/passwd
 * holding hostile user names, in its own mount namespace), callers as real processes under other uids,
 * no entries for them. The CA runs in this process, on both stores.
 */
describe.runIf(isRoot)(`workload identity templates end to end (${storeKind()} store)`, () => {
  let ca: TestCa;
  let dir: string;
  let ns: Awaited<ReturnType<typeof passwdNamespace>> | undefined;
  let agent: Spawned | undefined;
  let agentId: string;
  let socket: string;
  let uidTemplate: string;
  const admin = (method: string, path: string, body?: unknown) => callAs(ca, ca.adminToken, method, path, body);

  beforeAll(async () => {
    ca = await startTestCa();
    dir = mkdtempSync(join(tmpdir(), 'cairn-tpl-'));
    chmodSync(dir, 0o755);
    await ca.admin('/v1/trust-domains', { body: { name: TD } });
    const token = await (await ca.admin('/v1/tokens', { body: { trustDomain: TD } })).json();
    agentId = token.spiffeId;
    const passwd = join(dir, 'passwd');
    writeFileSync(passwd, readFileSync('/etc/passwd', 'utf8').trimEnd() + '\n' + PASSWD_EXTRA.join('\n') + '\n', { mode: 0o644 });
    ns = await passwdNamespace(passwd);
    socket = join(dir, 'sock', 'agent.sock');
    mkdirSync(join(dir, 'sock'), { mode: 0o755 });
    await admin('POST', '/v1/entries', { spiffeId: `spiffe://${TD}/explicit`, parentId: agentId, selectors: [`unix:uid:${ENTRY_UID}`] });
    const t = await admin('POST', '/v1/templates', { trustDomain: TD, parentId: agentId, spiffeIdTemplate: 'spiffe://{td}/uid/{unix:uid}', hint: 'by-uid' });
    expect(t.status).toBe(201);
    uidTemplate = t.body.id;
    agent = spawnCairn(['agent', 'start', '--join-token', token.token, '--data-dir', join(dir, 'data'), '--socket', socket], {}, [], { wrapper: ns.wrapper });
    await agent.waitFor(/"msg":"agent serving the Workload API"/, 60_000);
    // serving once its first sync is in (until then callers get Unavailable)
    const health = await runCairnAsync(['agent', 'healthcheck', '--socket', socket, '--wait', '60s']);
    expect(health.status, health.stderr).toBe(0);
  }, 120_000);

  afterAll(async () => {
    await agent?.stop();
    await ns?.close();
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('one template serves two callers with different uids, each its own SVID, with no entries for them', async () => {
    expect(await fetchAsUid(socket, ALICE)).toBe(`DATA spiffe://${TD}/uid/${ALICE}`);
    expect(await fetchAsUid(socket, BOB)).toBe(`DATA spiffe://${TD}/uid/${BOB}`);
    const entries = await admin('GET', `/v1/entries?trustDomain=${TD}`);
    expect(entries.body.entries.map((e: { spiffeId: string }) => e.spiffeId)).toEqual([`spiffe://${TD}/explicit`]);
    // the CA recorded both SVIDs as issued from the template, to this agent
    const svids = await admin('GET', `/v1/x509-svids?trustDomain=${TD}&spiffeIdPrefix=${encodeURIComponent(`spiffe://${TD}/uid/`)}`);
    expect(svids.body.svids.map((s: { spiffeId: string }) => s.spiffeId).sort()).toEqual([`spiffe://${TD}/uid/${ALICE}`, `spiffe://${TD}/uid/${BOB}`]);
    expect(new Set(svids.body.svids.map((s: { issuedTo: string }) => s.issuedTo))).toEqual(new Set([agentId]));
  });

  it('an explicit entry wins over the template', async () => {
    expect(await fetchAsUid(socket, ENTRY_UID)).toBe(`DATA spiffe://${TD}/explicit`);
  });

  it('the CA renders the ID itself: a compromised agent cannot get an ID outside the template', async () => {
    const state = JSON.parse(readFileSync(join(dir, 'data', 'agent', 'agent-svid.json'), 'utf8'));
    const client = new CaClient({ caUrl: state.caUrl, authorityPem: state.authorityPem, chainPem: state.chainPem, keyPem: state.keyPem });
    const csr = () => generateKeyAndCsr('ec-p256').csr.toString('base64');
    try {
      // selector values that would leave their segment, or reach Cairn's namespace
      for (const value of ['1/admin', '1/../../cairn/agent/x', '..', '1%2F..', '']) {
        const res = await client.issueByTemplate([{ templateId: uidTemplate, selectors: [`unix:uid:${value}`], csr: csr() }]);
        expect(res.results[0]!.svid).toBeUndefined();
        expect(res.results[0]!.error?.code).toMatch(/template_refused|invalid_selector/);
      }
      // two values for one placeholder: ambiguous, refused (the agent cannot pick)
      const two = await client.issueByTemplate([{ templateId: uidTemplate, selectors: ['unix:uid:1', 'unix:uid:2'], csr: csr() }]);
      expect(two.results[0]!.error?.code).toBe('template_refused');
      // another agent's template: refused
      const other = await admin('POST', '/v1/templates', { trustDomain: TD, parentId: `spiffe://${TD}/cairn/agent/someone-else`, spiffeIdTemplate: 'spiffe://{td}/other/{unix:uid}' });
      const foreign = await client.issueByTemplate([{ templateId: other.body.id, selectors: ['unix:uid:1'], csr: csr() }]);
      expect(foreign.results[0]!.error?.code).toBe('not_entry_parent');
      // there is no field to name an ID: the request is refused as malformed
      await expect(
        (client as unknown as { call(m: string, p: string, b: unknown): Promise<unknown> }).call('POST', '/agent/v1/template-x509-svids', {
          requests: [{ templateId: uidTemplate, selectors: ['unix:uid:1'], csr: csr(), spiffeId: `spiffe://${TD}/admin` }],
        }),
      ).rejects.toMatchObject({ status: 400 });
      // the template's required selectors must be among those vouched for; DNS names and TTL come from the template
      const dnsTpl = await admin('POST', '/v1/templates', { trustDomain: TD, parentId: agentId, spiffeIdTemplate: 'spiffe://{td}/dns/{unix:uid}', selectors: ['unix:gid:77'], dnsTemplates: ['u{unix:uid}.example.org'], x509SvidTtl: 120 });
      const lacking = await client.issueByTemplate([{ templateId: dnsTpl.body.id, selectors: ['unix:uid:4242'], csr: csr() }]);
      expect(lacking.results[0]!.error).toMatchObject({ code: 'template_refused', message: expect.stringMatching(/requires selectors unix:gid:77/) });
      const withDns = await client.issueByTemplate([{ templateId: dnsTpl.body.id, selectors: ['unix:uid:4242', 'unix:gid:77'], csr: csr() }]);
      const leaf = new X509Certificate(Buffer.from(withDns.results[0]!.svid!.chain[0]!, 'base64'));
      expect(leaf.subjectAltName).toContain('URI:spiffe://tpl.test/dns/4242');
      expect(leaf.subjectAltName).toContain('DNS:u4242.example.org');
      // the template's 120 s, not the trust domain's default (an hour); notBefore is backdated a little for clock skew
      expect(new Date(leaf.validTo).getTime() - Date.now()).toBeLessThanOrEqual(121_000);
      expect((await admin('DELETE', `/v1/templates/${dnsTpl.body.id}`)).status).toBe(204);
      // what the agent is trusted for (its callers' selectors) gives exactly the rendered ID
      const ok = await client.issueByTemplate([{ templateId: uidTemplate, selectors: ['unix:uid:4242'], csr: csr() }]);
      expect(ok.results[0]!.svid?.spiffeId).toBe(`spiffe://${TD}/uid/4242`);
      const jwt = await client.mintJwtByTemplate(uidTemplate, ['unix:uid:4242'], ['aud']);
      expect(jwt.spiffeId).toBe(`spiffe://${TD}/uid/4242`);
      await expect(client.mintJwtByTemplate(uidTemplate, ['unix:uid:..'], ['aud'])).rejects.toBeInstanceOf(CaError);
    } finally {
      client.close();
    }
  });

  it('a hostile selector value is refused with the reason, in discovery; deleting a template stops it', async () => {
    expect((await admin('DELETE', `/v1/templates/${uidTemplate}`)).status).toBe(204);
    const byUser = await admin('POST', '/v1/templates', { trustDomain: TD, parentId: agentId, spiffeIdTemplate: 'spiffe://{td}/user/{unix:user}' });
    expect(byUser.status).toBe(201);
    await until('the agent to serve the new template', async () => ((await fetchAsUid(socket, ALICE)) === `DATA spiffe://${TD}/user/tpl-alice` ? true : undefined));
    // the deleted template serves nobody any more: bob is now served by the user-name template only
    expect(await fetchAsUid(socket, BOB)).toBe(`DATA spiffe://${TD}/user/tpl-bob`);
    expect(await fetchAsUid(socket, DOTDOT)).toBe(`ERR ${grpc.status.PERMISSION_DENIED}`);
    expect(await fetchAsUid(socket, SLASHY)).toBe(`ERR ${grpc.status.PERMISSION_DENIED}`);
    const listed = await until('discovery to list the refused callers', async () => {
      const r = await runCairnAsync(['agent', 'unregistered', '--data-dir', join(dir, 'data'), '--json']);
      const list = JSON.parse(r.stdout || '[]') as { selectors: string[]; reason?: string }[];
      return list.filter((c) => c.reason).length >= 2 ? list : undefined;
    });
    const reasonOf = (uid: number): string | undefined => listed.find((c) => c.selectors.includes(`unix:uid:${uid}`))?.reason;
    expect(reasonOf(DOTDOT)).toMatch(/unix:user value "\.\." is a relative path segment/);
    expect(reasonOf(SLASHY)).toMatch(/cannot stand in a SPIFFE ID path segment/);
    // nothing outside the template was ever issued
    const svids = await admin('GET', `/v1/x509-svids?trustDomain=${TD}`);
    for (const s of svids.body.svids as { spiffeId: string }[]) expect(s.spiffeId).not.toMatch(/\/user\/(\.\.|evil)|\/cairn\/agent\/x/);
  });
});

describe(`workload identity templates: admin API and CLI (${storeKind()} store)`, () => {
  let ca: TestCa;
  let agentId: string;
  const admin = (method: string, path: string, body?: unknown) => callAs(ca, ca.adminToken, method, path, body);
  const cli = (args: string[], token = ca.adminToken) => runCairnAsync(['template', ...args, '--server', ca.url], { CAIRN_ADMIN_TOKEN: token, CAIRN_DATA_DIR: ca.dataDir });

  beforeAll(async () => {
    ca = await startTestCa();
    await ca.admin('/v1/trust-domains', { body: { name: TD } });
    await ca.admin('/v1/trust-domains', { body: { name: 'other.test' } });
    agentId = `spiffe://${TD}/cairn/agent/a1`;
  });
  afterAll(async () => {
    await ca?.close();
  });

  it.each([
    ['an unknown placeholder', { spiffeIdTemplate: 'spiffe://{td}/ns/{namespace}' }, 'invalid_id_template', /unknown placeholder \{namespace\}/],
    ['an unclosed brace', { spiffeIdTemplate: 'spiffe://{td}/ns/{k8s:ns' }, 'invalid_id_template', /unclosed/],
    ['a selector Cairn never produces', { spiffeIdTemplate: 'spiffe://{td}/ns/{k8s:namespace}' }, 'invalid_id_template', /k8s has no selector "namespace"/],
    ['a node selector', { spiffeIdTemplate: 'spiffe://{td}/n/{k8s_psat:cluster}' }, 'invalid_id_template', /describe nodes/],
    ['a path that cannot be valid', { spiffeIdTemplate: 'spiffe://{td}/a//{unix:uid}' }, 'invalid_id_template', /valid SPIFFE ID/],
    ['no path', { spiffeIdTemplate: 'spiffe://{td}' }, 'invalid_id_template', /must have a path/],
    ['another trust domain', { spiffeIdTemplate: 'spiffe://other.test/uid/{unix:uid}' }, 'wrong_trust_domain', /not tpl\.test/],
    ["Cairn's namespace", { spiffeIdTemplate: 'spiffe://{td}/cairn/agent/{unix:uid}' }, 'reserved_spiffe_id', /reserved/],
    ['nothing binding the caller', { spiffeIdTemplate: 'spiffe://{td}/bin/{unix:path}' }, 'weak_selectors', /any local process/],
    ['a bad DNS template', { spiffeIdTemplate: 'spiffe://{td}/uid/{unix:uid}', dnsTemplates: ['{unix:uid}..example'] }, 'invalid_id_template', /DNS name/],
    ['a parent in another trust domain', { parentId: 'spiffe://other.test/cairn/agent/a1' }, 'wrong_trust_domain', /parentId/],
    ['a federated trust domain whose bundle it cannot get', { federatesWith: ['nowhere.test'] }, 'unknown_federated_trust_domain', /nowhere\.test is neither a trust domain of this CA nor one whose bundle tpl\.test holds/],
  ])('refuses %s with 400 and a clear code', async (_what, over, code, message) => {
    const res = await admin('POST', '/v1/templates', { trustDomain: TD, parentId: agentId, spiffeIdTemplate: 'spiffe://{td}/uid/{unix:uid}', ...over });
    expect(res.status).toBe(400);
    expect(res.body.code).toBe(code);
    expect(res.body.message).toMatch(message);
  });

  it('creates, lists, shows and deletes; a duplicate is 409; changes are audit entries in their transactions', async () => {
    const body = { trustDomain: TD, parentId: agentId, spiffeIdTemplate: 'spiffe://{td}/ns/{k8s:ns}/sa/{k8s:sa}', selectors: ['k8s:ns:payments'], dnsTemplates: ['{k8s:sa}.{k8s:ns}.svc'], jwtSvidTtl: 300, federatesWith: ['other.test'] };
    const created = await admin('POST', '/v1/templates', body);
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ trustDomain: TD, parentId: agentId, selectors: ['k8s:ns:payments'], jwtSvidTtl: 300, federatesWith: ['other.test'], admin: false, adminRole: null });
    expect((await admin('POST', '/v1/templates', body)).body).toMatchObject({ code: 'template_exists', details: { existingId: created.body.id } });
    expect((await admin('GET', `/v1/templates/${created.body.id}`)).body.spiffeIdTemplate).toBe(body.spiffeIdTemplate);
    expect((await admin('GET', `/v1/templates?parentId=${encodeURIComponent(agentId)}`)).body.templates.map((t: { id: string }) => t.id)).toContain(created.body.id);
    expect((await admin('DELETE', `/v1/templates/${created.body.id}`)).status).toBe(204);
    expect((await admin('GET', `/v1/templates/${created.body.id}`)).body.code).toBe('template_not_found');
    for (const event of ['template.created', 'template.deleted']) {
      const found = await until(`${event} in the audit log`, async () => {
        const r = await admin('GET', `/v1/audit/search?event=${event}`);
        return (r.body.entries as { data: string }[] | undefined)?.map((e) => JSON.parse(Buffer.from(e.data, 'base64').toString('utf8')) as Record<string, unknown>).find((e) => e.templateId === created.body.id);
      });
      expect(found).toMatchObject({ event, actor: expect.any(String), trustDomain: TD, parentId: agentId, spiffeIdTemplate: body.spiffeIdTemplate });
    }
  });

  it('an operator may write templates but not admin ones; a viewer only reads; scope is by trust domain', async () => {
    const operator = await createAdmin(ca, { name: 'tpl-operator', role: 'operator', trustDomains: [TD] });
    const viewer = await createAdmin(ca, { name: 'tpl-viewer', role: 'viewer' });
    const other = await createAdmin(ca, { name: 'tpl-other', role: 'operator', trustDomains: ['other.test'] });
    const body = { trustDomain: TD, parentId: agentId, spiffeIdTemplate: 'spiffe://{td}/op/{unix:uid}' };
    const made = await callAs(ca, operator, 'POST', '/v1/templates', body);
    expect(made.status).toBe(201);
    expect((await callAs(ca, operator, 'POST', '/v1/templates', { ...body, spiffeIdTemplate: 'spiffe://{td}/adm/{unix:uid}', admin: true })).body.code).toBe('permission_denied');
    expect((await callAs(ca, operator, 'POST', '/v1/templates', { ...body, spiffeIdTemplate: 'spiffe://{td}/adm/{unix:uid}', adminRole: 'viewer' })).body.code).toBe('permission_denied');
    expect((await callAs(ca, viewer, 'POST', '/v1/templates', { ...body, spiffeIdTemplate: 'spiffe://{td}/v/{unix:uid}' })).status).toBe(403);
    expect((await callAs(ca, viewer, 'GET', `/v1/templates/${made.body.id}`)).status).toBe(200);
    expect((await callAs(ca, other, 'GET', `/v1/templates/${made.body.id}`)).status).toBe(403);
    expect((await callAs(ca, other, 'DELETE', `/v1/templates/${made.body.id}`)).status).toBe(403);
    expect((await callAs(ca, other, 'GET', '/v1/templates')).body.templates).toEqual([]);
    // an admin template: only the admin role creates or deletes it, and its agent counts as serving admin identities
    const adminTpl = await admin('POST', '/v1/templates', { ...body, spiffeIdTemplate: 'spiffe://{td}/adm/{unix:uid}', adminRole: 'viewer' });
    expect(adminTpl.body).toMatchObject({ admin: true, adminRole: 'viewer' });
    expect((await callAs(ca, operator, 'DELETE', `/v1/templates/${adminTpl.body.id}`)).body.code).toBe('permission_denied');
    expect((await callAs(ca, operator, 'POST', '/v1/tokens', { trustDomain: TD, agentId })).body.code).toBe('permission_denied');
    expect((await admin('DELETE', `/v1/templates/${adminTpl.body.id}`)).status).toBe(204);
  });

  it('cairn template create|list|show|delete, with --json and error lines naming the flag', async () => {
    const created = await cli(['create', '--trust-domain', TD, '--parent-id', agentId, '--spiffe-id-template', 'spiffe://{td}/cli/{unix:uid}', '--selector', 'unix:gid:100', '--dns-template', 'u{unix:uid}.example.org', '--x509-svid-ttl', '10m', '--jwt-svid-ttl', '5m', '--hint', 'cli', '--federates-with', 'other.test', '--json']);
    expect(created.stderr).toBe('');
    const t = JSON.parse(created.stdout);
    expect(t).toMatchObject({ selectors: ['unix:gid:100'], dnsTemplates: ['u{unix:uid}.example.org'], x509SvidTtl: 600, jwtSvidTtl: 300, hint: 'cli', federatesWith: ['other.test'] });
    const listed = await cli(['list', '--trust-domain', TD]);
    expect(listed.stdout).toContain(t.id);
    expect(listed.stdout).toContain('spiffe://{td}/cli/{unix:uid}');
    const shown = await cli(['show', t.id]);
    expect(shown.stdout).toMatch(/spiffe id template\s+spiffe:\/\/\{td\}\/cli\/\{unix:uid\}/);
    const bad = await cli(['create', '--trust-domain', TD, '--parent-id', agentId, '--spiffe-id-template', 'spiffe://{td}/x/{nope}']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/^error: invalid_id_template: --spiffe-id-template: unknown placeholder \{nope\}/m);
    const missing = await cli(['create', '--trust-domain', TD, '--spiffe-id-template', 'spiffe://{td}/x/{unix:uid}']);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/^error: .*--parent-id/m);
    const typo = await cli(['create', '--trust-domain', TD, '--parent-id', agentId, '--spiffe-id-templ', 'x']);
    expect(typo.status).toBe(2);
    expect(typo.stderr).toMatch(/--spiffe-id-templ.*--spiffe-id-template/);
    const ttl = await cli(['create', '--trust-domain', TD, '--parent-id', agentId, '--spiffe-id-template', 'spiffe://{td}/x/{unix:uid}', '--x509-svid-ttl', 'soon']);
    expect(ttl.status).toBe(2);
    expect(ttl.stderr).toMatch(/^error: .*--x509-svid-ttl/m);
    const deleted = await cli(['delete', t.id, '--json']);
    expect(JSON.parse(deleted.stdout)).toEqual({ deleted: t.id });
    const gone = await cli(['show', t.id]);
    expect(gone.status).toBe(1);
    expect(gone.stderr).toMatch(/^error: template_not_found:/m);
  });
});
