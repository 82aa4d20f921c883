import { createHash, createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCsr } from '../../lib/pkcs10.js';
import { FakeClock } from '../support/clock.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';

const MIN = 60;
const HOUR = 3600;
const DAY = 86400;

interface View {
  kind: 'x509' | 'jwt';
  id: string;
  status: string;
  keyType: string;
  notBefore: string;
  notAfter: string;
  publishedAt: string;
  publicKeyFingerprint: string;
  unexpiredSvids: number | null;
  published: boolean;
}

/**
 * The operator's levers (prepare, activate, taint, revoke), the automatic schedule's pre-publication
 * window and the bundle's spiffe_sequence, on an injected clock against a real store.
 */
describe(`authority lifecycle (${storeKind()} store)`, () => {
  const clock = new FakeClock(new Date());
  let ca: TestCa;
  beforeAll(async () => {
    ca = await startTestCa({ clock });
  });
  afterAll(() => ca.close());

  const call = async (path: string, body?: unknown, method?: string): Promise<{ status: number; body: any }> => {
    const res = await ca.admin(path, { ...(body === undefined ? {} : { body }), ...(method ? { method } : {}) });
    return { status: res.status, body: await res.json() };
  };
  const list = async (td: string): Promise<View[]> => {
    const res = await call(`/v1/trust-domains/${td}/authorities`);
    expect(res.status).toBe(200);
    return res.body.authorities;
  };
  const bundle = async (td: string): Promise<{ spiffe_sequence: number; keys: { use: string; kid?: string; x5c?: string[] }[] }> =>
    (await fetch(`${ca.url}/td/${td}/bundle`)).json();
  const x509Certs = async (td: string): Promise<string[]> => (await bundle(td)).keys.filter((k) => k.use === 'x509-svid').map((k) => k.x5c![0]!);
  const mint = async (td: string, path = 'w'): Promise<{ certChain: string; serial: string }> => {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const res = await call('/v1/x509-svids', { spiffeId: `spiffe://${td}/${path}`, csr: createCsr(pair.privateKey, pair.publicKey).toString('base64') });
    expect(res.status).toBe(201);
    return res.body;
  };
  /** The CA certificate (base64 DER from the bundle) that signed a PEM SVID. */
  const signerOf = (svidPem: string, cas: readonly string[]): string | undefined => {
    const leaf = new X509Certificate(svidPem);
    return cas.find((c) => leaf.verify(new X509Certificate(Buffer.from(c, 'base64')).publicKey));
  };
  const op = (td: string, verb: string, body: unknown, id?: string) => call(`/v1/trust-domains/${td}/authorities/${id ? `${id}/` : ''}${verb}`, body);

  it('lists every key with kind, status, validity, SPKI fingerprint and the unexpired SVIDs it signed', async () => {
    const TD = 'list.authority.test';
    expect((await call('/v1/trust-domains', { name: TD, caTtlSeconds: DAY })).status).toBe(201);
    await mint(TD);
    await mint(TD, 'w2');
    const all = await list(TD);
    expect(all.map((a) => [a.kind, a.status])).toEqual([['x509', 'active'], ['jwt', 'active']]);
    const [x509, jwt] = all as [View, View];
    expect(x509.unexpiredSvids).toBe(2);
    expect(jwt.unexpiredSvids).toBeNull();
    // the fingerprint is sha256 over the SPKI DER of the certificate the bundle publishes
    const cert = new X509Certificate(Buffer.from((await x509Certs(TD))[0]!, 'base64'));
    const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
    expect(x509.publicKeyFingerprint).toBe(`sha256:${createHash('sha256').update(spki).digest('hex')}`);
    expect(Math.abs(new Date(x509.notAfter).getTime() - new Date(cert.validTo).getTime())).toBeLessThan(1000);
    // ?kind= filters, and a bad kind is a 400 with a code
    expect((await call(`/v1/trust-domains/${TD}/authorities?kind=jwt`)).body.authorities.map((a: View) => a.kind)).toEqual(['jwt']);
    const bad = await call(`/v1/trust-domains/${TD}/authorities?kind=rsa`);
    expect(bad.status).toBe(400);
    expect(bad.body.code).toBe('invalid_request');
    const missing = await call('/v1/trust-domains/nope.authority.test/authorities');
    expect(missing.status).toBe(404);
    expect(missing.body.code).toBe('trust_domain_not_found');
  });

  it('prepare publishes before signing; activate switches at once or waits for --min-published; only old → tainted → revoked', async () => {
    const TD = 'levers.authority.test';
    expect((await call('/v1/trust-domains', { name: TD, caTtlSeconds: DAY })).status).toBe(201);
    const seq0 = (await bundle(TD)).spiffe_sequence;
    const first = (await list(TD))[0]!;
    const before = await mint(TD, 'before');

    // prepared: in the bundle (sequence bumped), signing nothing
    const prepared = await op(TD, 'prepare', { kind: 'x509' });
    expect(prepared.status).toBe(201);
    expect(prepared.body).toMatchObject({ kind: 'x509', status: 'prepared', published: true, unexpiredSvids: 0 });
    expect(await x509Certs(TD)).toHaveLength(2);
    expect((await bundle(TD)).spiffe_sequence).toBe(seq0 + 1);
    const cas = await x509Certs(TD);
    expect(signerOf((await mint(TD, 'still-old')).certChain, cas)).toBe(cas.find((c) => signerOf(before.certChain, [c])));
    const again = await op(TD, 'prepare', { kind: 'x509' });
    expect(again.status).toBe(409);
    expect(again.body.code).toBe('authority_invalid_state');
    expect(again.body.message).toContain('already prepared');

    // the active key cannot be tainted or revoked; nothing is tainted before it is old
    for (const [verb, body] of [['taint', { kind: 'x509' }], ['revoke', { kind: 'x509', force: true }]] as const) {
      const r = await op(TD, verb, body, first.id);
      expect(r.status).toBe(409);
      expect(r.body.code).toBe('authority_invalid_state');
    }
    const notPrepared = await op(TD, 'taint', { kind: 'x509' }, prepared.body.id);
    expect(notPrepared.body.code).toBe('authority_invalid_state');

    // --min-published: refused with how long to wait, then accepted once published that long
    clock.advance(5 * MIN);
    const early = await op(TD, 'activate', { kind: 'x509', minPublishedSeconds: 30 * MIN });
    expect(early.status).toBe(409);
    expect(early.body.code).toBe('authority_too_new');
    expect(early.body.details).toMatchObject({ publishedSeconds: 5 * MIN, retryAfterSeconds: 25 * MIN });
    expect(early.body.message).toContain('published for 5m');
    clock.advance(25 * MIN);
    const activated = await op(TD, 'activate', { kind: 'x509', minPublishedSeconds: 30 * MIN });
    expect(activated.status).toBe(200);
    expect(activated.body.publishedSeconds).toBe(30 * MIN);
    expect(activated.body.activated).toMatchObject({ id: prepared.body.id, status: 'active' });
    expect(activated.body.previous).toMatchObject({ id: first.id, status: 'old' });
    const after = await mint(TD, 'after');
    expect(signerOf(after.certChain, cas)).toBe(cas.find((c) => !signerOf(before.certChain, [c])));
    // nothing prepared any more: a forced activate says so
    const none = await op(TD, 'activate', { kind: 'x509' });
    expect(none.body.code).toBe('authority_invalid_state');

    // revoke wants a tainted key; unknown ids and the wrong kind are 404s
    expect((await op(TD, 'revoke', { kind: 'x509' }, first.id)).body.code).toBe('authority_invalid_state');
    expect((await op(TD, 'taint', { kind: 'x509' }, 'no-such-key')).body.code).toBe('authority_not_found');
    const wrongKind = await op(TD, 'taint', { kind: 'jwt' }, first.id);
    expect(wrongKind.status).toBe(404);
    expect(wrongKind.body.message).toContain('is a x509 authority');

    const seq1 = (await bundle(TD)).spiffe_sequence;
    const tainted = await op(TD, 'taint', { kind: 'x509' }, first.id);
    expect(tainted.status).toBe(200);
    expect(tainted.body).toMatchObject({ status: 'tainted', published: true });
    // still published (peers' SVIDs verify until replaced), and the change is a new sequence
    expect(await x509Certs(TD)).toHaveLength(2);
    expect((await bundle(TD)).spiffe_sequence).toBe(seq1 + 1);
    expect((await op(TD, 'taint', { kind: 'x509' }, first.id)).body.message).toContain('already tainted');

    // revoke: refused while SVIDs it signed are unexpired and in use (minted ones count until they expire)
    const inUse = await op(TD, 'revoke', { kind: 'x509' }, first.id);
    expect(inUse.status).toBe(409);
    expect(inUse.body.code).toBe('authority_in_use');
    expect(inUse.body.details).toMatchObject({ svidsInUse: 2, nodeSvids: 0 });
    expect(inUse.body.message).toMatch(/2 unexpired SVID\(s\) it signed are still in use/);
    const forced = await op(TD, 'revoke', { kind: 'x509', force: true }, first.id);
    expect(forced.status).toBe(200);
    expect(forced.body).toMatchObject({ status: 'revoked', published: false });
    const left = await x509Certs(TD);
    expect(left).toHaveLength(1);
    expect(signerOf(after.certChain, left)).toBeDefined();
    expect(signerOf(before.certChain, left)).toBeUndefined();
    expect((await bundle(TD)).spiffe_sequence).toBe(seq1 + 2);
    expect((await list(TD)).find((a) => a.id === first.id)).toMatchObject({ status: 'revoked', published: false });
    expect((await op(TD, 'revoke', { kind: 'x509', force: true }, first.id)).body.message).toContain('already revoked');
  });

  it('revoke without force succeeds once nothing it signed is in use (SVIDs expired)', async () => {
    const TD = 'expired.authority.test';
    expect((await call('/v1/trust-domains', { name: TD, caTtlSeconds: DAY, x509SvidTtlSeconds: HOUR })).status).toBe(201);
    const old = (await list(TD))[0]!;
    await mint(TD);
    await op(TD, 'prepare', { kind: 'x509' });
    await op(TD, 'activate', { kind: 'x509' });
    await op(TD, 'taint', { kind: 'x509' }, old.id);
    expect((await op(TD, 'revoke', { kind: 'x509' }, old.id)).body.code).toBe('authority_in_use');
    clock.advance(HOUR + MIN);
    const revoked = await op(TD, 'revoke', { kind: 'x509' }, old.id);
    expect(revoked.status).toBe(200);
    expect(await x509Certs(TD)).toHaveLength(1);
  });

  it('revoke counts unexpired SVIDs whose signer was not recorded (issued before 0009, or by a previous-release replica) as in use', async () => {
    const TD = 'unrecorded.authority.test';
    expect((await call('/v1/trust-domains', { name: TD, caTtlSeconds: DAY, x509SvidTtlSeconds: HOUR })).status).toBe(201);
    const old = (await list(TD))[0]!;
    const svid = await mint(TD);
    // what a replica of the previous release writes: no authority_id
    await ca.handle.db.query('UPDATE issued_x509_svids SET authority_id = NULL WHERE serial = $1', [svid.serial]);
    await op(TD, 'prepare', { kind: 'x509' });
    await op(TD, 'activate', { kind: 'x509' });
    await op(TD, 'taint', { kind: 'x509' }, old.id);
    const refused = await op(TD, 'revoke', { kind: 'x509' }, old.id);
    expect(refused.body.code).toBe('authority_in_use');
    expect(refused.body.details).toMatchObject({ unknownSigner: 1 });
    clock.advance(HOUR + MIN);
    expect((await op(TD, 'revoke', { kind: 'x509' }, old.id)).status).toBe(200);
  });

  it('a JWT key: revoke is refused while tokens it signed may be valid; its tokens stop verifying against the JWKS', async () => {
    const TD = 'jwt.authority.test';
    expect((await call('/v1/trust-domains', { name: TD, caTtlSeconds: DAY, jwtSvidTtlSeconds: 5 * MIN })).status).toBe(201);
    const old = (await list(TD)).find((a) => a.kind === 'jwt')!;
    const token = (await call('/v1/jwt-svids', { spiffeId: `spiffe://${TD}/w`, audience: ['gw'] })).body.token;
    await op(TD, 'prepare', { kind: 'jwt' });
    await op(TD, 'activate', { kind: 'jwt' });
    await op(TD, 'taint', { kind: 'jwt' }, old.id);
    const refused = await op(TD, 'revoke', { kind: 'jwt' }, old.id);
    expect(refused.body.code).toBe('authority_in_use');
    expect(refused.body.details.jwtSvidsValidUntil).toBeDefined();
    const jwks = async () => createLocalJWKSet(await (await fetch(`${ca.url}/td/${TD}/jwks`)).json());
    await jwtVerify(token, await jwks(), { currentDate: clock.now() }); // tainted: still published
    clock.advance(7 * MIN);
    expect((await op(TD, 'revoke', { kind: 'jwt' }, old.id)).status).toBe(200);
    await expect(jwtVerify(token, await jwks(), { currentDate: new Date(clock.now().getTime() - 3 * MIN) })).rejects.toThrow();
  });

  it('--jwt-key-type: RS256 from creation, verified by jose; a change applies at the next JWT key only', async () => {
    const TD = 'rsa.authority.test';
    const created = await call('/v1/trust-domains', { name: TD, caTtlSeconds: DAY, jwtKeyType: 'rsa-2048', jwtIssuer: 'https://rsa.authority.test' });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ caKeyType: 'ec-p256', jwtKeyType: 'rsa-2048' });
    const jwksDoc = await (await fetch(`${ca.url}/td/${TD}/jwks`)).json();
    expect(jwksDoc.keys.map((k: { kty: string; alg: string }) => [k.kty, k.alg])).toEqual([['RSA', 'RS256']]);
    const token = (await call('/v1/jwt-svids', { spiffeId: `spiffe://${TD}/w`, audience: ['gw'] })).body.token;
    const verified = await jwtVerify(token, createLocalJWKSet(jwksDoc), { audience: 'gw', issuer: 'https://rsa.authority.test', currentDate: clock.now() });
    expect(verified.protectedHeader.alg).toBe('RS256');
    expect(verified.payload.sub).toBe(`spiffe://${TD}/w`);
    // the X.509 CA stays EC
    expect(createPublicKey(new X509Certificate(Buffer.from((await x509Certs(TD))[0]!, 'base64')).publicKey.export({ type: 'spki', format: 'pem' })).asymmetricKeyType).toBe('ec');

    const updated = await call(`/v1/trust-domains/${TD}`, { jwtKeyType: 'ec-p384' }, 'PATCH');
    expect(updated.body.jwtKeyType).toBe('ec-p384');
    expect((await (await fetch(`${ca.url}/td/${TD}/jwks`)).json()).keys.map((k: { kty: string }) => k.kty)).toEqual(['RSA']);
    const next = await op(TD, 'prepare', { kind: 'jwt' });
    expect(next.body.keyType).toBe('ec-p384');
    await op(TD, 'activate', { kind: 'jwt' });
    const es384 = (await call('/v1/jwt-svids', { spiffeId: `spiffe://${TD}/w`, audience: ['gw'] })).body.token;
    const v2 = await jwtVerify(es384, createLocalJWKSet(await (await fetch(`${ca.url}/td/${TD}/jwks`)).json()), { audience: 'gw', currentDate: clock.now() });
    expect(v2.protectedHeader.alg).toBe('ES384');

    const bad = await call(`/v1/trust-domains/${TD}`, { jwtKeyType: 'ed25519' }, 'PATCH');
    expect(bad.status).toBe(400);
    expect(bad.body.code).toBe('invalid_request');
  });

  it('automatic rotation publishes a successor at least the pre-publication window before it signs (1 h CA: 30 min)', async () => {
    const TD = 'schedule.authority.test';
    expect((await call('/v1/trust-domains', { name: TD, caTtlSeconds: HOUR, x509SvidTtlSeconds: 10 * MIN, jwtSvidTtlSeconds: 5 * MIN })).status).toBe(201);
    expect((await call(`/v1/trust-domains/${TD}`)).body.authorityPrepublishSeconds).toBe(30 * MIN);
    const start = clock.now().getTime();
    const at = (minutes: number): void => clock.set(new Date(start + minutes * MIN * 1000));
    at(18);
    expect(await ca.core.authority.rotate(TD)).toBe(false);
    at(21); // the 1 h key (10 s cushion) prepares at 20 min: 30 min before its activation point (~50 min)
    expect(await ca.core.authority.rotate(TD)).toBe(true);
    const prepared = (await list(TD)).filter((a) => a.status === 'prepared');
    expect(prepared.map((a) => a.kind).sort()).toEqual(['jwt', 'x509']);
    at(50.5); // past the activation point but published only 29.5 min: waits
    await ca.core.authority.rotate(TD);
    expect((await list(TD)).filter((a) => a.status === 'prepared')).toHaveLength(2);
    at(51.1);
    expect(await ca.core.authority.rotate(TD)).toBe(true);
    const now = await list(TD);
    for (const p of prepared) {
      const a = now.find((v) => v.id === p.id)!;
      expect(a.status).toBe('active');
      expect(clock.now().getTime() - new Date(a.publishedAt).getTime()).toBeGreaterThanOrEqual(30 * MIN * 1000);
    }

    // a window the CA TTL cannot honour is refused, not silently shortened
    const tooLong = await call(`/v1/trust-domains/${TD}`, { authorityPrepublishSeconds: 31 * MIN }, 'PATCH');
    expect(tooLong.status).toBe(400);
    expect(tooLong.body.code).toBe('invalid_ttl');
    expect(tooLong.body.message).toContain('authorityPrepublishSeconds must be between 0 and half the CA TTL');
  });

  it('spiffe_sequence changes when an expired key is pruned from the bundle, even with no rotation pass', async () => {
    const TD = 'prune.authority.test';
    expect((await call('/v1/trust-domains', { name: TD, caTtlSeconds: 2 * HOUR, x509SvidTtlSeconds: 10 * MIN, jwtSvidTtlSeconds: 5 * MIN })).status).toBe(201);
    const old = (await list(TD)).find((a) => a.kind === 'x509')!;
    await op(TD, 'prepare', { kind: 'x509' });
    await op(TD, 'activate', { kind: 'x509' });
    const before = await bundle(TD);
    expect(before.keys.filter((k) => k.use === 'x509-svid')).toHaveLength(2);
    clock.set(new Date(new Date(old.notAfter).getTime() + 1000)); // the old CA expired; rotate() never ran
    const after = await bundle(TD);
    // the key set changed, so the sequence did too (issue 13: 4 keys → 2 with the sequence unchanged)
    expect(after.keys.length).toBeLessThan(before.keys.length);
    expect(after.spiffe_sequence).toBeGreaterThan(before.spiffe_sequence);
    // and it is stable while nothing changes
    expect((await bundle(TD)).spiffe_sequence).toBe(after.spiffe_sequence);
  });
  it('records every lever, with its actor, in the audit log in the same transaction', async () => {
    const td = 'audited.lifecycle.test';
    expect((await call('/v1/trust-domains', { name: td })).status).toBe(201);
    expect((await call(`/v1/trust-domains/${td}/authorities/prepare`, { kind: 'x509' })).status).toBe(201);
    const activated = await call(`/v1/trust-domains/${td}/authorities/activate`, { kind: 'x509' });
    expect(activated.status, JSON.stringify(activated.body)).toBe(200);
    const old = activated.body.previous.id as string;
    expect((await call(`/v1/trust-domains/${td}/authorities/${old}/taint`, { kind: 'x509' })).status).toBe(200);
    // integrate and sign now (the answer is the signed note, text/plain)
    expect((await ca.admin('/v1/audit/checkpoint', { method: 'POST' })).status).toBe(200);
    for (const event of ['authority.prepared', 'authority.activated', 'authority.tainted']) {
      const found = await call(`/v1/audit/search?event=${event}`);
      const entries = (found.body.entries as { data: string }[]).map((e) => JSON.parse(Buffer.from(e.data, 'base64').toString('utf8')));
      expect(entries.filter((e) => e.trustDomain === td), event).toHaveLength(1);
      expect(entries.find((e) => e.trustDomain === td)).toMatchObject({ event, actor: 'bootstrap', kind: 'x509' });
    }
  });
});
