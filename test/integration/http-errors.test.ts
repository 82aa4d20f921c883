import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';

describe(`bad input gets a coded 4xx, never a 500 (${storeKind()} store)`, () => {
  let ca: TestCa;
  beforeAll(async () => {
    ca = await startTestCa();
  });
  afterAll(() => ca.close());

  async function expectCode(res: Response, status: number, code: string): Promise<void> {
    expect(res.status).toBe(status);
    const body = await res.json();
    expect(body.code).toBe(code);
    expect(body.message.length).toBeGreaterThan(0);
  }

  it('malformed JSON', async () => {
    await expectCode(await ca.admin('/v1/trust-domains', { body: '{"name": ' }), 400, 'malformed_json');
    await expectCode(await ca.admin('/v1/trust-domains', { body: '' }), 400, 'invalid_request');
  });

  it('oversized bodies', async () => {
    await expectCode(await ca.admin('/v1/trust-domains', { body: JSON.stringify({ name: 'x'.repeat(2 * 1024 * 1024) }) }), 413, 'payload_too_large');
  });

  it('deeply nested JSON', async () => {
    await expectCode(await ca.admin('/v1/trust-domains', { body: '['.repeat(100_000) + ']'.repeat(100_000) }), 400, 'invalid_request');
  });

  it('wrong content type', async () => {
    await expectCode(await ca.admin('/v1/trust-domains', { body: 'name=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } }), 415, 'unsupported_media_type');
  });

  it('unknown routes and methods', async () => {
    await expectCode(await fetch(`${ca.url}/nope`), 404, 'not_found');
    await expectCode(await fetch(`${ca.url}/td/example.org/bundle`, { method: 'POST' }), 404, 'not_found');
  });

  it('bad SPIFFE IDs and path traversal in names', async () => {
    await ca.admin('/v1/trust-domains', { body: { name: 'errors.test' } });
    for (const spiffeId of ['spiffe://errors.test/a/../b', 'spiffe://errors.test//a', 'https://errors.test/a', 'spiffe://ERRORS.test/a', 'spiffe://errors.test/a%2Fb']) {
      await expectCode(await ca.admin('/v1/jwt-svids', { body: { spiffeId, audience: ['x'] } }), 400, 'invalid_spiffe_id');
    }
    await expectCode(await ca.admin('/v1/trust-domains/..%2F..%2Fetc'), 400, 'invalid_trust_domain');
    await expectCode(await fetch(`${ca.url}/td/..%2Fadmin/bundle`), 400, 'invalid_trust_domain');
    await expectCode(await fetch(`${ca.url}/td/unknown.test/bundle`), 404, 'trust_domain_not_found');
  });

  it('bad CSRs', async () => {
    await ca.admin('/v1/trust-domains', { body: { name: 'csr.test' } });
    await expectCode(await ca.admin('/v1/x509-svids', { body: { spiffeId: 'spiffe://csr.test/a', csr: 'garbage' } }), 400, 'invalid_csr');
    await expectCode(await ca.admin('/v1/x509-svids', { body: { spiffeId: 'spiffe://csr.test/a', csr: 'MIIB' } }), 400, 'invalid_csr');
  });
});
