import { generateKeyPairSync } from 'node:crypto';
import { createRemoteJWKSet, jwtVerify, errors as joseErrors } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCsr } from '../../lib/pkcs10.js';
import { parseSpiffeBundle, pemToDerList } from '../../spiffe/bundle/bundle.js';
import { validateJwtSvid } from '../../spiffe/svid/jwt.js';
import { parseX509Svid } from '../../spiffe/svid/x509.js';
import { FakeClock } from '../support/clock.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';
import { opensslText, opensslVerify } from '../support/openssl.js';

const TD = 'issue.test';

function csrFor(type: 'P-256' | 'P-384' | 'rsa' = 'P-256'): string {
  const pair = type === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ec', { namedCurve: type });
  return createCsr(pair.privateKey, pair.publicKey).toString('base64');
}

describe(`issuance (${storeKind()} store)`, () => {
  let ca: TestCa;
  beforeAll(async () => {
    ca = await startTestCa();
    const res = await ca.admin('/v1/trust-domains', { body: { name: TD, jwtIssuer: `${ca.url}/td/${TD}` } });
    expect(res.status).toBe(201);
  });
  afterAll(() => ca.close());

  it.each(['P-256', 'P-384', 'rsa'] as const)('signs a %s CSR into an X509-SVID that openssl verifies against the bundle', async (type) => {
    const res = await ca.admin('/v1/x509-svids', { body: { spiffeId: `spiffe://${TD}/ns/prod/sa/web`, csr: csrFor(type), ttlSeconds: 600, dnsNames: ['Web.Issue.Test'] } });
    expect(res.status).toBe(201);
    const body = await res.json();
    expect(opensslVerify(body.certChain, body.bundle, ['-x509_strict'])).toContain('OK');
    const served = await (await fetch(`${ca.url}/td/${TD}/bundle.pem`)).text();
    expect(opensslVerify(body.certChain, served)).toContain('OK');
    const [leaf] = pemToDerList(body.certChain);
    const svid = parseX509Svid([leaf!]);
    expect(svid.spiffeId.toString()).toBe(`spiffe://${TD}/ns/prod/sa/web`);
    expect(svid.dnsNames).toEqual(['web.issue.test']);
    const lifetime = (svid.notAfter.getTime() - svid.notBefore.getTime()) / 1000;
    expect(lifetime).toBeGreaterThanOrEqual(609);
    expect(lifetime).toBeLessThanOrEqual(611);
    expect(body.serial).toMatch(/^[0-9a-f]{32}$/);
    const text = opensslText(body.certChain);
    expect(text).toContain(`URI:spiffe://${TD}/ns/prod/sa/web`);
    // the CA certificate in the bundle: CA=true, keyCertSign, URI SAN without path, unique serialNumber in Subject
    const caText = opensslText(served);
    expect(caText).toMatch(/CA:TRUE/);
    expect(caText).toMatch(/Certificate Sign, CRL Sign/);
    expect(caText).toMatch(new RegExp(`URI:spiffe://${TD.replace('.', '\\.')}\\s`));
    expect(caText).toMatch(/Subject: .*serialNumber = [0-9a-f]{32}/);
  });

  it('takes identity from the request, never from the CSR, and refuses reserved or foreign IDs', async () => {
    const wrongTd = await ca.admin('/v1/x509-svids', { body: { spiffeId: 'spiffe://other.test/a', csr: csrFor() } });
    expect(wrongTd.status).toBe(404);
    expect((await wrongTd.json()).code).toBe('trust_domain_not_found');
    const reserved = await ca.admin('/v1/x509-svids', { body: { spiffeId: `spiffe://${TD}/cairn/agent/x`, csr: csrFor() } });
    expect(reserved.status).toBe(400);
    expect((await reserved.json()).code).toBe('reserved_spiffe_id');
    const root = await ca.admin('/v1/x509-svids', { body: { spiffeId: `spiffe://${TD}`, csr: csrFor() } });
    expect((await root.json()).code).toBe('invalid_spiffe_id');
    const badDns = await ca.admin('/v1/x509-svids', { body: { spiffeId: `spiffe://${TD}/a`, csr: csrFor(), dnsNames: ['-bad-.test'] } });
    expect((await badDns.json()).code).toBe('invalid_dns_name');
    const badTtl = await ca.admin('/v1/x509-svids', { body: { spiffeId: `spiffe://${TD}/a`, csr: csrFor(), ttlSeconds: 5 } });
    expect((await badTtl.json()).code).toBe('invalid_ttl');
  });

  it('records every X.509-SVID in a searchable inventory', async () => {
    const serials: string[] = [];
    for (const path of ['inv/a', 'inv/b', 'inv_x/c']) {
      const res = await ca.admin('/v1/x509-svids', { body: { spiffeId: `spiffe://${TD}/${path}`, csr: csrFor(), ttlSeconds: 120 } });
      serials.push((await res.json()).serial);
    }
    const byPrefix = await (await ca.admin(`/v1/x509-svids?spiffeIdPrefix=${encodeURIComponent(`spiffe://${TD}/inv/`)}`)).json();
    expect(byPrefix.svids.map((s: { spiffeId: string }) => s.spiffeId)).toEqual([`spiffe://${TD}/inv/a`, `spiffe://${TD}/inv/b`]);
    for (const serial of serials) expect(serial).toMatch(/^[0-9a-f]{32}$/); // lowercase hex, as everywhere
    const bySerial = await (await ca.admin(`/v1/x509-svids?serial=${serials[2]}`)).json();
    expect(bySerial.svids).toHaveLength(1);
    const upper = await (await ca.admin(`/v1/x509-svids?serial=${serials[2]!.toUpperCase()}`)).json();
    expect(upper.svids.map((s: { serial: string }) => s.serial)).toEqual([serials[2]]);
    expect(bySerial.svids[0]).toMatchObject({ spiffeId: `spiffe://${TD}/inv_x/c`, trustDomain: TD, issuedTo: 'admin:bootstrap' });
    const soon = new Date(Date.now() + 200_000).toISOString();
    const expiring = await (await ca.admin(`/v1/x509-svids?trustDomain=${TD}&expiringBefore=${soon}&pageSize=2`)).json();
    expect(expiring.svids).toHaveLength(2);
    expect(expiring.nextPageToken).toBeTruthy();
    const rest = await (await ca.admin(`/v1/x509-svids?trustDomain=${TD}&expiringBefore=${soon}&pageSize=2&pageToken=${expiring.nextPageToken}`)).json();
    expect(rest.svids).toHaveLength(1);
  });

  it('mints JWT-SVIDs that a gateway verifies through the served JWKS URL', async () => {
    const res = await ca.admin('/v1/jwt-svids', { body: { spiffeId: `spiffe://${TD}/api`, audience: ['gateway'] } });
    expect(res.status).toBe(201);
    const { token, expiresAt } = await res.json();
    const [h, p] = token.split('.');
    expect(JSON.parse(Buffer.from(h, 'base64url').toString())).toEqual({ alg: 'ES256', kid: expect.any(String), typ: 'JWT' });
    expect(Object.keys(JSON.parse(Buffer.from(h, 'base64url').toString()))).toEqual(['alg', 'kid', 'typ']);
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
    expect(claims).toMatchObject({ sub: `spiffe://${TD}/api`, aud: ['gateway'], iss: `${ca.url}/td/${TD}` });
    expect(claims.exp - claims.iat).toBe(300);
    expect(new Date(expiresAt).getTime()).toBe(claims.exp * 1000);

    // like a gateway: discovery → jwks_uri → verify
    const discovery = await (await fetch(`${ca.url}/td/${TD}/.well-known/openid-configuration`)).json();
    expect(discovery.issuer).toBe(claims.iss);
    const jwks = createRemoteJWKSet(new URL(discovery.jwks_uri));
    const verified = await jwtVerify(token, jwks, { issuer: discovery.issuer, audience: 'gateway', algorithms: ['ES256'] });
    expect(verified.payload.sub).toBe(`spiffe://${TD}/api`);

    await expect(jwtVerify(token, jwks, { issuer: discovery.issuer, audience: 'someone-else' })).rejects.toBeInstanceOf(joseErrors.JWTClaimValidationFailed);
    const tampered = [h, Buffer.from(JSON.stringify({ ...claims, sub: `spiffe://${TD}/admin` })).toString('base64url'), token.split('.')[2]].join('.');
    await expect(jwtVerify(tampered, jwks)).rejects.toBeInstanceOf(joseErrors.JWSSignatureVerificationFailed);

    // and with the SPIFFE validator against the served SPIFFE bundle
    const bundle = parseSpiffeBundle(TD, await (await fetch(`${ca.url}/td/${TD}/bundle`)).text());
    const svid = validateJwtSvid(token, { audience: 'gateway', bundleFor: (td) => (td === TD ? bundle : undefined), now: new Date() });
    expect(svid.spiffeId.toString()).toBe(`spiffe://${TD}/api`);
    expect(() => validateJwtSvid(token, { audience: 'gateway', bundleFor: () => bundle, now: new Date(Date.now() + 3600_000) })).toThrow(/expired/);
    expect(() => validateJwtSvid(tampered, { audience: 'gateway', bundleFor: () => bundle, now: new Date() })).toThrow(/signature/);
    expect(() => validateJwtSvid(token, { audience: 'nope', bundleFor: () => bundle, now: new Date() })).toThrow(/audience/);
  });

  it('rejects an expired JWT-SVID at the gateway (minted on a clock an hour behind)', async () => {
    const clock = new FakeClock(new Date(Date.now() - 3600_000));
    const past = await startTestCa({ clock });
    try {
      await past.admin('/v1/trust-domains', { body: { name: 'past.test', jwtIssuer: 'https://past.test' } });
      const { token } = await (await past.admin('/v1/jwt-svids', { body: { spiffeId: 'spiffe://past.test/a', audience: ['gw'] } })).json();
      const jwks = createRemoteJWKSet(new URL(`${past.url}/td/past.test/jwks`));
      await expect(jwtVerify(token, jwks, { audience: 'gw' })).rejects.toBeInstanceOf(joseErrors.JWTExpired);
    } finally {
      await past.close();
    }
  });

  it('validates JWT-SVID audiences and TTLs', async () => {
    for (const [body, code] of [
      [{ spiffeId: `spiffe://${TD}/a`, audience: [] }, 'invalid_request'],
      [{ spiffeId: `spiffe://${TD}/a`, audience: [''] }, 'invalid_request'],
      [{ spiffeId: `spiffe://${TD}/a`, audience: ['x'], ttlSeconds: 10 }, 'invalid_ttl'],
      [{ spiffeId: `spiffe://${TD}/a`, audience: ['x\u0001'] }, 'invalid_audience'],
    ] as const) {
      const res = await ca.admin('/v1/jwt-svids', { body });
      expect(res.status).toBe(400);
      expect((await res.json()).code).toBe(code);
    }
  });
});
