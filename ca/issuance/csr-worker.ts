import { parentPort } from 'node:worker_threads';
import { CairnError } from '../../lib/errors.js';
import { verifyCsr } from './csr.js';

/** Worker side of CsrVerifierPool: parse, import the key and verify, off the event loop. */
export interface CsrJob {
  readonly id: number;
  readonly ders: Uint8Array[];
}

export type CsrOutcome =
  | { readonly ok: true; readonly spki: Uint8Array; readonly keyType: string; readonly rsaBits?: number; readonly keyBits: Uint8Array }
  | { readonly ok: false; readonly code: string; readonly message: string };

parentPort?.on('message', (job: CsrJob) => {
  const results: CsrOutcome[] = job.ders.map((der) => {
    try {
      const { publicKey } = verifyCsr(Buffer.from(der.buffer, der.byteOffset, der.byteLength));
      return {
        ok: true,
        spki: publicKey.spki,
        keyType: publicKey.keyType,
        keyBits: publicKey.keyBits,
        ...(publicKey.rsaBits === undefined ? {} : { rsaBits: publicKey.rsaBits }),
      };
    } catch (err) {
      if (err instanceof CairnError) return { ok: false, code: err.code, message: err.message };
      return { ok: false, code: 'invalid_csr', message: 'CSR could not be verified' };
    }
  });
  parentPort!.postMessage({ id: job.id, results });
});
