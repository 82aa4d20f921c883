import { parentPort } from 'node:worker_threads';
import { CairnError } from '../../lib/errors.js';
import { verifyCsr } from './csr.js';
import { buildLeafTbs, signCertificate, type IssuerTemplate } from './leaf-template.js';

/**
 * Worker side of IssuancePool: for each item verify the CSR's proof of possession, write the
 * leaf template and sign it, so none of the per-certificate crypto runs on the event loop.
 */
export interface BatchItem {
  readonly der: Uint8Array;
  readonly serial: Uint8Array;
  readonly notBefore: number;
  readonly notAfter: number;
  readonly spiffeId: string;
  readonly dnsNames: readonly string[];
}

export interface BatchJob {
  readonly id: number;
  readonly issuer: IssuerTemplate;
  readonly items: readonly BatchItem[];
}

export type BatchOutcome = { readonly ok: true; readonly cert: Uint8Array } | { readonly ok: false; readonly code: string; readonly message: string };

export function issueItem(issuer: IssuerTemplate, item: BatchItem): BatchOutcome {
  try {
    const { publicKey } = verifyCsr(Buffer.from(item.der.buffer, item.der.byteOffset, item.der.byteLength));
    const tbs = buildLeafTbs(issuer, {
      serial: Buffer.from(item.serial.buffer, item.serial.byteOffset, item.serial.byteLength),
      notBefore: new Date(item.notBefore),
      notAfter: new Date(item.notAfter),
      spiffeId: item.spiffeId,
      dnsNames: item.dnsNames,
      publicKey,
    });
    return { ok: true, cert: signCertificate(issuer, tbs) };
  } catch (err) {
    if (err instanceof CairnError) return { ok: false, code: err.code, message: err.message };
    return { ok: false, code: 'invalid_csr', message: 'CSR could not be processed' };
  }
}

parentPort?.on('message', (job: BatchJob) => {
  const issuer: IssuerTemplate = {
    ...job.issuer,
    signatureAlgorithm: Buffer.from(job.issuer.signatureAlgorithm),
    issuerName: Buffer.from(job.issuer.issuerName),
    authorityKeyIdExtension: Buffer.from(job.issuer.authorityKeyIdExtension),
  };
  parentPort!.postMessage({ id: job.id, results: job.items.map((item) => issueItem(issuer, item)) });
});
