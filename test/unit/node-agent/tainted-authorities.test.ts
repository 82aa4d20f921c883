import { describe, expect, it } from 'vitest';
import { TaintedAuthorities } from '../../../node-agent/agent.js';
import { testCaCertificate } from '../../support/certs.js';

const spki = (key: { export(o: { type: 'spki'; format: 'der' }): Buffer }): string => key.export({ type: 'spki', format: 'der' }).toString('base64');

describe("the agent's set of tainted authorities", () => {
  it('finds the tainted CA that signed a certificate by its signature, and JWT keys by kid', async () => {
    const [oldCa, newCa] = await Promise.all([testCaCertificate('t.test'), testCaCertificate('t.test')]);
    const set = new TaintedAuthorities();
    expect(set.empty).toBe(true);
    expect(set.signerOf([oldCa.der])).toBeUndefined();

    expect(set.update([{ kind: 'x509', id: 'old', publicKey: spki(oldCa.publicKey) }, { kind: 'jwt', id: 'kid-1', publicKey: spki(oldCa.publicKey) }])).toEqual(['old', 'kid-1']);
    expect(set.empty).toBe(false);
    // a self-signed CA certificate is signed by its own key
    expect(set.signerOf([oldCa.der])).toBe('old');
    expect(set.signerOf([newCa.der])).toBeUndefined();
    expect(set.jwtKid('kid-1')).toBe(true);
    expect(set.jwtKid('kid-2')).toBe(false);

    // the set is replaced by each sync bundle: only ids not tainted before are new
    expect(set.update([{ kind: 'x509', id: 'old', publicKey: spki(oldCa.publicKey) }, { kind: 'x509', id: 'new', publicKey: spki(newCa.publicKey) }])).toEqual(['new']);
    expect(set.jwtKid('kid-1')).toBe(false);
    expect(set.signerOf([newCa.der])).toBe('new');
    // revoked keys leave the bundle's list: nothing is tainted any more
    expect(set.update([])).toEqual([]);
    expect(set.empty).toBe(true);
  });
});
