import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { encodeSpiffeBundle, parseSpiffeBundle } from '../../../spiffe/bundle/bundle.js';
import { publicJwkOf } from '../../../spiffe/bundle/jwk.js';
import { testCaCertificate } from '../../support/certs.js';

describe('SPIFFE bundle codec', () => {
  it('emits x509-svid keys with one x5c and no kid, jwt-svid keys with a kid, and round-trips', async () => {
    const ca = await testCaCertificate('example.org');
    const jwtKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const doc = encodeSpiffeBundle({
      trustDomain: 'example.org',
      x509Authorities: [ca.der],
      jwtAuthorities: [{ kid: 'k1', jwk: publicJwkOf(jwtKey.publicKey) }],
      sequence: 7,
      refreshHintSeconds: 300,
    });
    expect(doc.spiffe_sequence).toBe(7);
    expect(doc.spiffe_refresh_hint).toBe(300);
    const [x, j] = doc.keys;
    expect(x).toMatchObject({ kty: 'EC', crv: 'P-256', use: 'x509-svid' });
    expect(x!.kid).toBeUndefined();
    expect(x!.x5c).toEqual([ca.der.toString('base64')]);
    expect(j).toMatchObject({ kty: 'EC', use: 'jwt-svid', kid: 'k1' });
    expect(Object.keys(j!).sort()).toEqual(['crv', 'kid', 'kty', 'use', 'x', 'y']);
    const back = parseSpiffeBundle('example.org', JSON.stringify(doc));
    expect(back.x509Authorities[0]!.equals(ca.der)).toBe(true);
    expect(back.jwtAuthorities[0]!.kid).toBe('k1');
    expect(back.sequence).toBe(7);
  });

  it('is as strict as go-spiffe', async () => {
    const ca = await testCaCertificate('example.org');
    const b64 = ca.der.toString('base64');
    expect(() => parseSpiffeBundle('td', '{')).toThrow(/JSON/);
    expect(() => parseSpiffeBundle('td', { nokeys: [] })).toThrow(/keys/);
    expect(() => parseSpiffeBundle('td', { keys: [{ kty: 'EC', use: 'x509-svid', x5c: [b64, b64] }] })).toThrow(/exactly one x5c/);
    expect(() => parseSpiffeBundle('td', { keys: [{ kty: 'EC', use: 'jwt-svid', crv: 'P-256', x: 'a', y: 'b' }] })).toThrow(/kid/);
    expect(() => parseSpiffeBundle('td', { keys: [{ kty: 'EC', use: 'x509-svid', x5c: ['bm90IGEgY2VydA=='] }] })).toThrow(/certificate/);
    // unknown use or kty: ignored, not fatal
    expect(parseSpiffeBundle('td', { keys: [{ kty: 'EC', use: 'enc' }, { kty: 'oct', use: 'jwt-svid' }] }).jwtAuthorities).toEqual([]);
  });
});
