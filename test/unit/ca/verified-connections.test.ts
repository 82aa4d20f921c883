import { createPublicKey, randomBytes, X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { VerifiedConnections, type PeerCertificates } from '../../../ca/authority/client-svid.js';
import { subjectPublicKeyFromDer } from '../../../ca/issuance/spki.js';
import { generateKeyAndCsr } from '../../../lib/pkcs10.js';
import { referenceLeaf, testCaCertificate, type TestCaCert } from '../../support/certs.js';

const TD = 'conn.test';

async function leafUnder(ca: TestCaCert, name: string, notAfter: Date): Promise<Buffer> {
  const key = generateKeyAndCsr();
  const subjectKey = subjectPublicKeyFromDer(createPublicKey(key.privateKey).export({ format: 'der', type: 'spki' }));
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x10;
  return referenceLeaf(ca, { spiffeId: `spiffe://${TD}/cairn/agent/${name}`, serial, notBefore: new Date(Date.now() - 60_000), notAfter, dnsNames: [], publicKey: subjectKey }, subjectKey);
}

/** A peer whose chain() calls are counted: a call means the chain was verified afresh. */
function peer(chain: Buffer[], leaf: Buffer | undefined = chain[0]): PeerCertificates & { verifications: number } {
  const p = {
    leaf,
    verifications: 0,
    chain: () => {
      p.verifications++;
      return chain;
    },
  };
  return p;
}

describe('client SVIDs verified once per connection', () => {
  it('verifies a connection once while leaf, validity and authority stay the same', async () => {
    const ca = await testCaCertificate(TD);
    const leaf = await leafUnder(ca, 'a', new Date(Date.now() + 3600_000));
    const v = new VerifiedConnections();
    const conn = {};
    const p = peer([leaf, ca.der]);
    const authorities = async (): Promise<Buffer[]> => [ca.der];
    expect((await v.verify(p, conn, authorities, new Date())).svid.spiffeId.toString()).toBe(`spiffe://${TD}/cairn/agent/a`);
    expect((await v.verify(p, conn, authorities, new Date())).serial).toBe(new X509Certificate(leaf).serialNumber.toLowerCase());
    await v.verify(p, conn, authorities, new Date());
    expect(p.verifications).toBe(1);
    // another connection, or none, verifies for itself
    await v.verify(p, {}, authorities, new Date());
    await v.verify(p, undefined, authorities, new Date());
    expect(p.verifications).toBe(3);
  });

  it('verifies afresh when the connection presents another leaf (renegotiation), and refuses a forged one', async () => {
    const ca = await testCaCertificate(TD);
    const rogue = await testCaCertificate(TD);
    const good = await leafUnder(ca, 'a', new Date(Date.now() + 3600_000));
    const forged = await leafUnder(rogue, 'a', new Date(Date.now() + 3600_000));
    const v = new VerifiedConnections();
    const conn = {};
    const authorities = async (): Promise<Buffer[]> => [ca.der];
    await v.verify(peer([good, ca.der]), conn, authorities, new Date());
    // the serial the node checks run on is the one of the leaf this request presents, not the one remembered
    const renewed = await leafUnder(ca, 'a', new Date(Date.now() + 3600_000));
    const now = await v.verify(peer([renewed, ca.der]), conn, authorities, new Date());
    expect(now.serial).toBe(new X509Certificate(renewed).serialNumber.toLowerCase());
    expect(now.serial).not.toBe(new X509Certificate(good).serialNumber.toLowerCase());
    const second = peer([forged, rogue.der]);
    await expect(v.verify(second, conn, authorities, new Date())).rejects.toMatchObject({ code: 'unauthenticated' });
    expect(second.verifications).toBe(1);
    // a leaf that is not the chain's first certificate is not taken on trust either
    await expect(v.verify(peer([good, ca.der], forged), conn, authorities, new Date())).rejects.toMatchObject({ code: 'unauthenticated' });
  });

  it('stops trusting a verification once its authority is no longer published', async () => {
    const ca = await testCaCertificate(TD);
    const leaf = await leafUnder(ca, 'a', new Date(Date.now() + 3600_000));
    const v = new VerifiedConnections();
    const conn = {};
    let published = [ca.der];
    const authorities = async (): Promise<Buffer[]> => published;
    await v.verify(peer([leaf, ca.der]), conn, authorities, new Date());
    published = [(await testCaCertificate(TD)).der]; // the authority was revoked and replaced
    await expect(v.verify(peer([leaf, ca.der]), conn, authorities, new Date())).rejects.toMatchObject({ code: 'unauthenticated' });
  });

  it('stops trusting a verification once the leaf has expired', async () => {
    const ca = await testCaCertificate(TD);
    const notAfter = new Date(Date.now() + 120_000);
    const leaf = await leafUnder(ca, 'a', notAfter);
    const v = new VerifiedConnections();
    const conn = {};
    const authorities = async (): Promise<Buffer[]> => [ca.der];
    await v.verify(peer([leaf, ca.der]), conn, authorities, new Date());
    const later = new Date(notAfter.getTime() + 1000);
    await expect(v.verify(peer([leaf, ca.der]), conn, authorities, later)).rejects.toMatchObject({ code: 'unauthenticated', message: expect.stringContaining('expired') });
  });

  it('refuses a connection without a client certificate', async () => {
    const v = new VerifiedConnections();
    await expect(v.verify(peer([]), {}, async () => [], new Date())).rejects.toMatchObject({ code: 'unauthenticated' });
  });
});
