import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';

describe(`public bundle, JWKS and OIDC endpoints (${storeKind()} store)`, () => {
  let ca: TestCa;
  beforeAll(async () => {
    ca = await startTestCa({ publicUrl: 'https://ca.public.test' });
    await ca.admin('/v1/trust-domains', { body: { name: 'pub.test', jwtIssuer: 'https://ca.public.test/td/pub.test' } });
    await ca.admin('/v1/trust-domains', { body: { name: 'noissuer.test' } });
  });
  afterAll(() => ca.close());

  it.each(['bundle', 'bundle.pem', 'jwks', '.well-known/openid-configuration'])('%s is cacheable with an ETag and answers 304', async (path) => {
    const res = await fetch(`${ca.url}/td/pub.test/${path}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('public, max-age=300');
    const etag = res.headers.get('etag')!;
    expect(etag).toMatch(/^"[A-Za-z0-9_-]+"$/);
    const again = await fetch(`${ca.url}/td/pub.test/${path}`, { headers: { 'if-none-match': etag } });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe('');
    expect((await fetch(`${ca.url}/td/pub.test/${path}`, { headers: { 'if-none-match': '"other"' } })).status).toBe(200);
  });

  it('serves the OIDC discovery document gateways and cloud federation need', async () => {
    const doc = await (await fetch(`${ca.url}/td/pub.test/.well-known/openid-configuration`)).json();
    expect(doc).toEqual({
      issuer: 'https://ca.public.test/td/pub.test',
      jwks_uri: 'https://ca.public.test/td/pub.test/jwks',
      authorization_endpoint: '',
      response_types_supported: ['id_token'],
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: ['ES256'],
    });
    const missing = await fetch(`${ca.url}/td/noissuer.test/.well-known/openid-configuration`);
    expect(missing.status).toBe(404);
    expect((await missing.json()).code).toBe('oidc_issuer_not_configured');
  });

  it('serves a plain JWKS with kty, kid, alg and use=sig and only JWT keys', async () => {
    const jwks = await (await fetch(`${ca.url}/td/pub.test/jwks`)).json();
    expect(jwks.keys).toHaveLength(1);
    expect(Object.keys(jwks.keys[0]).sort()).toEqual(['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
    expect(jwks.keys[0]).toMatchObject({ kty: 'EC', alg: 'ES256', use: 'sig' });
    expect(jwks.keys[0].kid).toMatch(/^[A-Za-z0-9]{32}$/);
  });

  it('reports health and readiness', async () => {
    expect(await (await fetch(`${ca.url}/healthz`)).json()).toEqual({ status: 'ok', version: expect.any(String) });
    expect(await (await fetch(`${ca.url}/readyz`)).json()).toEqual({ status: 'ready' });
  });
});
