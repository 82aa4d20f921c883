import 'reflect-metadata';
import { afterAll, describe, expect, it } from 'vitest';
import { IssuancePool, type BatchItem } from '../../../ca/issuance/batch-pool.js';
import { createCsr, generateKeyAndCsr } from '../../../lib/pkcs10.js';
import { derToPem } from '../../../spiffe/bundle/bundle.js';
import { parseX509Svid } from '../../../spiffe/svid/x509.js';
import { testCaCertificate } from '../../support/certs.js';
import { opensslVerify } from '../../support/openssl.js';

const item = (der: Buffer, i: number): BatchItem => ({
  der,
  serial: Buffer.from((0x10 + i).toString(16).padStart(32, '0'), 'hex'),
  notBefore: Date.now() - 10_000,
  notAfter: Date.now() + 3_600_000,
  spiffeId: `spiffe://pool.test/w/${i}`,
  dnsNames: [],
});

describe('issuance pool (worker threads)', () => {
  const pool = new IssuancePool(2, 4);
  afterAll(() => pool.close());

  it('verifies, templates and signs on workers; the certificates verify and carry the key from each CSR', async () => {
    const ca = await testCaCertificate('pool.test');
    // no worker until a batch needs one: small batches run in-thread
    expect(pool.size).toBe(0);
    expect((await pool.issueAll(ca.template, [item(generateKeyAndCsr().csr, 0)]))[0]!.ok).toBe(true);
    expect(pool.size).toBe(0);
    const keys = Array.from({ length: 30 }, () => generateKeyAndCsr());
    const tampered = Buffer.from(keys[0]!.csr);
    tampered[tampered.length - 3]! ^= 1;
    const other = generateKeyAndCsr();
    const items = [...keys.map((k, i) => item(k.csr, i)), item(tampered, 30), item(Buffer.from('nonsense'), 31), item(createCsr(other.privateKey, keys[1]!.publicKey), 32)];
    const results = await pool.issueAll(ca.template, items);
    expect(results).toHaveLength(items.length);
    results.slice(0, 30).forEach((r, i) => {
      expect(r.ok).toBe(true);
      if (!r.ok) return;
      expect(parseX509Svid([r.cert]).spiffeId.toString()).toBe(`spiffe://pool.test/w/${i}`);
    });
    const first = results[0]!;
    if (first.ok) expect(opensslVerify(derToPem(first.cert), derToPem(ca.der))).toContain('OK');
    expect(results.slice(30).map((r) => (r.ok ? 'ok' : r.error.code))).toEqual([expect.stringMatching(/csr_signature_invalid|invalid_csr/), 'invalid_csr', 'csr_signature_invalid']);
    expect(pool.size).toBe(2);
  });

  it('stops its workers after a quiet spell and starts them again for the next batch', async () => {
    const ca = await testCaCertificate('pool.test');
    const quick = new IssuancePool(2, 4, 200);
    try {
      const items = Array.from({ length: 8 }, (_, i) => item(generateKeyAndCsr().csr, i));
      expect((await quick.issueAll(ca.template, items)).every((r) => r.ok)).toBe(true);
      expect(quick.size).toBe(2);
      const deadline = Date.now() + 20_000;
      while (quick.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(quick.size).toBe(0);
      expect((await quick.issueAll(ca.template, items)).every((r) => r.ok)).toBe(true);
      expect(quick.size).toBe(2);
    } finally {
      await quick.close();
    }
  });

  it('does not strand a request when a worker dies', async () => {
    const ca = await testCaCertificate('pool.test');
    const fragile = new IssuancePool(1, 1);
    const items = Array.from({ length: 8 }, (_, i) => item(generateKeyAndCsr().csr, i));
    const pending = fragile.issueAll(ca.template, items);
    await (fragile as unknown as { workers: { terminate(): Promise<number> }[] }).workers[0]!.terminate();
    expect((await pending).every((r) => r.ok)).toBe(true);
    expect(fragile.size).toBe(0);
    expect((await fragile.issueAll(ca.template, items)).every((r) => r.ok)).toBe(true);
    await fragile.close();
  });
});
