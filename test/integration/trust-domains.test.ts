import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';

describe(`trust domains over HTTP (${storeKind()} store)`, () => {
  let ca: TestCa;
  beforeAll(async () => {
    ca = await startTestCa();
  });
  afterAll(() => ca.close());

  it('creates with defaults, gets, updates TTLs, lists and deletes', async () => {
    const created = await ca.admin('/v1/trust-domains', { body: { name: 'lifecycle.test' } });
    expect(created.status).toBe(201);
    const td = await created.json();
    expect(td).toMatchObject({ name: 'lifecycle.test', caKeyType: 'ec-p256', x509SvidTtlSeconds: 3600, jwtSvidTtlSeconds: 300, jwtIssuer: null, bundleSequence: 1 });
    expect(Object.keys(td).sort()).toEqual([
      'authorityPrepublishSeconds', 'bundleRefreshHintSeconds', 'bundleSequence', 'caKeyType', 'caTtlSeconds', 'createdAt', 'jwtIssuer', 'jwtKeyType', 'jwtSvidTtlSeconds', 'name', 'updatedAt', 'x509SvidTtlSeconds',
    ]);
    expect(td).toMatchObject({ jwtKeyType: 'ec-p256', authorityPrepublishSeconds: 1800, bundleRefreshHintSeconds: 300 });

    expect((await (await ca.admin('/v1/trust-domains/lifecycle.test')).json()).name).toBe('lifecycle.test');
    const patched = await ca.admin('/v1/trust-domains/lifecycle.test', { method: 'PATCH', body: { x509SvidTtlSeconds: 600, jwtIssuer: 'https://oidc.lifecycle.test' } });
    expect(patched.status).toBe(200);
    expect(await patched.json()).toMatchObject({ x509SvidTtlSeconds: 600, jwtSvidTtlSeconds: 300, jwtIssuer: 'https://oidc.lifecycle.test' });

    // the refresh hint is what the published bundle tells federated peers; out of bounds is refused
    const hinted = await ca.admin('/v1/trust-domains/lifecycle.test', { method: 'PATCH', body: { bundleRefreshHintSeconds: 60 } });
    expect(hinted.status).toBe(200);
    expect(await hinted.json()).toMatchObject({ bundleRefreshHintSeconds: 60, x509SvidTtlSeconds: 600 });
    expect((await (await fetch(`${ca.url}/td/lifecycle.test/bundle`)).json()).spiffe_refresh_hint).toBe(60);
    for (const bad of [4, 86401]) {
      const res = await ca.admin('/v1/trust-domains/lifecycle.test', { method: 'PATCH', body: { bundleRefreshHintSeconds: bad } });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ code: 'invalid_ttl', message: 'bundleRefreshHintSeconds must be between 5 and 86400 seconds' });
    }
    const tooShort = await ca.admin('/v1/trust-domains', { body: { name: 'hint.test', bundleRefreshHintSeconds: 1 } });
    expect([tooShort.status, (await tooShort.json()).code]).toEqual([400, 'invalid_ttl']);
    const withHint = await ca.admin('/v1/trust-domains', { body: { name: 'hint.test', bundleRefreshHintSeconds: 5 } });
    expect((await withHint.json()).bundleRefreshHintSeconds).toBe(5);
    expect((await (await fetch(`${ca.url}/td/hint.test/bundle`)).json()).spiffe_refresh_hint).toBe(5);

    const dup = await ca.admin('/v1/trust-domains', { body: { name: 'lifecycle.test' } });
    expect(dup.status).toBe(409);
    expect((await dup.json()).code).toBe('trust_domain_exists');

    const del = await ca.admin('/v1/trust-domains/lifecycle.test', { method: 'DELETE' });
    expect(del.status).toBe(204);
    const gone = await ca.admin('/v1/trust-domains/lifecycle.test');
    expect(gone.status).toBe(404);
    expect((await gone.json()).code).toBe('trust_domain_not_found');
    expect((await ca.admin('/v1/trust-domains/lifecycle.test', { method: 'DELETE' })).status).toBe(404);
  });

  it.each(['ec-p384', 'rsa-2048'])('creates a %s authority', async (caKeyType) => {
    const name = `${caKeyType}.keys.test`;
    const res = await ca.admin('/v1/trust-domains', { body: { name, caKeyType, caTtlSeconds: 86400 * 7 } });
    expect(res.status).toBe(201);
    const bundle = await (await fetch(`${ca.url}/td/${name}/bundle`)).json();
    expect(bundle.keys.map((k: { kty: string }) => k.kty)).toEqual(caKeyType === 'rsa-2048' ? ['RSA', 'RSA'] : ['EC', 'EC']);
  });

  it('pages through the list with opaque tokens', async () => {
    for (let i = 0; i < 5; i++) expect((await ca.admin('/v1/trust-domains', { body: { name: `page${i}.list.test` } })).status).toBe(201);
    const seen: string[] = [];
    let token: string | undefined;
    do {
      const res = await ca.admin(`/v1/trust-domains?pageSize=2${token ? `&pageToken=${token}` : ''}`);
      expect(res.status).toBe(200);
      const page = await res.json();
      expect(page.trustDomains.length).toBeLessThanOrEqual(2);
      seen.push(...page.trustDomains.map((t: { name: string }) => t.name));
      token = page.nextPageToken;
    } while (token);
    expect(seen.filter((n) => n.endsWith('.list.test'))).toEqual([0, 1, 2, 3, 4].map((i) => `page${i}.list.test`));
    expect(new Set(seen).size).toBe(seen.length);
    const bad = await ca.admin('/v1/trust-domains?pageToken=garbage!');
    expect(bad.status).toBe(400);
    expect((await bad.json()).code).toBe('invalid_page_token');
  });

  it.each([
    [{ name: 'Example.org' }, 400, 'invalid_trust_domain'],
    [{ name: 'ex ample.org' }, 400, 'invalid_trust_domain'],
    [{ name: 'spiffe://example.org/path' }, 400, 'invalid_trust_domain'],
    [{ name: 'a'.repeat(255) + 'b' }, 400, 'invalid_request'],
    [{ name: 'ok.test', caKeyType: 'ed25519' }, 400, 'invalid_request'],
    [{ name: 'ok.test', x509SvidTtlSeconds: 5 }, 400, 'invalid_ttl'],
    [{ name: 'ok.test', caTtlSeconds: 7200, x509SvidTtlSeconds: 86400 }, 400, 'invalid_ttl'],
    [{ name: 'ok.test', jwtIssuer: 'not a url' }, 400, 'invalid_request'],
    [{ name: 'ok.test', jwtIssuer: 'https://x.test/?q=1' }, 400, 'invalid_request'],
    [{ name: 'ok.test', unknownField: 1 }, 400, 'invalid_request'],
    [{}, 400, 'invalid_request'],
  ])('rejects %j with %i %s', async (body, status, code) => {
    const res = await ca.admin('/v1/trust-domains', { body });
    expect(res.status).toBe(status);
    const json = await res.json();
    expect(json.code).toBe(code);
    expect(typeof json.message).toBe('string');
  });

  it('rejects updates that break the TTL rules', async () => {
    await ca.admin('/v1/trust-domains', { body: { name: 'patch.test' } });
    for (const [body, code] of [
      [{ x509SvidTtlSeconds: 1 }, 'invalid_ttl'],
      [{}, 'invalid_request'],
      [{ name: 'x' }, 'invalid_request'],
    ] as const) {
      const res = await ca.admin('/v1/trust-domains/patch.test', { method: 'PATCH', body });
      expect(res.status).toBe(400);
      expect((await res.json()).code).toBe(code);
    }
  });
});
