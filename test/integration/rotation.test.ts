import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCsr } from '../../lib/pkcs10.js';
import { pemToDerList } from '../../spiffe/bundle/bundle.js';
import { FakeClock } from '../support/clock.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';
import { opensslVerify } from '../support/openssl.js';

const TD = 'rotate.test';
const DAY = 86400;

describe(`authority rotation on an injected clock (${storeKind()} store)`, () => {
  const clock = new FakeClock(new Date());
  let ca: TestCa;
  beforeAll(async () => {
    ca = await startTestCa({ clock });
    expect((await ca.admin('/v1/trust-domains', { body: { name: TD, caTtlSeconds: DAY, x509SvidTtlSeconds: 3600 } })).status).toBe(201);
  });
  afterAll(() => ca.close());

  const bundle = async () => (await fetch(`${ca.url}/td/${TD}/bundle`)).json();
  const mint = async () => {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const res = await ca.admin('/v1/x509-svids', { body: { spiffeId: `spiffe://${TD}/w`, csr: createCsr(pair.privateKey, pair.publicKey).toString('base64') } });
    expect(res.status).toBe(201);
    return res.json();
  };

  it('prepares at half life, activates at one sixth left, drops expired keys, bumping spiffe_sequence each time', async () => {
    const first = await bundle();
    expect(first.keys).toHaveLength(2);
    expect(first.spiffe_sequence).toBe(1);
    const before = await mint();

    clock.advance(DAY * 0.3);
    expect(await ca.core.authority.rotate(TD)).toBe(false);

    clock.advance(DAY * 0.25); // past half life: successor published, not yet signing
    expect(await ca.core.authority.rotate(TD)).toBe(true);
    const prepared = await bundle();
    expect(prepared.keys.filter((k: { use: string }) => k.use === 'x509-svid')).toHaveLength(2);
    expect(prepared.keys.filter((k: { use: string }) => k.use === 'jwt-svid')).toHaveLength(2);
    expect(prepared.spiffe_sequence).toBe(2);
    const stillOld = await mint();
    expect(opensslVerify(stillOld.certChain, before.bundle, ['-attime', String(Math.floor(clock.now().getTime() / 1000))])).toContain('OK');

    clock.advance(DAY * 0.3); // one sixth of life left on the old key: successor becomes active
    expect(await ca.core.authority.rotate(TD)).toBe(true);
    const afterActivation = await mint();
    const [oldCa, newCa] = pemToDerList((await (await fetch(`${ca.url}/td/${TD}/bundle.pem`)).text()));
    expect(newCa).toBeDefined();
    const newCaPem = `-----BEGIN CERTIFICATE-----\n${newCa!.toString('base64')}\n-----END CERTIFICATE-----\n`;
    const oldCaPem = `-----BEGIN CERTIFICATE-----\n${oldCa!.toString('base64')}\n-----END CERTIFICATE-----\n`;
    expect(opensslVerify(afterActivation.certChain, newCaPem, ['-attime', String(Math.floor(clock.now().getTime() / 1000))])).toContain('OK');
    expect(() => opensslVerify(afterActivation.certChain, oldCaPem, ['-attime', String(Math.floor(clock.now().getTime() / 1000))])).toThrow();
    const { token } = await (await ca.admin('/v1/jwt-svids', { body: { spiffeId: `spiffe://${TD}/w`, audience: ['a'] } })).json();
    const kid = JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString()).kid;
    const jwtKeys = (await bundle()).keys.filter((k: { use: string }) => k.use === 'jwt-svid').map((k: { kid: string }) => k.kid);
    expect(jwtKeys).toContain(kid);
    expect(jwtKeys[jwtKeys.length - 1]).toBe(kid);

    clock.advance(DAY * 0.16); // the old key expired: dropped from the bundle (the new one is not yet at half life)
    expect(await ca.core.authority.rotate(TD)).toBe(true);
    const final = await bundle();
    expect(final.keys).toHaveLength(2);
    expect(final.spiffe_sequence).toBe(4);
  });

  it('caps SVID lifetimes at the signing key expiry', async () => {
    const t = new FakeClock(new Date());
    const other = await startTestCa({ clock: t });
    try {
      await other.admin('/v1/trust-domains', { body: { name: 'cap.test', caTtlSeconds: 7200, x509SvidTtlSeconds: 3600, jwtSvidTtlSeconds: 3600 } });
      t.advance(5400);
      const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const x = await (await other.admin('/v1/x509-svids', { body: { spiffeId: 'spiffe://cap.test/w', csr: createCsr(pair.privateKey, pair.publicKey).toString('base64') } })).json();
      const j = await (await other.admin('/v1/jwt-svids', { body: { spiffeId: 'spiffe://cap.test/w', audience: ['a'] } })).json();
      const caExpiry = t.now().getTime() + 1800_000;
      expect(Math.abs(new Date(x.expiresAt).getTime() - caExpiry)).toBeLessThan(15_000);
      expect(Math.abs(new Date(j.expiresAt).getTime() - caExpiry)).toBeLessThan(15_000);
      t.advance(3600); // past expiry, rotation never ran
      const dead = await other.admin('/v1/jwt-svids', { body: { spiffeId: 'spiffe://cap.test/w', audience: ['a'] } });
      expect(dead.status).toBe(503);
      expect((await dead.json()).code).toBe('authority_expired');
    } finally {
      await other.close();
    }
  });
});
