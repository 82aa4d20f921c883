import { createServer } from 'node:https';
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentPaths, type BatchX509Response, type SyncResponse } from '../../contract/agent-api.js';
import { encodeBootstrapToken, parseBootstrapToken } from '../../contract/bootstrap-token.js';
import { generateKeyAndCsr } from '../../lib/pkcs10.js';
import { fetchPinnedAuthority, PinMismatchError, requestJson } from '../../lib/tls-client.js';
import { pemBundle, pemChain, redeem, type TestNode } from '../support/agent-client.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';
import { opensslVerify } from '../support/openssl.js';
import { testCaCertificate } from '../support/certs.js';
import { derToPem } from '../../spiffe/bundle/bundle.js';

const TD = 'enroll.test';

describe(`tokens, attestation and the agent API over mTLS (${storeKind()} store)`, () => {
  let ca: TestCa;
  const token = async (body: Record<string, unknown> = {}): Promise<string> => {
    const res = await ca.admin('/v1/tokens', { body: { trustDomain: TD, ...body } });
    expect(res.status).toBe(201);
    return (await res.json()).token;
  };
  const entry = async (body: Record<string, unknown>): Promise<string> => {
    const res = await ca.admin('/v1/entries', { body });
    expect(res.status, JSON.stringify(await res.clone().json())).toBe(201);
    return (await res.json()).id;
  };
  const attest = async (body: Record<string, unknown> = {}): Promise<TestNode> => {
    const r = await redeem(await token(body));
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    return r.node!;
  };

  beforeAll(async () => {
    ca = await startTestCa();
    expect((await ca.admin('/v1/trust-domains', { body: { name: TD, x509SvidTtlSeconds: 600 } })).status).toBe(201);
  });
  afterAll(() => ca.close());

  it('a join token becomes an agent SVID that openssl verifies; the node is recorded', async () => {
    const res = await ca.admin('/v1/tokens', { body: { trustDomain: TD, ttlSeconds: 300 } });
    const created = await res.json();
    expect(created.kind).toBe('join');
    expect(created.spiffeId).toBe(`spiffe://${TD}/cairn/agent/join_token/${created.id}`);
    const claims = parseBootstrapToken(created.token).claims;
    expect(claims.url).toBe(ca.tlsUrl);
    expect(claims.pin).toMatch(/^sha256:/);
    const r = await redeem(created.token);
    expect(r.status).toBe(201);
    const svid = r.node!.svid;
    expect(svid.spiffeId).toBe(created.spiffeId);
    expect(opensslVerify(pemChain(svid), pemBundle(svid), ['-x509_strict'])).toContain('OK');
    const agents = await (await ca.admin(`/v1/agents?trustDomain=${TD}`)).json();
    expect(agents.agents.find((a: { spiffeId: string }) => a.spiffeId === svid.spiffeId)).toMatchObject({ kind: 'agent', attestationType: 'join_token', serial: svid.serial, banned: false });
    // the database keeps only a hash of the secret
    const secret = created.token.split('.')[2];
    const rows = await ca.handle.db.query<Record<string, unknown>>('SELECT * FROM one_time_tokens WHERE id = $1', [created.id]);
    expect(JSON.stringify(rows.rows, (_k, v) => (v instanceof Uint8Array ? Buffer.from(v).toString('base64url') : v))).not.toContain(secret);
    expect(ca.logs()).not.toContain(secret);
    // on the audit log, committed with the redemption: the SVID, the node, then the token's redemption
    const audit = await ca.handle.db.query<{ event: string; actor: string }>('SELECT event, actor FROM audit_entries WHERE serial = $1 ORDER BY seq', [svid.serial]);
    expect(audit.rows.map((r) => r.event)).toEqual(['x509_svid.issued', 'node.attested', 'token.redeemed']);
    expect(new Set(audit.rows.map((r) => r.actor))).toEqual(new Set([`token:${created.id}`]));
  });

  it('unknown, used, expired and malformed tokens all get the same 401', async () => {
    const t = await token();
    expect((await redeem(t)).status).toBe(201);
    const used = await redeem(t);
    const c = parseBootstrapToken(t).claims;
    const unknown = await redeem(encodeBootstrapToken({ ...c, id: 'doesnotexist0000000' }, 'A'.repeat(43)));
    const wrongSecret = await redeem(encodeBootstrapToken(c, 'B'.repeat(43)));
    const expiredToken = await token({ ttlSeconds: 30 });
    // expire it for real by moving its deadline into the past
    await ca.handle.db.query(`UPDATE one_time_tokens SET expires_at = now() - interval '1 minute' WHERE id = $1`, [parseBootstrapToken(expiredToken).claims.id]);
    const expired = await redeem(expiredToken);
    const authority = await fetchPinnedAuthority(ca.tlsUrl, c.pin);
    const malformed = await Promise.all(
      ['', 'garbage', 'cairn1.e30.short', t.replace('cairn1', 'cairn2')].map(async (token) => {
        const res = await requestJson<unknown>('POST', ca.tlsUrl + AgentPaths.attest, { token: token || 'x', csr: generateKeyAndCsr().csr.toString('base64') }, { ca: authority });
        return { status: res.status, body: res.body };
      }),
    );
    for (const r of [used, unknown, wrongSecret, expired, ...malformed]) {
      expect(r.status).toBe(401);
      expect(r.body).toEqual({ code: 'invalid_token', message: 'the token is not valid (unknown, already used, or expired)' });
    }
    // the expired token was consumed by its presentation
    const row = await ca.handle.db.query<{ used_at: Date | null }>('SELECT used_at FROM one_time_tokens WHERE id = $1', [parseBootstrapToken(expiredToken).claims.id]);
    expect(row.rows[0]!.used_at).not.toBeNull();
  });

  it('a spent token presented again with the same key gets the same SVID (a lost answer); no other key, nothing new signed', async () => {
    const t = await token({ ttlSeconds: 300 });
    const key = generateKeyAndCsr();
    const first = await redeem(t, AgentPaths.attest, key);
    expect(first.status).toBe(201);
    const again = await redeem(t, AgentPaths.attest, key);
    expect(again.status, JSON.stringify(again.body)).toBe(201);
    expect(again.body).toEqual(first.body); // the same certificate, byte for byte
    expect(ca.logs()).toContain('token.answer_repeated');
    expect((await again.node!.call('GET', `${AgentPaths.sync}?revision=0`)).status).toBe(200);
    // another key, even with the right secret, gets the same answer as any spent token
    const other = await redeem(t);
    expect(other.status).toBe(401);
    expect(other.body).toEqual({ code: 'invalid_token', message: 'the token is not valid (unknown, already used, or expired)' });
    // the token was redeemed once: one SVID in the inventory
    const inv = await (await ca.admin(`/v1/x509-svids?spiffeIdPrefix=${encodeURIComponent(first.node!.spiffeId)}`)).json();
    expect(inv.svids.map((s: { serial: string }) => s.serial)).toEqual([first.node!.svid.serial]);
    // once the node has renewed, the first answer evidently arrived: no more repeats
    const renewed = await first.node!.call<{ serial: string }>('POST', AgentPaths.renew, { csr: generateKeyAndCsr().csr.toString('base64') });
    expect(renewed.status).toBe(201);
    expect((await redeem(t, AgentPaths.attest, key)).status).toBe(401);
  });

  it('a spent token is not answered again after it expires', async () => {
    const t = await token({ ttlSeconds: 300 });
    const key = generateKeyAndCsr();
    expect((await redeem(t, AgentPaths.attest, key)).status).toBe(201);
    await ca.handle.db.query(`UPDATE one_time_tokens SET expires_at = now() - interval '1 second' WHERE id = $1`, [parseBootstrapToken(t).claims.id]);
    expect((await redeem(t, AgentPaths.attest, key)).status).toBe(401);
  });

  it('a token whose claims were edited to name another trust domain is refused and stays unspent', async () => {
    const other = 'other-enroll.test';
    expect((await ca.admin('/v1/trust-domains', { body: { name: other } })).status).toBe(201);
    const t = await token();
    const { claims } = parseBootstrapToken(t);
    const edited = encodeBootstrapToken({ ...claims, td: other }, t.split('.')[2]!);
    expect((await redeem(edited)).status).toBe(401);
    expect((await redeem(t)).status).toBe(201);
  });

  it('a bootstrapper facing a server with another key refuses before sending the secret', async () => {
    const t = await token();
    const { claims } = parseBootstrapToken(t);
    const rogueCa = await testCaCertificate('rogue.test');
    let requests = 0;
    const rogue = createServer({ key: rogueCa.privateKey.export({ format: 'pem', type: 'pkcs8' }), cert: `-----BEGIN CERTIFICATE-----\n${rogueCa.der.toString('base64')}\n-----END CERTIFICATE-----\n` }, (_req, res) => {
      requests++;
      res.end('{}');
    });
    await new Promise<void>((r) => rogue.listen(0, '127.0.0.1', r));
    const port = (rogue.address() as { port: number }).port;
    try {
      const forged = encodeBootstrapToken({ ...claims, url: `https://127.0.0.1:${port}` }, t.split('.')[2]!);
      await expect(redeem(forged)).rejects.toBeInstanceOf(PinMismatchError);
      await expect(fetchPinnedAuthority(ca.tlsUrl, 'sha256:' + 'A'.repeat(43))).rejects.toBeInstanceOf(PinMismatchError);
      expect(requests).toBe(0);
      // the real token is still unused
      expect((await redeem(t)).status).toBe(201);
    } finally {
      rogue.close();
    }
  });

  it('an agent syncs and gets SVIDs only for entries it is the parent of (directly or through a node alias)', async () => {
    const agent = await attest({ selectors: ['join_token:rack:r1', 'join_token:zone:a'] });
    const other = await attest();
    const mine = await entry({ spiffeId: `spiffe://${TD}/web`, parentId: agent.spiffeId, selectors: ['unix:uid:1000'], dnsNames: ['web.enroll.test'], x509SvidTtl: 120 });
    const theirs = await entry({ spiffeId: `spiffe://${TD}/db`, parentId: other.spiffeId, selectors: ['unix:uid:1001'] });
    await entry({ spiffeId: `spiffe://${TD}/racks/r1`, parentId: `spiffe://${TD}/cairn/server`, selectors: ['join_token:rack:r1'] });
    const viaAlias = await entry({ spiffeId: `spiffe://${TD}/rack-service`, parentId: `spiffe://${TD}/racks/r1`, selectors: ['unix:uid:1002'] });

    const sync = await agent.call<SyncResponse>('GET', `${AgentPaths.sync}?revision=0`);
    expect(sync.status).toBe(200);
    expect(sync.body.full).toBe(true);
    expect(sync.body.parents).toEqual([agent.spiffeId, `spiffe://${TD}/racks/r1`]);
    expect(sync.body.entries.map((e) => e.id).sort()).toEqual([mine, viaAlias].sort());
    expect(sync.body.bundle?.x509Authorities).toHaveLength(1);
    expect(sync.body.revision).toBeGreaterThan(0);

    const csr = (): string => generateKeyAndCsr().csr.toString('base64');
    const batch = await agent.call<BatchX509Response>('POST', AgentPaths.x509Svids, { requests: [{ entryId: mine, csr: csr() }, { entryId: theirs, csr: csr() }, { entryId: viaAlias, csr: csr() }, { entryId: mine, csr: 'garbage' }] });
    expect(batch.status).toBe(200);
    const [ok, refused, alias, bad] = batch.body.results;
    expect(ok!.svid!.spiffeId).toBe(`spiffe://${TD}/web`);
    expect(batch.body.bundle).toHaveLength(1);
    expect(opensslVerify(pemChain(ok!.svid!), pemBundle(batch.body))).toContain('OK');
    expect((new Date(ok!.svid!.expiresAt).getTime() - Date.now()) / 1000).toBeLessThanOrEqual(121);
    expect(refused).toEqual({ entryId: theirs, error: { code: 'not_entry_parent', message: expect.any(String) } });
    expect(alias!.svid!.spiffeId).toBe(`spiffe://${TD}/rack-service`);
    expect(bad!.error!.code).toBe('invalid_csr');
    const inv = await (await ca.admin(`/v1/x509-svids?spiffeIdPrefix=${encodeURIComponent(`spiffe://${TD}/web`)}`)).json();
    expect(inv.svids.map((s: { serial: string; issuedTo: string }) => [s.serial, s.issuedTo])).toContainEqual([ok!.svid!.serial, agent.spiffeId]);

    const jwt = await agent.call<{ token: string }>('POST', AgentPaths.jwtSvids, { entryId: mine, audience: ['svc'] });
    expect(jwt.status).toBe(201);
    expect(JSON.parse(Buffer.from(jwt.body.token.split('.')[1]!, 'base64url').toString()).sub).toBe(`spiffe://${TD}/web`);
    const jwtRefused = await agent.call<{ code: string }>('POST', AgentPaths.jwtSvids, { entryId: theirs, audience: ['svc'] });
    expect(jwtRefused.status).toBe(403);
    expect(jwtRefused.body.code).toBe('not_entry_parent');
  });

  it('syncs incrementally and wakes a long-poll within a second of an admin change', async () => {
    const agent = await attest();
    const first = await agent.call<SyncResponse>('GET', `${AgentPaths.sync}?revision=0`);
    const rev = first.body.revision;
    const seq = first.body.bundle!.sequence;
    const quiet = await agent.call<SyncResponse>('GET', `${AgentPaths.sync}?revision=${rev}&bundleSequence=${seq}`);
    expect(quiet.body).toMatchObject({ full: false, entries: [], removed: [] });
    expect(quiet.body.bundle).toBeUndefined();

    const started = Date.now();
    const poll = agent.call<SyncResponse>('GET', `${AgentPaths.sync}?revision=${rev}&bundleSequence=${seq}&wait=20`);
    await new Promise((r) => setTimeout(r, 300));
    const id = await entry({ spiffeId: `spiffe://${TD}/fresh`, parentId: agent.spiffeId, selectors: ['unix:uid:7'] });
    const woke = await poll;
    const latency = Date.now() - started - 300;
    expect(woke.body.entries.map((e) => e.id)).toEqual([id]);
    expect(latency).toBeLessThan(1000);

    // a move to another parent and a delete both show up as removals
    const id2 = await entry({ spiffeId: `spiffe://${TD}/moving`, parentId: agent.spiffeId, selectors: ['unix:uid:8'] });
    const r2 = await agent.call<SyncResponse>('GET', `${AgentPaths.sync}?revision=${woke.body.revision}&bundleSequence=${seq}`);
    expect(r2.body.entries.map((e) => e.id)).toEqual([id2]);
    expect((await ca.admin(`/v1/entries/${id2}`, { method: 'PATCH', body: { parentId: `spiffe://${TD}/elsewhere` } })).status).toBe(200);
    expect((await ca.admin(`/v1/entries/${id}`, { method: 'DELETE' })).status).toBe(204);
    const r3 = await agent.call<SyncResponse>('GET', `${AgentPaths.sync}?revision=${r2.body.revision}&bundleSequence=${seq}`);
    expect(r3.body.removed.sort()).toEqual([id, id2].sort());
    expect(r3.body.entries).toEqual([]);
  });

  it('renewal supersedes the old agent SVID; a banned agent is refused; an evicted one must attest again', async () => {
    const agent = await attest();
    const first = agent.svid;
    const view = async () => (await (await ca.admin(`/v1/agents?trustDomain=${TD}&pageSize=500`)).json()).agents.find((a: { spiffeId: string }) => a.spiffeId === agent.spiffeId) as { serial: string; expiresAt: string };
    await new Promise((r) => setTimeout(r, 1100)); // the renewed SVID ends a second later
    const old = await agent.renew();
    // until the node presents the renewed SVID, its record shows the SVID it is using
    expect(await view()).toMatchObject({ serial: first.serial, expiresAt: first.expiresAt });
    expect(agent.svid.expiresAt).not.toBe(first.expiresAt);
    // the new SVID works (and becomes the only one accepted)
    expect((await agent.call('GET', AgentPaths.sync)).status).toBe(200);
    expect(await view()).toMatchObject({ serial: agent.svid.serial, expiresAt: agent.svid.expiresAt });
    const stale = await agent.call<{ code: string }>('GET', AgentPaths.sync, undefined, old);
    expect(stale.status).toBe(401);
    expect(stale.body.code).toBe('agent_svid_superseded');
    const superseded = await ca.handle.db.query<{ actor: string }>(`SELECT actor FROM audit_entries WHERE event = 'node.refused' AND serial = $1`, [first.serial]);
    expect(superseded.rows).toEqual([{ actor: agent.spiffeId }]);

    expect((await ca.admin('/v1/agents/ban', { body: { spiffeId: agent.spiffeId } })).status).toBe(200);
    const banned = await agent.call<{ code: string }>('GET', AgentPaths.sync);
    expect(banned.status).toBe(403);
    expect(banned.body.code).toBe('agent_banned');
    const bannedRenew = await agent.call<{ code: string }>('POST', AgentPaths.renew, { csr: generateKeyAndCsr().csr.toString('base64') });
    expect(bannedRenew.status).toBe(403);
    expect((await ca.admin('/v1/agents/unban', { body: { spiffeId: agent.spiffeId } })).status).toBe(200);
    expect((await agent.call('GET', AgentPaths.sync)).status).toBe(200);

    expect((await ca.admin('/v1/agents/evict', { body: { spiffeId: agent.spiffeId } })).status).toBe(204);
    const evicted = await agent.call<{ code: string }>('GET', AgentPaths.sync);
    expect(evicted.status).toBe(401);
    expect(evicted.body.code).toBe('unauthenticated');
  });

  it('a banned alias cannot attest again with a fresh token', async () => {
    const alias = `spiffe://${TD}/cairn/agent/edge-1`;
    const a = await attest({ agentId: alias });
    expect(a.spiffeId).toBe(alias);
    await ca.admin('/v1/agents/ban', { body: { spiffeId: alias } });
    const again = await redeem(await token({ agentId: alias }));
    expect(again.status).toBe(403);
    expect((again.body as { code: string }).code).toBe('agent_banned');
  });

  it('the agent routes need a client SVID from the right trust domain', async () => {
    const agent = await attest();
    const noCert = await agent.call<{ code: string }>('GET', AgentPaths.sync, undefined, { cert: '', key: '' });
    expect(noCert.status).toBe(401);
    // a certificate from another authority with a plausible agent ID
    const foreign = await testCaCertificate(TD);
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const { buildLeafTbs, signCertificate } = await import('../../ca/issuance/leaf-template.js');
    const { subjectPublicKeyFromDer } = await import('../../ca/issuance/spki.js');
    const der = signCertificate(foreign.template, buildLeafTbs(foreign.template, {
      serial: Buffer.from(agent.svid.serial, 'hex'), notBefore: new Date(Date.now() - 1000), notAfter: new Date(Date.now() + 60_000),
      spiffeId: agent.spiffeId, dnsNames: [], publicKey: subjectPublicKeyFromDer(pair.publicKey.export({ format: 'der', type: 'spki' })),
    }));
    const forged = await agent.call<{ code: string }>('GET', AgentPaths.sync, undefined, {
      cert: `-----BEGIN CERTIFICATE-----\n${der.toString('base64')}\n-----END CERTIFICATE-----\n`,
      key: pair.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    });
    expect(forged.status).toBe(401);
    expect(forged.body.code).toBe('unauthenticated');
    // a device SVID cannot use agent routes
    const device = await redeem(await token({ spiffeId: `spiffe://${TD}/device-type/sensor/ins/1` }), AgentPaths.deviceRedeem);
    const wrongKind = await device.node!.call<{ code: string }>('GET', AgentPaths.sync);
    expect(wrongKind.status).toBe(401);
  });

  it('rate-limits repeated failed redemptions from one source', async () => {
    const c = parseBootstrapToken(await token()).claims;
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push((await redeem(encodeBootstrapToken({ ...c, id: `nope${i}nope${i}nope` }, 'C'.repeat(43)))).status);
    // earlier tests in this file already failed a few times from this address
    const first = statuses.indexOf(429);
    expect(first).toBeGreaterThan(0);
    expect(first).toBeLessThanOrEqual(10);
    expect(statuses.slice(0, first).every((s) => s === 401)).toBe(true);
    expect(statuses.slice(first).every((s) => s === 429)).toBe(true);
  });
});

describe(`registration entries (${storeKind()} store)`, () => {
  let ca: TestCa;
  beforeAll(async () => {
    ca = await startTestCa();
    await ca.admin('/v1/trust-domains', { body: { name: 'entries.test' } });
  });
  afterAll(() => ca.close());

  it('validates per the spec and refuses reserved IDs', async () => {
    const base = { spiffeId: 'spiffe://entries.test/w', parentId: 'spiffe://entries.test/cairn/agent/a', selectors: ['unix:uid:1'] };
    for (const [patch, code] of [
      [{ spiffeId: 'spiffe://entries.test/cairn/agent/x' }, 'reserved_spiffe_id'],
      [{ spiffeId: 'spiffe://entries.test/cairn' }, 'reserved_spiffe_id'],
      [{ spiffeId: 'spiffe://entries.test' }, 'invalid_spiffe_id'],
      [{ spiffeId: 'spiffe://entries.test/a/../b' }, 'invalid_spiffe_id'],
      [{ parentId: 'spiffe://other.test/agent' }, 'wrong_trust_domain'],
      [{ spiffeId: 'spiffe://nope.test/w', parentId: 'spiffe://nope.test/a' }, 'trust_domain_not_found'],
      [{ selectors: [] }, 'invalid_request'],
      [{ selectors: ['nocolon'] }, 'invalid_selector'],
      [{ selectors: ['UPPER:x'] }, 'invalid_selector'],
      [{ x509SvidTtl: 1 }, 'invalid_ttl'],
      [{ dnsNames: ['bad_name'] }, 'invalid_dns_name'],
      [{ federatesWith: ['entries.test'] }, 'invalid_trust_domain'],
      [{ federatesWith: ['Bad.TD'] }, 'invalid_trust_domain'],
      // a trust domain neither hosted here nor with a bundle held: its workloads could never get its bundle
      [{ federatesWith: ['partner.test'] }, 'unknown_federated_trust_domain'],
    ] as const) {
      const res = await ca.admin('/v1/entries', { body: { ...base, ...patch } });
      expect(res.status, JSON.stringify(patch)).toBeGreaterThanOrEqual(400);
      expect((await res.json()).code, JSON.stringify(patch)).toBe(code);
    }
    const partner = derToPem((await testCaCertificate('partner.test')).der);
    expect((await ca.admin('/v1/trust-domains/entries.test/federation/bundles/partner.test', { method: 'PUT', body: { bundle: partner } })).status).toBe(200);
    const ok = await ca.admin('/v1/entries', { body: { ...base, selectors: ['unix:uid:1', 'k8s:pod-label:a:b', 'unix:uid:1'], federatesWith: ['partner.test'], hint: 'web', admin: true, expiresAt: '2030-01-01T00:00:00Z' } });
    expect(ok.status).toBe(201);
    const okBody = await ok.json();
    expect(okBody).toMatchObject({ selectors: ['k8s:pod-label:a:b', 'unix:uid:1'], federatesWith: ['partner.test'], hint: 'web', admin: true, expiresAt: '2030-01-01T00:00:00.000Z' });
    const dup = await ca.admin('/v1/entries', { body: { ...base, selectors: ['unix:uid:1', 'k8s:pod-label:a:b'] } });
    expect(dup.status).toBe(409);
    const existingId = okBody.id as string;
    // the refusal names the entry that holds the identity, in the message and as a field
    expect(await dup.json()).toEqual({ code: 'entry_exists', message: `registration entry ${existingId} already has this SPIFFE ID, parent ID and selectors`, details: { existingId } });
    const other = await ca.admin('/v1/entries', { body: { ...base, selectors: ['unix:uid:2'] } });
    expect(other.status).toBe(201);
    const clash = await ca.admin(`/v1/entries/${(await other.json()).id}`, { method: 'PATCH', body: { selectors: ['k8s:pod-label:a:b', 'unix:uid:1'] } });
    expect(clash.status).toBe(409);
    expect((await clash.json()).details).toEqual({ existingId });
  });

  it('lists with paging and filters by parent, SPIFFE ID and selectors; shows, updates and deletes', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await ca.admin('/v1/entries', { body: { spiffeId: `spiffe://entries.test/svc${i}`, parentId: `spiffe://entries.test/agent${i % 2}`, selectors: ['unix:uid:10', `unix:supplementary_gid:${i}`] } });
      ids.push((await res.json()).id);
    }
    const byParent = await (await ca.admin(`/v1/entries?parentId=${encodeURIComponent('spiffe://entries.test/agent0')}`)).json();
    expect(byParent.entries.map((e: { spiffeId: string }) => e.spiffeId).sort()).toEqual(['spiffe://entries.test/svc0', 'spiffe://entries.test/svc2', 'spiffe://entries.test/svc4']);
    const bySel = await (await ca.admin('/v1/entries?selector=unix:uid:10&selector=unix:supplementary_gid:3')).json();
    expect(bySel.entries.map((e: { spiffeId: string }) => e.spiffeId)).toEqual(['spiffe://entries.test/svc3']);
    const byId = await (await ca.admin(`/v1/entries?spiffeId=${encodeURIComponent('spiffe://entries.test/svc1')}`)).json();
    expect(byId.entries).toHaveLength(1);
    let seen = 0;
    let tokenQs = '';
    do {
      const page = await (await ca.admin(`/v1/entries?trustDomain=entries.test&pageSize=2${tokenQs}`)).json();
      seen += page.entries.length;
      tokenQs = page.nextPageToken ? `&pageToken=${page.nextPageToken}` : '';
    } while (tokenQs);
    expect(seen).toBeGreaterThanOrEqual(5);
    const upd = await ca.admin(`/v1/entries/${ids[0]}`, { method: 'PATCH', body: { x509SvidTtl: 900, dnsNames: ['svc0.entries.test'] } });
    const updated = await upd.json();
    expect(updated).toMatchObject({ x509SvidTtl: 900, dnsNames: ['svc0.entries.test'] });
    expect(updated.revision).toBeGreaterThan(0);
    expect((await ca.admin(`/v1/entries/${ids[0]}`, { method: 'DELETE' })).status).toBe(204);
    expect((await (await ca.admin(`/v1/entries/${ids[0]}`)).json()).code).toBe('entry_not_found');
  });

  it('a trust domain with entries is not deleted unless forced', async () => {
    await ca.admin('/v1/trust-domains', { body: { name: 'busy.test' } });
    await ca.admin('/v1/entries', { body: { spiffeId: 'spiffe://busy.test/w', parentId: 'spiffe://busy.test/a', selectors: ['unix:uid:1'] } });
    const refused = await ca.admin('/v1/trust-domains/busy.test', { method: 'DELETE' });
    expect(refused.status).toBe(409);
    expect(await refused.json()).toMatchObject({ code: 'trust_domain_in_use', details: { entries: 1 } });
    expect((await ca.admin('/v1/trust-domains/busy.test?force=true', { method: 'DELETE' })).status).toBe(204);
    expect((await (await ca.admin('/v1/entries?trustDomain=busy.test')).json()).entries).toEqual([]);
  });

  it('a trust domain with identity templates is not deleted unless forced, and goes with them', async () => {
    await ca.admin('/v1/trust-domains', { body: { name: 'templated.test' } });
    const created = await ca.admin('/v1/templates', { body: { trustDomain: 'templated.test', parentId: 'spiffe://templated.test/a', spiffeIdTemplate: 'spiffe://{td}/uid/{unix:uid}' } });
    expect(created.status).toBe(201);
    const template = (await created.json()) as { id: string };
    const refused = await ca.admin('/v1/trust-domains/templated.test', { method: 'DELETE' });
    expect(refused.status).toBe(409);
    const body = await refused.json();
    expect(body).toMatchObject({ code: 'trust_domain_in_use', details: { entries: 0, templates: 1 } });
    expect(body.message).toMatch(/still has 1 identity templates; delete them or pass force/);
    expect((await ca.admin(`/v1/templates/${template.id}`)).status).toBe(200);
    expect((await ca.admin('/v1/trust-domains/templated.test?force=true', { method: 'DELETE' })).status).toBe(204);
    expect((await ca.admin(`/v1/templates/${template.id}`)).status).toBe(404);
  });
});

