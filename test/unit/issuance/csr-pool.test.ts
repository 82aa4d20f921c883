import { afterAll, describe, expect, it } from 'vitest';
import { CsrVerifierPool } from '../../../ca/issuance/csr-pool.js';
import { verifyCsr } from '../../../ca/issuance/csr.js';
import { generateKeyAndCsr } from '../../../lib/pkcs10.js';

describe('CSR verifier pool (worker threads)', () => {
  const pool = new CsrVerifierPool(2, 4);
  afterAll(() => pool.close());

  it('runs on workers and agrees with in-thread verification, bad CSRs included', async () => {
    expect(pool.size).toBe(2);
    const good = Array.from({ length: 30 }, () => generateKeyAndCsr().csr);
    const tampered = Buffer.from(good[0]!);
    tampered[tampered.length - 3]! ^= 1;
    const inputs = [...good, tampered, Buffer.from('nonsense'), generateKeyAndCsr('rsa-2048').csr];
    const results = await pool.verifyAll(inputs);
    expect(results).toHaveLength(inputs.length);
    results.slice(0, 30).forEach((r, i) => {
      expect(r.ok).toBe(true);
      if (r.ok) expect(r.csr.publicKey.spki.equals(verifyCsr(good[i]!).publicKey.spki)).toBe(true);
    });
    expect(results[30]).toMatchObject({ ok: false });
    expect(results[31]).toMatchObject({ ok: false });
    expect(!results[30]!.ok && results[30]!.error.code).toMatch(/csr_signature_invalid|invalid_csr/);
    expect(!results[31]!.ok && results[31]!.error.code).toBe('invalid_csr');
    expect(results[32]).toMatchObject({ ok: true, csr: { publicKey: { keyType: 'rsa', rsaBits: 2048 } } });
  });

  it('does not strand a request when a worker dies', async () => {
    const fragile = new CsrVerifierPool(1, 1);
    const csrs = Array.from({ length: 8 }, () => generateKeyAndCsr().csr);
    const pending = fragile.verifyAll(csrs);
    await (fragile as unknown as { workers: { terminate(): Promise<number> }[] }).workers[0]!.terminate();
    const results = await pending;
    expect(results.every((r) => r.ok)).toBe(true);
    expect(fragile.size).toBe(0);
    expect((await fragile.verifyAll(csrs)).every((r) => r.ok)).toBe(true);
    await fragile.close();
  });
});
