import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SECRET_PATTERNS } from '../../support/logs.js';

const matches = (text: string): boolean => SECRET_PATTERNS.some((re) => re.test(text));

describe('the secret scan every test file ends with', () => {
  it('recognises each kind of secret Cairn handles', () => {
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    expect(matches('token=cairn-admin.' + 'aB3'.repeat(14) + 'x')).toBe(true);
    expect(matches('cairn1.eyJpZCI6ImFiYyJ9.' + 'Zx_-'.repeat(11))).toBe(true);
    expect(matches(key.export({ format: 'pem', type: 'pkcs8' }).toString())).toBe(true);
    expect(matches(key.export({ format: 'pem', type: 'sec1' }).toString())).toBe(true);
    expect(matches(JSON.stringify(key.export({ format: 'jwk' })))).toBe(true);
  });

  it('does not flag what may be logged: paths, IDs, public keys, token ids', () => {
    const pub = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    expect(matches('admin token: /var/lib/cairn/admin-token')).toBe(false);
    expect(matches('spiffe://example.org/cairn/agent/join_token/zyef72KViBmqZXjTK0BB')).toBe(false);
    expect(matches(pub.export({ format: 'pem', type: 'spki' }).toString())).toBe(false);
    expect(matches(JSON.stringify(pub.export({ format: 'jwk' })))).toBe(false);
    expect(matches('{"event":"token.redeemed","tokenId":"abc123"}')).toBe(false);
  });
});
