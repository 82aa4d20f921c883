import { describe, expect, it } from 'vitest';
import { isCairnError } from '../../../lib/errors.js';
import { derToPem } from '../../../spiffe/bundle/bundle.js';
import { publicJwkOf } from '../../../spiffe/bundle/jwk.js';
import { parseForeignBundle } from '../../../ca/federation/bundle-input.js';
import { checkEndpointUrl } from '../../../ca/federation/fetch.js';
import { REFRESH, refreshDelaySeconds, retryDelaySeconds } from '../../../ca/federation/relationships.js';
import { testCaCertificate } from '../../support/certs.js';

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
    return undefined;
  } catch (err) {
    return isCairnError(err) ? err.code : `not a CairnError: ${(err as Error).message}`;
  }
};

describe('foreign bundle input', () => {
  it('takes SPIFFE bundle JSON and PEM, with sequence and hint', async () => {
    const ca = await testCaCertificate('partner.test');
    const json = JSON.stringify({ spiffe_sequence: 9, spiffe_refresh_hint: 60, keys: [{ ...publicJwkOf(ca.publicKey), use: 'x509-svid', x5c: [ca.der.toString('base64')] }, { kty: 'EC', use: 'wit-svid' }] });
    const fromJson = parseForeignBundle('partner.test', json);
    expect([fromJson.x509Authorities.length, fromJson.sequence, fromJson.refreshHintSeconds]).toEqual([1, 9, 60]);
    const fromPem = parseForeignBundle('partner.test', `\n${derToPem(ca.der)}`);
    expect(fromPem.x509Authorities[0]!.equals(ca.der)).toBe(true);
    expect(fromPem.sequence).toBeUndefined();
  });

  it('refuses what is detectably not that trust domain\'s bundle', async () => {
    const other = await testCaCertificate('other.test');
    expect(codeOf(() => parseForeignBundle('partner.test', derToPem(other.der)))).toBe('wrong_trust_domain');
    expect(codeOf(() => parseForeignBundle('partner.test', 'nope'))).toBe('invalid_bundle');
    expect(codeOf(() => parseForeignBundle('partner.test', '{"keys": 1}'))).toBe('invalid_bundle');
    expect(codeOf(() => parseForeignBundle('partner.test', '{"keys": [], "spiffe_sequence": -1}'))).toBe('invalid_bundle');
    expect(codeOf(() => parseForeignBundle('partner.test', '{"keys": [], "spiffe_sequence": 1.5}'))).toBe('invalid_bundle');
    expect(codeOf(() => parseForeignBundle('partner.test', JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', x: 'AA', y: 'AA', use: 'jwt-svid', kid: 'k' }] })))).toBe('invalid_bundle');
    expect(codeOf(() => parseForeignBundle('partner.test', `{"keys": [], "pad": "${'x'.repeat(300 * 1024)}"}`))).toBe('invalid_bundle');
    // an empty key set is a valid bundle (every key revoked)
    expect(parseForeignBundle('partner.test', '{"keys": []}').x509Authorities).toEqual([]);
  });
});

describe('bundle endpoint URLs', () => {
  it('accepts https only, without credentials or fragment', () => {
    expect(checkEndpointUrl('https://bundle.partner.test:8443/td/partner.test/bundle?x=1').hostname).toBe('bundle.partner.test');
    for (const bad of ['http://partner.test/b', 'file:///etc/passwd', 'gopher://x/', 'https://u:p@partner.test/', 'https://u@partner.test/', 'https://partner.test/#f', 'not a url']) {
      expect(codeOf(() => checkEndpointUrl(bad)), bad).toBe('invalid_request');
    }
  });
});

describe('refresh pacing', () => {
  it('polls at the refresh hint, clamped, with ±10% jitter; retries double from 2 s up to the interval', () => {
    expect(refreshDelaySeconds(60, 0.5)).toBeCloseTo(60);
    expect(refreshDelaySeconds(undefined, 0.5)).toBeCloseTo(REFRESH.defaultSeconds);
    expect(refreshDelaySeconds(0, 0)).toBeCloseTo(REFRESH.minSeconds * 0.9);
    expect(refreshDelaySeconds(10 ** 9, 0.999)).toBeLessThanOrEqual(REFRESH.maxSeconds * 1.1);
    expect([1, 2, 3, 4].map((n) => retryDelaySeconds(n, 300, 0.5))).toEqual([2, 4, 8, 16]);
    expect(retryDelaySeconds(30, 300, 0.5)).toBeCloseTo(300);
    expect(retryDelaySeconds(30, 5, 0.5)).toBeCloseTo(5);
  });
});

describe('the operator allow-list of bundle endpoints (--federation-endpoints)', () => {
  it('allows exactly what its patterns name, and nothing by default', async () => {
    const { EndpointAllowList } = await import('../../../ca/federation/endpoint-allow.js');
    const { parsePattern } = await import('../../../lib/endpoint-pattern.js');
    const allow = new EndpointAllowList(['partner.example', '*.mesh.example:8444', '[::1]:9443', '10.0.0.7']);
    const ok = (u: string): boolean => allow.allows(new URL(u));
    expect(ok('https://partner.example/bundle')).toBe(true);
    expect(ok('https://partner.example:8443/')).toBe(true);
    expect(ok('https://a.mesh.example:8444/')).toBe(true);
    expect(ok('https://a.mesh.example/')).toBe(false); // port 443
    expect(ok('https://mesh.example:8444/')).toBe(false); // *.domain is below it only
    expect(ok('https://evilpartner.example/')).toBe(false);
    expect(ok('https://partner.example.evil.test/')).toBe(false);
    expect(ok('https://[::1]:9443/')).toBe(true);
    expect(ok('https://10.0.0.7/')).toBe(true);
    expect(ok('https://169.254.169.254/')).toBe(false);
    expect(new EndpointAllowList([]).allows(new URL('https://partner.example/'))).toBe(false);
    expect(new EndpointAllowList(['*']).allows(new URL('https://anything.test:1/'))).toBe(true);
    expect(() => new EndpointAllowList([]).check(new URL('https://partner.example/'))).toThrow(/fetches no bundle endpoint until its operator allows some/);
    for (const bad of ['', 'http://x', 'a..b', 'x:0', 'x:99999', '*.', 'a b']) expect(() => parsePattern(bad), bad).toThrow(/not an endpoint pattern/);
  });
});
