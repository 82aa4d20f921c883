import { join } from 'node:path';
import type { MintX509Response } from '../../contract/admin-api.js';
import { parseDuration } from '../../lib/duration.js';
import { writeFileAtomic } from '../../lib/fs.js';
import { generateKeyAndCsr, type GeneratedKeyType } from '../../lib/pkcs10.js';
import { UsageError, type Parsed } from '../flags.js';
import type { JWT_MINT_FLAGS, SVID_LIST_FLAGS, X509_MINT_FLAGS } from '../specs/svid.js';
import { adminClientFor } from '../client.js';
import { printResult, say, table } from '../output.js';

/** The key is generated here and never sent; it is printed only when asked for by name (--print-key). */
export async function x509Mint({ values, command }: Parsed<typeof X509_MINT_FLAGS>): Promise<void> {
  if (!values.write && !values['print-key']) {
    throw new UsageError('x509 mint needs --write DIR (svid.pem, svid.key 0600, bundle.pem) or --print-key (the certificate and private key as PEM on stdout)', command);
  }
  const keyType = values['key-type'] as GeneratedKeyType; // one of the table's choices
  const client = adminClientFor(values);
  // The private key is generated here and never sent: the CA sees only the CSR.
  const key = generateKeyAndCsr(keyType);
  const res = await client.request<MintX509Response>('POST', '/v1/x509-svids', {
    spiffeId: values['spiffe-id'],
    csr: key.csr.toString('base64'),
    ...(values.ttl ? { ttlSeconds: parseDuration(values.ttl) } : {}),
    ...(values.dns ? { dnsNames: values.dns } : {}),
  });
  const keyPem = key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  if (values.write) {
    writeFileAtomic(join(values.write, 'svid.pem'), res.certChain, 0o644);
    writeFileAtomic(join(values.write, 'svid.key'), keyPem, 0o600);
    writeFileAtomic(join(values.write, 'bundle.pem'), res.bundle, 0o644);
    say(`wrote svid.pem, svid.key and bundle.pem to ${values.write}`);
  }
  const printKey = values['print-key'];
  printResult(values.json, { ...res, ...(printKey ? { privateKey: keyPem } : {}) }, () =>
    printKey ? res.certChain + keyPem : `${res.spiffeId} ${res.serial} ${res.expiresAt}`,
  );
}

export async function jwtMint({ values }: Parsed<typeof JWT_MINT_FLAGS>): Promise<void> {
  const res = await adminClientFor(values).request<{ spiffeId: string; token: string; expiresAt: string }>('POST', '/v1/jwt-svids', {
    spiffeId: values['spiffe-id'],
    audience: values.audience,
    ...(values.ttl ? { ttlSeconds: parseDuration(values.ttl) } : {}),
  });
  printResult(values.json, res, () => res.token);
}

interface InventoryPage {
  svids: { serial: string; spiffeId: string; notAfter: string; issuedTo: string }[];
  nextPageToken?: string;
}

export async function svidList({ values }: Parsed<typeof SVID_LIST_FLAGS>): Promise<void> {
  const qs = new URLSearchParams();
  const map: Record<string, string | undefined> = {
    trustDomain: values['trust-domain'],
    spiffeIdPrefix: values['spiffe-id-prefix'],
    serial: values.serial, // lowercase already (CHECKS.serial)
    expiringBefore: values['expiring-before'],
    pageSize: values['page-size'],
    pageToken: values['page-token'],
  };
  for (const [k, v] of Object.entries(map)) if (v) qs.set(k, v);
  const page = await adminClientFor(values).request<InventoryPage>('GET', `/v1/x509-svids?${qs}`);
  printResult(values.json, page, () =>
    table([['SERIAL', 'SPIFFE ID', 'EXPIRES', 'ISSUED TO'], ...page.svids.map((s) => [s.serial, s.spiffeId, s.notAfter, s.issuedTo])]) +
    (page.nextPageToken ? `\n(next page: --page-token ${page.nextPageToken})` : ''),
  );
}
