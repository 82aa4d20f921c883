import { generateKeyPairSync, sign } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { nativeAddonPath } from '../lib/native-addon.js';

/**
 * The ceiling for batch issuance on this machine, measured in the same run: per SVID only the
 * cryptography the CA cannot skip — check the CSR's signature with its P-256 point (proof of
 * possession, through the CA's own native check, ca/issuance/native/ecdsa.c) and sign a certificate —
 * on `threads` threads at once, with no TLS, JSON, database or audit log. Each item has its own key,
 * as each CSR does.
 */
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { createPrivateKey, sign } = require('node:crypto');
const { items, caKey, ms, addon } = workerData;
const { verify } = require(addon);
const ca = createPrivateKey({ key: Buffer.from(caKey), format: 'der', type: 'pkcs8' });
const tbs = Buffer.alloc(420, 7);
const once = (it) => {
  if (!verify('P-256', Buffer.from(it.point), 'sha256', Buffer.from(it.info), Buffer.from(it.sig))) throw new Error('bad signature');
  sign('sha256', tbs, ca);
};
for (let i = 0; i < 20; i++) once(items[i % items.length]);
let n = 0;
const start = performance.now();
while (performance.now() - start < ms) once(items[n++ % items.length]);
parentPort.postMessage((n * 1000) / (performance.now() - start));
`;

export async function cryptoCeiling(threads: number, ms: number, keys = 500): Promise<number> {
  const info = Buffer.alloc(200, 3); // a CertificationRequestInfo's size
  const items = Array.from({ length: keys }, () => {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const spki = publicKey.export({ format: 'der', type: 'spki' });
    return { point: spki.subarray(spki.length - 65), info, sig: sign('sha256', info, privateKey) };
  });
  const addon = nativeAddonPath('cairn_ecdsa');
  const caKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'der', type: 'pkcs8' });
  const rates = await Promise.all(
    Array.from(
      { length: threads },
      () =>
        new Promise<number>((resolve, reject) => {
          const w = new Worker(WORKER, { eval: true, workerData: { items, caKey, ms, addon } });
          w.once('message', (rate: number) => {
            resolve(rate);
            void w.terminate();
          });
          w.once('error', reject);
        }),
    ),
  );
  return rates.reduce((a, b) => a + b, 0);
}
