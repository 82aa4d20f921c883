import type { RelationshipList, RelationshipView } from '../../contract/federation-api.js';
import type { Parsed } from '../flags.js';
import type { FEDERATION_CREATE_FLAGS, FEDERATION_DELETE_FLAGS, FEDERATION_LIST_FLAGS, FEDERATION_REFRESH_FLAGS, FEDERATION_SHOW_FLAGS } from '../specs/federation.js';
import { adminClientFor, CliError, readInputFile } from '../client.js';
import { UsageError } from '../flags.js';
import { printResult, say, table } from '../output.js';

const base = (td: string): string => `/v1/trust-domains/${encodeURIComponent(td)}/federation/relationships`;

function describe(r: RelationshipView): string {
  return [
    `trust domain:       ${r.trustDomain}`,
    `foreign:            ${r.foreignTrustDomain}`,
    `bundle endpoint:    ${r.bundleEndpointUrl}`,
    `profile:            ${r.profile}${r.endpointSpiffeId ? ` (${r.endpointSpiffeId})` : r.profile === 'https_web' ? (r.webRoots ? ' (given roots)' : " (the system's roots)") : ''}`,
    `sequence:           ${r.sequence ?? '-'}`,
    `last refresh:       ${r.lastRefreshAt ?? 'never'}`,
    `last error:         ${r.lastError ?? '-'}${r.failures > 0 ? ` (${r.failures} failed attempt${r.failures === 1 ? '' : 's'}; keeping the last good bundle)` : ''}`,
    `next refresh:       ${r.nextRefreshAt}`,
  ].join('\n');
}

export async function federationCreate({ values }: Parsed<typeof FEDERATION_CREATE_FLAGS>): Promise<void> {
  const profile = values.profile as 'https_spiffe' | 'https_web';
  if (profile === 'https_web' && values['bundle-file'] !== undefined) throw new UsageError('--bundle-file is for --profile https_spiffe (a bootstrap bundle); https_web takes --ca-file (the endpoint\'s roots)');
  if (profile === 'https_spiffe' && values['ca-file'] !== undefined) throw new UsageError('--ca-file is for --profile https_web; https_spiffe authenticates the endpoint with --bundle-file');
  if (profile === 'https_web' && values['endpoint-spiffe-id'] !== undefined) throw new UsageError('--endpoint-spiffe-id is for --profile https_spiffe');
  const body = {
    foreignTrustDomain: values.foreign,
    bundleEndpointUrl: values['bundle-endpoint'],
    profile,
    ...(values['endpoint-spiffe-id'] ? { endpointSpiffeId: values['endpoint-spiffe-id'] } : {}),
    ...(values['bundle-file'] ? { bundle: readInputFile(values['bundle-file'], 'the bootstrap bundle (--bundle-file)') } : {}),
    ...(values['ca-file'] ? { webRoots: readInputFile(values['ca-file'], "the endpoint's roots (--ca-file)") } : {}),
  };
  // --ca-file names the endpoint's roots here, not the trust for the connection to the CA
  const r = await adminClientFor({ ...values, 'ca-file': undefined }).request<RelationshipView>('POST', base(values['trust-domain']), body);
  say(`${r.trustDomain} now federates with ${r.foreignTrustDomain} through ${r.bundleEndpointUrl} (${r.profile}); the first refresh is due now (cairn federation show)`);
  printResult(values.json, r, () => describe(r));
}

export async function federationList({ values }: Parsed<typeof FEDERATION_LIST_FLAGS>): Promise<void> {
  const res = await adminClientFor(values).request<RelationshipList>('GET', base(values['trust-domain']));
  printResult(values.json, res, () =>
    table([
      ['FOREIGN TRUST DOMAIN', 'PROFILE', 'BUNDLE ENDPOINT', 'SEQUENCE', 'LAST REFRESH', 'LAST ERROR'],
      ...res.relationships.map((r) => [r.foreignTrustDomain, r.profile, r.bundleEndpointUrl, r.sequence === null ? '-' : String(r.sequence), r.lastRefreshAt ?? 'never', r.lastError ?? '-']),
    ]),
  );
}

export async function federationShow({ values }: Parsed<typeof FEDERATION_SHOW_FLAGS>): Promise<void> {
  const r = await adminClientFor(values).request<RelationshipView>('GET', `${base(values['trust-domain'])}/${encodeURIComponent(values.foreign)}`);
  printResult(values.json, r, () => describe(r));
}

/** Exits non-zero when the fetch failed: a script running it after a rotation learns that it did not take. */
export async function federationRefresh({ values }: Parsed<typeof FEDERATION_REFRESH_FLAGS>): Promise<void> {
  const r = await adminClientFor(values).request<RelationshipView>('POST', `${base(values['trust-domain'])}/${encodeURIComponent(values.foreign)}/refresh`);
  printResult(values.json, r, () => describe(r));
  if (r.lastError !== null) throw new CliError('refresh_failed', `the bundle of ${r.foreignTrustDomain} could not be refreshed (keeping the last good one): ${r.lastError}`);
}

export async function federationDelete({ values }: Parsed<typeof FEDERATION_DELETE_FLAGS>): Promise<void> {
  await adminClientFor(values)
    .request<void>('DELETE', `${base(values['trust-domain'])}/${encodeURIComponent(values.foreign)}${values.force ? '?force=true' : ''}`)
    .catch((err: unknown) => {
      if (err instanceof CliError && err.code === 'federated_bundle_in_use') throw new CliError(err.code, err.message.replace('pass force', 'pass --force'), err.status, err.details);
      throw err;
    });
  say(`${values['trust-domain']} no longer federates with ${values.foreign}: polling stopped and its bundle is gone; workloads stop receiving it now`);
}
