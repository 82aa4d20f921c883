import { join } from 'node:path';
import type { MintX509Response } from '../../contract/admin-api.js';
import { parseDuration } from '../../lib/duration.js';
import { writeFileAtomic } from '../../lib/fs.js';
import { generateKeyAndCsr } from '../../lib/pkcs10.js';
import { parse, UsageError } from '../args.js';
import { adminClientFor } from '../client.js';
import { printResult, say, table } from '../output.js';

export const MINT_USAGE = `cairn x509 mint --spiffe-id ID [--ttl 1h] [--dns NAME …] [--key-type ec-p256|ec-p384|rsa-2048] [--write DIR]
cairn jwt mint --spiffe-id ID --audience AUD [--audience AUD …] [--ttl 5m]
cairn svid list [--trust-domain TD] [--spiffe-id-prefix P] [--serial HEX] [--expiring-before ISO] [--page-size N] [--page-token T]`;

export async function x509Command(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    'spiffe-id': { type: 'string' },
    ttl: { type: 'string' },
    dns: { type: 'string', multiple: true },
    'key-type': { type: 'string', default: 'ec-p256' },
    write: { type: 'string' },
  });
  if (positionals[0] !== 'mint' || !values['spiffe-id']) throw new UsageError(MINT_USAGE);
  const keyType = values['key-type'];
  if (keyType !== 'ec-p256' && keyType !== 'ec-p384' && keyType !== 'rsa-2048') throw new UsageError('--key-type must be ec-p256, ec-p384 or rsa-2048');
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
  printResult(values.json, { ...res, ...(values.write ? {} : { privateKey: keyPem }) }, () =>
    values.write ? `${res.spiffeId} ${res.serial} ${res.expiresAt}` : res.certChain + keyPem,
  );
}

export async function jwtCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    'spiffe-id': { type: 'string' },
    audience: { type: 'string', multiple: true },
    ttl: { type: 'string' },
  });
  if (positionals[0] !== 'mint' || !values['spiffe-id'] || !values.audience) throw new UsageError(MINT_USAGE);
  const client = adminClientFor(values);
  const res = await client.request<{ spiffeId: string; token: string; expiresAt: string }>('POST', '/v1/jwt-svids', {
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

export async function svidCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    'trust-domain': { type: 'string' },
    'spiffe-id-prefix': { type: 'string' },
    serial: { type: 'string' },
    'expiring-before': { type: 'string' },
    'page-size': { type: 'string' },
    'page-token': { type: 'string' },
  });
  if (positionals[0] !== 'list') throw new UsageError(MINT_USAGE);
  const client = adminClientFor(values);
  const qs = new URLSearchParams();
  const map: Record<string, string | undefined> = {
    trustDomain: values['trust-domain'],
    spiffeIdPrefix: values['spiffe-id-prefix'],
    serial: values.serial,
    expiringBefore: values['expiring-before'],
    pageSize: values['page-size'],
    pageToken: values['page-token'],
  };
  for (const [k, v] of Object.entries(map)) if (v) qs.set(k, v);
  const page = await client.request<InventoryPage>('GET', `/v1/x509-svids?${qs}`);
  printResult(values.json, page, () =>
    table([['SERIAL', 'SPIFFE ID', 'EXPIRES', 'ISSUED TO'], ...page.svids.map((s) => [s.serial, s.spiffeId, s.notAfter, s.issuedTo])]) +
    (page.nextPageToken ? `\n(next page: --page-token ${page.nextPageToken})` : ''),
  );
}
