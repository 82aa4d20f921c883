import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentPaths, type BatchX509Response } from '../../contract/agent-api.js';
import { createCsr, generateKeyAndCsr } from '../../lib/pkcs10.js';
import { pemBundle, pemChain, redeem, type TestNode } from '../support/agent-client.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';
import { opensslVerify } from '../support/openssl.js';

const TD = 'batch.test';
/** Above the issuance pool's threshold (16): the batch runs on the worker threads, not in-thread. */
const SIZE = 40;

/** A CSR carrying one key but signed by another: it proves possession of nothing. */
function wrongKeyCsr(): string {
  const carried = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const signer = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return createCsr(signer.privateKey, carried.publicKey).toString('base64');
}

/** A well-formed CSR whose signature bytes were altered. */
function flippedCsr(): string {
  const der = Buffer.from(generateKeyAndCsr().csr);
  der[der.length - 3]! ^= 0x01;
  return der.toString('base64');
}

describe(`batch X.509-SVID issuance over mTLS (${storeKind()} store)`, () => {
  let ca: TestCa;
  let agent: TestNode;
  const entryIds: string[] = [];

  beforeAll(async () => {
    ca = await startTestCa();
    expect((await ca.admin('/v1/trust-domains', { body: { name: TD, x509SvidTtlSeconds: 600 } })).status).toBe(201);
    const token = (await (await ca.admin('/v1/tokens', { body: { trustDomain: TD } })).json()).token;
    agent = (await redeem(token)).node!;
    for (let i = 0; i < SIZE; i++) {
      const res = await ca.admin('/v1/entries', { body: { spiffeId: `spiffe://${TD}/svc/${i}`, parentId: agent.spiffeId, selectors: [`unix:uid:${1000 + i}`] } });
      expect(res.status).toBe(201);
      entryIds.push((await res.json()).id);
    }
  }, 180_000); // a CA and 40 entries: generous on a loaded two-core machine
  afterAll(() => ca.close());

  it('every CSR in a worker-sized batch has its proof of possession checked: a wrong-key or altered CSR is refused, the rest are issued', async () => {
    const csrs = entryIds.map(() => generateKeyAndCsr().csr.toString('base64'));
    csrs[7] = wrongKeyCsr();
    csrs[23] = flippedCsr();
    csrs[39] = wrongKeyCsr();
    const res = await agent.call<BatchX509Response>('POST', AgentPaths.x509Svids, { requests: entryIds.map((entryId, i) => ({ entryId, csr: csrs[i]! })) });
    expect(res.status).toBe(200);
    const { results, bundle } = res.body;
    expect(results.map((r) => r.entryId)).toEqual(entryIds);
    for (const i of [7, 23, 39]) expect(results[i]).toEqual({ entryId: entryIds[i], error: { code: 'csr_signature_invalid', message: expect.any(String) } });
    const issued = results.filter((r) => r.svid);
    expect(issued).toHaveLength(SIZE - 3);
    // the bundle travels once beside the results, not with every SVID
    expect(bundle).toHaveLength(1);
    for (const r of issued) expect(Object.keys(r.svid!).sort()).toEqual(['chain', 'expiresAt', 'serial', 'spiffeId']);
    const first = issued[0]!.svid!;
    expect(opensslVerify(pemChain(first), pemBundle(res.body), ['-x509_strict'])).toContain('OK');
    expect(results[5]!.svid!.spiffeId).toBe(`spiffe://${TD}/svc/5`);

    // exactly the issued SVIDs are in the inventory, none for the refused CSRs
    const inv = await (await ca.admin(`/v1/x509-svids?spiffeIdPrefix=${encodeURIComponent(`spiffe://${TD}/svc/`)}&pageSize=500`)).json();
    expect(inv.svids.map((s: { serial: string }) => s.serial).sort()).toEqual(issued.map((r) => r.svid!.serial).sort());
  }, 120_000);
});
