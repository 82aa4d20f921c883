import type { ForeignBundleList, ForeignBundleView } from '../../contract/federation-api.js';
import { derToPem } from '../../spiffe/bundle/bundle.js';
import type { Parsed } from '../flags.js';
import type { BUNDLE_DELETE_FLAGS, BUNDLE_LIST_FLAGS, BUNDLE_SET_FLAGS, BUNDLE_SHOW_FLAGS } from '../specs/bundle.js';
import { adminClientFor, CliError, readInputFile } from '../client.js';
import { printResult, say, table } from '../output.js';

const base = (td: string): string => `/v1/trust-domains/${encodeURIComponent(td)}/federation/bundles`;

interface SpiffeDocument {
  keys: { use: string; x5c?: string[] }[];
}

const pemOf = (doc: SpiffeDocument): string =>
  doc.keys.filter((k) => k.use === 'x509-svid' && k.x5c?.[0]).map((k) => derToPem(Buffer.from(k.x5c![0]!, 'base64'))).join('');

export async function bundleShow({ values }: Parsed<typeof BUNDLE_SHOW_FLAGS>): Promise<void> {
  const client = adminClientFor(values);
  const td = values['trust-domain'];
  const doc = values.foreign === undefined
    ? await client.request<SpiffeDocument>('GET', `/td/${encodeURIComponent(td)}/bundle`)
    : (await client.request<ForeignBundleView>('GET', `${base(td)}/${encodeURIComponent(values.foreign)}`)).bundle;
  if (values.format === 'spiffe' || values.json) {
    process.stdout.write(JSON.stringify(doc, null, 2) + '\n');
    return;
  }
  const pem = pemOf(doc);
  if (pem === '') say(`note: the bundle holds no X.509 authorities (only JWT keys: use --format spiffe)`);
  process.stdout.write(pem);
}

export async function bundleSet({ values }: Parsed<typeof BUNDLE_SET_FLAGS>): Promise<void> {
  const td = values['trust-domain'];
  const text = readInputFile(values.file, 'the bundle file (--file)');
  if (text.trim() === '') throw new CliError('invalid_bundle', `--file ${values.file} is empty: give a SPIFFE bundle (JSON) or PEM CA certificates`);
  const v = await adminClientFor(values).request<ForeignBundleView>('PUT', `${base(td)}/${encodeURIComponent(values.foreign)}`, { bundle: text });
  say(
    `${td} now holds the bundle of ${v.foreignTrustDomain}: ${v.x509Authorities} X.509 authorit${v.x509Authorities === 1 ? 'y' : 'ies'}, ${v.jwtAuthorities} JWT key(s)` +
      `${v.sequence === null ? ', no spiffe_sequence' : `, spiffe_sequence ${v.sequence}`}; workloads whose entries federate with it receive it now`,
  );
  printResult(values.json, v, () => v.foreignTrustDomain);
}

export async function bundleList({ values }: Parsed<typeof BUNDLE_LIST_FLAGS>): Promise<void> {
  const res = await adminClientFor(values).request<ForeignBundleList>('GET', base(values['trust-domain']));
  printResult(values.json, res, () =>
    table([
      ['FOREIGN TRUST DOMAIN', 'SOURCE', 'SEQUENCE', 'X509 AUTHORITIES', 'JWT KEYS', 'UPDATED', 'BY'],
      ...res.bundles.map((b) => [b.foreignTrustDomain, b.source, b.sequence === null ? '-' : String(b.sequence), String(b.x509Authorities), String(b.jwtAuthorities), b.updatedAt, b.updatedBy]),
    ]),
  );
}

export async function bundleDelete({ values }: Parsed<typeof BUNDLE_DELETE_FLAGS>): Promise<void> {
  const td = values['trust-domain'];
  await adminClientFor(values)
    .request<void>('DELETE', `${base(td)}/${encodeURIComponent(values.foreign)}${values.force ? '?force=true' : ''}`)
    .catch((err: unknown) => {
      if (err instanceof CliError && err.code === 'federated_bundle_in_use') throw new CliError(err.code, err.message.replace('pass force', 'pass --force'), err.status, err.details);
      throw err;
    });
  say(`${td} no longer holds the bundle of ${values.foreign}: workloads stop receiving it now`);
}
