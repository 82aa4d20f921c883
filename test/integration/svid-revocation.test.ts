import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentPaths, type BatchX509Response, type SyncResponse, type X509SvidMessage } from '../../contract/agent-api.js';
import type { MintX509Response } from '../../contract/admin-api.js';
import type { RevokeResponse } from '../../contract/revocation-api.js';
import { generateKeyAndCsr } from '../../lib/pkcs10.js';
import { derToPem } from '../../spiffe/bundle/bundle.js';
import { crlValiditySeconds } from '../../ca/revocation/service.js';
import { redeem, type TestNode } from '../support/agent-client.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { createAdmin, callAs } from '../support/admins.js';
import { storeKind } from '../support/db.js';
import { FakeClock } from '../support/clock.js';

const TD = 'revoke.test';

/** `openssl verify -crl_check` of a leaf against the bundle and the CRL file; exit status and output. */
function verifyWithCrl(dir: string, leafPem: string, bundlePem: string, crlPem: string): { ok: boolean; out: string } {
  writeFileSync(join(dir, 'leaf.pem'), leafPem);
  writeFileSync(join(dir, 'bundle.pem'), bundlePem);
  writeFileSync(join(dir, 'crl.pem'), crlPem);
  try {
    const out = execFileSync('openssl', ['verify', '-crl_check', '-CAfile', join(dir, 'bundle.pem'), '-CRLfile', join(dir, 'crl.pem'), join(dir, 'leaf.pem')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { ok: true, out };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { ok: false, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

describe(`single X.509-SVID revocation and the CRL (${storeKind()} store)`, () => {
  let ca: TestCa;
  let dir: string;

  const admin = async <T = Record<string, unknown>>(path: string, body?: unknown) => {
    const res = await ca.admin(path, body === undefined ? {} : { body });
    return { status: res.status, body: (await res.json()) as T & { code?: string; message?: string } };
  };
  const mint = async (spiffeId: string): Promise<MintX509Response> => {
    const key = generateKeyAndCsr();
    const res = await admin<MintX509Response>('/v1/x509-svids', { spiffeId, csr: key.csr.toString('base64') });
    expect(res.status).toBe(201);
    return res.body;
  };
  const bundlePem = async (): Promise<string> => (await fetch(`${ca.url}/td/${TD}/bundle.pem`)).text();
  const crlPem = async (): Promise<string> => (await fetch(`${ca.url}/td/${TD}/crl.pem`)).text();
  const crlText = (pem: string): string => execFileSync('openssl', ['crl', '-noout', '-text'], { input: pem, encoding: 'utf8' });
  const token = async (body: Record<string, unknown>): Promise<string> => (await admin<{ token: string }>('/v1/tokens', { trustDomain: TD, ...body })).body.token;

  beforeAll(async () => {
    ca = await startTestCa();
    dir = mkdtempSync(join(tmpdir(), 'cairn-revoke-'));
    expect((await ca.admin('/v1/trust-domains', { body: { name: TD } })).status).toBe(201);
  });
  afterAll(async () => {
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('publishes a CRL per trust domain that openssl accepts: DER at /crl, PEM at /crl.pem, signed by the active CA, nextUpdate inside the SVID TTL', async () => {
    const res = await fetch(`${ca.url}/td/${TD}/crl`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/pkix-crl');
    const der = Buffer.from(await res.arrayBuffer());
    writeFileSync(join(dir, 'crl.der'), der);
    writeFileSync(join(dir, 'bundle.pem'), await bundlePem());
    // openssl checks the CRL's signature against the CA that issued it
    const verified = execFileSync('openssl', ['crl', '-inform', 'DER', '-in', join(dir, 'crl.der'), '-CAfile', join(dir, 'bundle.pem'), '-noout'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(verified + '').not.toMatch(/failure/i);
    const text = execFileSync('openssl', ['crl', '-inform', 'DER', '-in', join(dir, 'crl.der'), '-noout', '-text'], { encoding: 'utf8' });
    expect(text).toMatch(/X509v3 CRL Number:\s*\n\s*1\b/);
    expect(text).toMatch(/No Revoked Certificates/);
    const last = new Date(/Last Update: (.*)/.exec(text)![1]!).getTime();
    const next = new Date(/Next Update: (.*)/.exec(text)![1]!).getTime();
    const ttl = 3600; // the trust domain's default X.509-SVID TTL
    expect(next - last).toBeLessThanOrEqual((crlValiditySeconds(ttl) + 11) * 1000);
    expect(next - last).toBeLessThan((ttl / 2 + 60) * 1000);
    // The PEM form carries the same CRL (one CA published so far).
    expect(await crlPem()).toBe(derToPem(der, 'X509 CRL'));
    expect((await fetch(`${ca.url}/td/unknown.test/crl`)).status).toBe(404);
  });

  it('a revoked SVID is refused by openssl verify -crl_check with the CRL; an unrevoked one passes; revoking is idempotent', async () => {
    const revoked = await mint(`spiffe://${TD}/web`);
    const kept = await mint(`spiffe://${TD}/web`);
    const before = await crlPem();
    expect(verifyWithCrl(dir, revoked.certChain, await bundlePem(), before).ok).toBe(true);

    const res = await admin<RevokeResponse>('/v1/x509-svids/revoke', { serial: revoked.serial.toUpperCase(), reason: 'key leaked' });
    expect(res.status).toBe(200);
    expect(res.body.svids).toEqual([expect.objectContaining({ serial: revoked.serial, spiffeId: `spiffe://${TD}/web`, reason: 'key leaked', revokedBy: 'bootstrap' })]);

    const after = await crlPem();
    expect(after).not.toBe(before);
    const text = crlText(after);
    expect(text).toContain(`Serial Number: ${revoked.serial.toUpperCase()}`);
    expect(text).toMatch(/X509v3 CRL Number:\s*\n\s*2\b/);
    const refused = verifyWithCrl(dir, revoked.certChain, await bundlePem(), after);
    expect(refused.ok).toBe(false);
    expect(refused.out).toMatch(/certificate revoked/);
    expect(verifyWithCrl(dir, kept.certChain, await bundlePem(), after).ok).toBe(true);

    // again: the first record stays, nothing is re-signed
    const again = await admin<RevokeResponse>('/v1/x509-svids/revoke', { serial: revoked.serial, reason: 'other' });
    expect(again.status).toBe(200);
    expect(again.body.svids[0]!.reason).toBe('key leaked');
    expect(await crlPem()).toBe(after);
    const listed = await admin<{ svids: { serial: string }[] }>(`/v1/x509-svids/revoked?trustDomain=${TD}`);
    expect(listed.body.svids.map((s) => s.serial)).toEqual([revoked.serial]);
  });

  it('revokes every current SVID of a SPIFFE ID', async () => {
    const a = await mint(`spiffe://${TD}/db`);
    const b = await mint(`spiffe://${TD}/db`);
    const res = await admin<RevokeResponse>('/v1/x509-svids/revoke', { spiffeId: `spiffe://${TD}/db` });
    expect(res.status).toBe(200);
    expect(res.body.svids.map((s) => s.serial).sort()).toEqual([a.serial, b.serial].sort());
    const text = crlText(await crlPem());
    for (const s of [a, b]) expect(text).toContain(`Serial Number: ${s.serial.toUpperCase()}`);
  });

  it('refuses bad requests with machine-readable codes', async () => {
    const cases: [unknown, number, string][] = [
      [{}, 400, 'invalid_request'],
      [{ serial: 'ab', spiffeId: `spiffe://${TD}/x` }, 400, 'invalid_request'],
      [{ serial: 'xyz' }, 400, 'invalid_request'],
      [{ serial: 'abcdef0123' }, 404, 'svid_not_found'],
      [{ spiffeId: `spiffe://${TD}/nobody` }, 404, 'svid_not_found'],
      [{ spiffeId: 'http://x/y' }, 400, 'invalid_spiffe_id'],
      [{ spiffeId: `spiffe://${TD}/web`, trustDomain: 'other.test' }, 400, 'wrong_trust_domain'],
    ];
    for (const [body, status, code] of cases) {
      const res = await admin('/v1/x509-svids/revoke', body);
      expect({ body, status: res.status, code: res.body.code }).toEqual({ body, status, code });
    }
    // a serial of this trust domain named with another trust domain is not found there
    const s = await mint(`spiffe://${TD}/elsewhere`);
    expect((await admin('/v1/x509-svids/revoke', { serial: s.serial, trustDomain: 'other.test' })).body.code).toBe('svid_not_found');
  });

  it('operators may revoke; viewers may not; a scoped operator names the trust domain with a serial', async () => {
    const s = await mint(`spiffe://${TD}/ops`);
    const viewer = await createAdmin(ca, { name: 'revoke-viewer', role: 'viewer' });
    const operator = await createAdmin(ca, { name: 'revoke-operator', role: 'operator', trustDomains: [TD] });
    expect((await callAs(ca, viewer, 'POST', '/v1/x509-svids/revoke', { serial: s.serial })).status).toBe(403);
    expect((await callAs(ca, operator, 'POST', '/v1/x509-svids/revoke', { serial: s.serial })).status).toBe(403);
    const ok = await callAs(ca, operator, 'POST', '/v1/x509-svids/revoke', { serial: s.serial, trustDomain: TD });
    expect(ok.status).toBe(200);
    expect(ok.body.svids[0].revokedBy).toBe('revoke-operator');
    expect((await callAs(ca, viewer, 'GET', `/v1/x509-svids/revoked?trustDomain=${TD}`)).status).toBe(200);
  });

  it('a revoked agent SVID is refused for mTLS and renewal with svid_revoked (not a store error, not superseded)', async () => {
    const { node } = await redeem(await token({}));
    expect((await node!.call('GET', `${AgentPaths.sync}?revision=0&bundleSequence=0&wait=0`)).status).toBe(200);
    expect((await admin('/v1/x509-svids/revoke', { serial: node!.svid.serial })).status).toBe(200);
    for (const [method, path, body] of [['GET', `${AgentPaths.sync}?revision=0&bundleSequence=0&wait=0`, undefined], ['POST', AgentPaths.renew, { csr: generateKeyAndCsr().csr.toString('base64') }]] as const) {
      const res = await node!.call<{ code: string; message: string }>(method, path, body);
      expect(res.status).toBe(401);
      expect(res.body.code).toBe('svid_revoked');
      expect(res.body.message).toMatch(/attest again/);
    }
    // both refusals are on record, with the serial the node presented (issue 14)
    const refused = (await ca.handle.db.query<{ data: Uint8Array }>(`SELECT data FROM audit_entries WHERE event = 'node.refused' AND serial = $1`, [node!.svid.serial])).rows
      .map((r) => JSON.parse(Buffer.from(r.data).toString('utf8')) as Record<string, unknown>);
    expect(refused).toEqual([0, 1].map(() => expect.objectContaining({ actor: node!.spiffeId, reason: 'svid_revoked', kind: 'agent' })));
  });

  it('a spent token presented again by its key does not hand back a revoked SVID', async () => {
    const key = generateKeyAndCsr();
    const t = await token({});
    const first = await redeem(t, AgentPaths.attest, key);
    expect(first.status).toBe(201);
    expect((await redeem(t, AgentPaths.attest, key)).status).toBe(201); // the lost-answer path works before
    expect((await admin('/v1/x509-svids/revoke', { serial: first.node!.svid.serial })).status).toBe(200);
    const again = await redeem(t, AgentPaths.attest, key);
    expect(again.status).toBe(401);
    expect((again.body as { code: string }).code).toBe('invalid_token');
  });

  it("a device's next renewal after revocation fails with svid_revoked telling the operator to bootstrap again", async () => {
    const { node } = await redeem(await token({ spiffeId: `spiffe://${TD}/device/7` }), AgentPaths.deviceRedeem);
    await node!.renew(AgentPaths.deviceRenew); // renewing works before
    expect((await admin('/v1/x509-svids/revoke', { spiffeId: `spiffe://${TD}/device/7` })).status).toBe(200);
    const res = await node!.call<{ code: string; message: string }>('POST', AgentPaths.deviceRenew, { csr: generateKeyAndCsr().csr.toString('base64') });
    expect(res.status).toBe(401);
    expect(res.body.code).toBe('svid_revoked');
    expect(res.body.message).toMatch(/bootstrap the device again/);
  });

  it('sync tells the agent holding a revoked workload SVID which serial to replace, waking its long-poll, with the CRLs', async () => {
    const agentNode: TestNode = (await redeem(await token({ agentId: `spiffe://${TD}/agent/sync` }))).node!;
    const entry = await admin<{ id: string }>('/v1/entries', { spiffeId: `spiffe://${TD}/svc`, parentId: agentNode.spiffeId, selectors: ['unix:uid:1234'] });
    expect(entry.status).toBe(201);
    const issued = await agentNode.call<BatchX509Response>('POST', AgentPaths.x509Svids, { requests: [{ entryId: entry.body.id, csr: generateKeyAndCsr().csr.toString('base64') }] });
    const serial = issued.body.results[0]!.svid!.serial;
    const first = await agentNode.call<SyncResponse>('GET', `${AgentPaths.sync}?revision=0&bundleSequence=0&wait=0&crl=`);
    expect(first.body.revocation).toBeDefined();
    expect(first.body.revocation!.crls.length).toBe(1);
    expect(first.body.revocation!.revokedSerials).toEqual([]);
    // An agent that does not ask for revocations (an older one) gets none.
    expect((await agentNode.call<SyncResponse>('GET', `${AgentPaths.sync}?revision=0&bundleSequence=0&wait=0`)).body.revocation).toBeUndefined();

    const q = `revision=${first.body.revision}&bundleSequence=${first.body.bundle!.sequence}&crl=${first.body.revocation!.digest}`;
    const poll = agentNode.call<SyncResponse>('GET', `${AgentPaths.sync}?${q}&wait=30`);
    await new Promise((r) => setTimeout(r, 300));
    const started = Date.now();
    expect((await admin('/v1/x509-svids/revoke', { serial })).status).toBe(200);
    const woke = await poll;
    expect(Date.now() - started).toBeLessThan(25_000);
    expect(woke.body.revocation!.revokedSerials).toEqual([serial]);
    expect(woke.body.revocation!.digest).not.toBe(first.body.revocation!.digest);
    const crl = derToPem(Buffer.from(woke.body.revocation!.crls[0]!, 'base64'), 'X509 CRL');
    expect(crlText(crl)).toContain(`Serial Number: ${serial.toUpperCase()}`);
    // the agent is not refused for its workload's revocation
    expect((await agentNode.call<X509SvidMessage>('GET', `${AgentPaths.sync}?${q}&wait=0`)).status).toBe(200);
  });

  it('CRLs are re-signed before they lapse (housekeeping) and a new CA gets its own', async () => {
    const before = await ca.core.revocation.current(TD);
    expect(await ca.core.revocation.refresh(TD)).toBe(false); // fresh: nothing to do
    // Simulate the passage of time by shortening what is stored: past half its validity it is re-signed.
    const db = ca.handle.db;
    await db.query(`UPDATE x509_crls SET next_update = now() + interval '60 seconds' WHERE trust_domain = $1`, [TD]);
    expect(await ca.core.revocation.refresh(TD)).toBe(true);
    const after = await ca.core.revocation.current(TD);
    expect(after.digest).not.toBe(before.digest);
    expect(after.active!.crlNumber).toBe(before.active!.crlNumber + 1);
  });
});

describe(`CRLs across a CA rotation: one per published CA, each signed by its own key (${storeKind()} store)`, () => {
  const DAY = 86400;
  const RTD = 'revoke-rotate.test';
  const clock = new FakeClock(new Date());
  let ca: TestCa;
  let dir: string;
  beforeAll(async () => {
    ca = await startTestCa({ clock });
    dir = mkdtempSync(join(tmpdir(), 'cairn-revoke-rot-'));
    expect((await ca.admin('/v1/trust-domains', { body: { name: RTD, caTtlSeconds: DAY, x509SvidTtlSeconds: 6 * 3600 } })).status).toBe(201);
  });
  afterAll(async () => {
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const mint = async (): Promise<MintX509Response> => {
    const key = generateKeyAndCsr();
    const res = await ca.admin('/v1/x509-svids', { body: { spiffeId: `spiffe://${RTD}/w`, csr: key.csr.toString('base64') } });
    expect(res.status).toBe(201);
    return (await res.json()) as MintX509Response;
  };
  const revoke = async (serial: string) => expect((await ca.admin('/v1/x509-svids/revoke', { body: { serial } })).status).toBe(200);
  const at = () => ['-attime', String(Math.floor(clock.now().getTime() / 1000))];
  /** 'ok', 'revoked', or openssl's complaint. */
  const check = (leaf: string, bundle: string, crl: string): string => {
    writeFileSync(join(dir, 'leaf.pem'), leaf);
    writeFileSync(join(dir, 'bundle.pem'), bundle);
    writeFileSync(join(dir, 'crl.pem'), crl);
    try {
      execFileSync('openssl', ['verify', '-crl_check', ...at(), '-CAfile', join(dir, 'bundle.pem'), '-CRLfile', join(dir, 'crl.pem'), join(dir, 'leaf.pem')], { stdio: 'pipe' });
      return 'ok';
    } catch (err) {
      const out = `${(err as { stdout?: Buffer }).stdout ?? ''}${(err as { stderr?: Buffer }).stderr ?? ''}`;
      return /certificate revoked/.test(out) ? 'revoked' : out;
    }
  };

  it('SVIDs of the old and the new CA are both checked against the CRL of the CA that issued them', async () => {
    clock.advance(DAY * 0.55); // successor prepared and published: it gets a CRL before it signs anything
    expect(await ca.core.authority.rotate(RTD)).toBe(true);
    expect(await ca.core.revocation.refresh(RTD)).toBe(true);
    const prepared = await (await fetch(`${ca.url}/td/${RTD}/crl.pem`)).text();
    expect(prepared.match(/BEGIN X509 CRL/g)).toHaveLength(2);

    clock.advance(DAY * 0.25);
    const oldRevoked = await mint();
    const oldKept = await mint();
    clock.advance(DAY * 0.04); // the successor becomes active
    expect(await ca.core.authority.rotate(RTD)).toBe(true);
    const newRevoked = await mint();
    const newKept = await mint();
    expect(newRevoked.certChain).not.toBe(oldRevoked.certChain);
    await revoke(oldRevoked.serial);
    await revoke(newRevoked.serial);

    const bundle = await (await fetch(`${ca.url}/td/${RTD}/bundle.pem`)).text();
    const crls = await (await fetch(`${ca.url}/td/${RTD}/crl.pem`)).text();
    expect(crls.match(/BEGIN X509 CRL/g)).toHaveLength(2);
    expect(check(oldRevoked.certChain, bundle, crls)).toBe('revoked');
    expect(check(newRevoked.certChain, bundle, crls)).toBe('revoked');
    expect(check(oldKept.certChain, bundle, crls)).toBe('ok');
    expect(check(newKept.certChain, bundle, crls)).toBe('ok');

    // GET /crl is the active (new) CA's: its issuer is the issuer of SVIDs signed now
    const der = Buffer.from(await (await fetch(`${ca.url}/td/${RTD}/crl`)).arrayBuffer());
    const issuer = /Issuer: (.*)/.exec(execFileSync('openssl', ['crl', '-inform', 'DER', '-noout', '-text'], { input: der, encoding: 'utf8' }))![1];
    const leafIssuer = execFileSync('openssl', ['x509', '-noout', '-issuer', '-nameopt', 'oneline'], { input: newKept.certChain, encoding: 'utf8' });
    expect(leafIssuer.replace(/^issuer=\s*/, '').trim().replace(/\s+/g, ' ')).toBe(issuer!.trim().replace(/\s+/g, ' '));
  });
});
