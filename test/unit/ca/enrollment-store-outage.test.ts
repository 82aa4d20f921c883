import { createPublicKey, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { EnrollmentService, type EnrollmentDeps } from '../../../ca/enrollment/service.js';
import { subjectPublicKeyFromDer } from '../../../ca/issuance/spki.js';
import { CairnError } from '../../../lib/errors.js';
import { generateKeyAndCsr } from '../../../lib/pkcs10.js';
import { referenceLeaf, testCaCertificate } from '../../support/certs.js';
import { presentedChain } from '../../../ca/authority/client-svid.js';

/**
 * An agent's mTLS call while the store cannot be read: the answer must be store_unavailable (503),
 * never unauthenticated. An agent told "unauthenticated" concludes it was evicted, and a join-token
 * agent then exits — every agent of the estate during a database outage
 * (test/faults/postgres-outage.test.ts found it; this is the same bug without a 60 s outage).
 */
describe('node mTLS authentication during a store outage', () => {
  it('answers store_unavailable, not unauthenticated, when the trust domain\'s authorities cannot be read', async () => {
    const td = 'outage.test';
    const ca = await testCaCertificate(td);
    const key = generateKeyAndCsr();
    const subjectKey = subjectPublicKeyFromDer(createPublicKey(key.privateKey).export({ format: 'der', type: 'spki' }));
    const now = new Date();
    const leaf = await referenceLeaf(ca, { spiffeId: `spiffe://${td}/cairn/agent/join_token/a`, serial: randomBytes(16), notBefore: new Date(now.getTime() - 60_000), notAfter: new Date(now.getTime() + 3600_000), dnsNames: [], publicKey: subjectKey }, subjectKey);
    const down = new CairnError('store_unavailable', 'the database is unavailable, retry later');
    const unreachable = (): never => {
      throw new Error('not reached: authentication stops at the authorities');
    };
    const deps = {
      clock: { now: () => now },
      authority: { x509Authorities: () => Promise.reject(down) },
      nodes: { get: unreachable },
    } as unknown as EnrollmentDeps;
    await expect(new EnrollmentService(deps).authenticate(presentedChain([leaf, ca.der]), 'agent')).rejects.toMatchObject({ code: 'store_unavailable' });
  });

  it('answers store_unavailable, not svid_revoked or unauthenticated, when the revoked-serial lookup fails', async () => {
    const td = 'outage.test';
    const ca = await testCaCertificate(td);
    const key = generateKeyAndCsr();
    const subjectKey = subjectPublicKeyFromDer(createPublicKey(key.privateKey).export({ format: 'der', type: 'spki' }));
    const now = new Date();
    const spiffeId = `spiffe://${td}/cairn/agent/join_token/b`;
    const serial = randomBytes(16);
    // a positive DER integer with no leading zero byte, so the certificate's serial is exactly these 16 bytes
    serial[0] = (serial[0]! & 0x7f) | 0x01;
    const leaf = await referenceLeaf(ca, { spiffeId, serial, notBefore: new Date(now.getTime() - 60_000), notAfter: new Date(now.getTime() + 3600_000), dnsNames: [], publicKey: subjectKey }, subjectKey);
    const down = new CairnError('store_unavailable', 'the database is unavailable, retry later');
    const node = { spiffeId, kind: 'agent', banned: false, serial: serial.toString('hex'), newSerial: null };
    const recorded: { event: string; subject: Record<string, unknown> }[] = [];
    const deps = {
      clock: { now: () => now },
      logger: { info: () => undefined, debug: () => undefined, error: () => undefined },
      audit: { record: async (events: typeof recorded) => void recorded.push(...events) },
      authority: { x509Authorities: async () => [ca.der] },
      nodes: { getMany: async () => [node] },
      revocations: { isRevoked: () => Promise.reject(down) },
    } as unknown as EnrollmentDeps;
    await expect(new EnrollmentService(deps).authenticate(presentedChain([leaf, ca.der]), 'agent')).rejects.toMatchObject({ code: 'store_unavailable' });
    // and with the store answering: a revoked serial is svid_revoked, another passes
    const answering = (revoked: boolean) => ({ ...deps, revocations: { isRevoked: async () => revoked } }) as EnrollmentDeps;
    await expect(new EnrollmentService(answering(true)).authenticate(presentedChain([leaf, ca.der]), 'agent')).rejects.toMatchObject({ code: 'svid_revoked' });
    // the refusal of a node that proved who it is is on record (issue 14); the outage was not
    expect(recorded).toEqual([expect.objectContaining({ event: 'node.refused', subject: expect.objectContaining({ reason: 'svid_revoked', serial: serial.toString('hex') }) })]);
    await expect(new EnrollmentService(answering(false)).authenticate(presentedChain([leaf, ca.der]), 'agent')).resolves.toBe(node);
  });
});
