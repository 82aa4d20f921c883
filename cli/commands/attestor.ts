import { NodeAttestationPaths as P } from '../../contract/node-attestation.js';
import { UsageError, type Parsed } from '../flags.js';
import type { ADMIN_FLAGS } from '../specs/common.js';
import type { ATTESTOR_LIST_FLAGS, ATTESTOR_REMOVE_FLAGS, PSAT_ADD_FLAGS, X509POP_ADD_FLAGS } from '../specs/attestor.js';
import { adminClientFor, readInputFile } from '../client.js';
import { printResult, table } from '../output.js';

interface AttestorView {
  kind: string;
  name: string;
  config: Record<string, unknown>;
  updatedAt: string;
}

const path = (template: string, params: Record<string, string>): string =>
  template.replace(/:(\w+)/g, (_, k: string) => encodeURIComponent(params[k] ?? ''));

function jwksOf(file: string): unknown {
  try {
    return JSON.parse(readInputFile(file, 'the JWKS file'));
  } catch (err) {
    if (err instanceof SyntaxError) throw new UsageError(`--jwks-file ${file} is not JSON (want the cluster's {"keys": [...]})`);
    throw err;
  }
}

function psatDetail(c: Record<string, unknown>): string {
  if (typeof c.disabled === 'string') return `DISABLED: ${c.disabled}`;
  const via = c.kubeCredentials ? ` credentials=${String(c.kubeCredentials)}` : c.apiServer ? ` ${String(c.apiServer)}` : c.jwksUrl ? ` ${String(c.jwksUrl)}` : '';
  return `${String(c.mode)}${via} ${(c.allowedServiceAccounts as string[]).join(',')}`;
}

export async function attestorList({ values }: Parsed<typeof ATTESTOR_LIST_FLAGS>): Promise<void> {
  const res = await adminClientFor(values).request<{ attestors: AttestorView[] }>('GET', path(P.attestors, { trustDomain: values['trust-domain'] }));
  printResult(values.json, res, () => table([['KIND', 'NAME', 'DETAIL', 'UPDATED'], ...res.attestors.map((a) => [a.kind, a.name, a.kind === 'k8s_psat' ? psatDetail(a.config) : 'manufacturer CAs', a.updatedAt])]));
}

export async function attestorRemove({ values, positionals }: Parsed<typeof ATTESTOR_REMOVE_FLAGS>): Promise<void> {
  const [kind, name] = positionals as [string, string];
  await adminClientFor(values).request('DELETE', path(P.attestor, { trustDomain: values['trust-domain'], kind, name }));
  printResult(values.json, { removed: name }, () => name);
}

export async function psatAdd({ values, command }: Parsed<typeof PSAT_ADD_FLAGS>): Promise<void> {
  const jwks = values['jwks-file'] ? jwksOf(values['jwks-file']) : undefined;
  if (!values['token-review'] && !jwks && !values['jwks-url']) throw new UsageError('choose --token-review, or --jwks-url URL (or --jwks-file F) with --issuer URL', command);
  const body = {
    mode: values['token-review'] ? 'token_review' : 'jwks',
    allowedServiceAccounts: values.allow,
    ...(values.audience ? { audience: values.audience } : {}),
    ...(values['kube-credentials'] ? { kubeCredentials: values['kube-credentials'] } : {}),
    ...(values['api-server'] ? { apiServer: values['api-server'] } : {}),
    // The CA never reads files named through its API: these are read here and their content sent.
    ...(values['api-ca-file'] ? { apiCaCertificates: readInputFile(values['api-ca-file'], 'the API server CA file (--api-ca-file)') } : {}),
    ...(values['api-token-file'] ? { apiToken: readInputFile(values['api-token-file'], 'the API token file (--api-token-file)').trim() } : {}),
    ...(jwks ? { jwks, issuer: values.issuer } : {}),
    ...(values['jwks-url'] ? { jwksUrl: values['jwks-url'], issuer: values.issuer, ...(values['jwks-ca-file'] ? { jwksCaCertificates: readInputFile(values['jwks-ca-file'], 'the JWKS CA file (--jwks-ca-file)') } : {}) } : {}),
  };
  const a = await adminClientFor(values).request<AttestorView>('PUT', path(P.psatCluster, { trustDomain: values['trust-domain'], name: values.cluster }), body);
  printResult(values.json, a, () => `${a.kind} ${a.name}`);
}

export async function x509PopAdd({ values }: Parsed<typeof X509POP_ADD_FLAGS>): Promise<void> {
  const caCertificates = readInputFile(values['ca-file'], 'the manufacturer CA file');
  // --ca-file names the manufacturer CA here, not the trust for the connection to the CA
  const a = await adminClientFor({ ...values, 'ca-file': undefined }).request<AttestorView>('PUT', path(P.x509PopCa, { trustDomain: values['trust-domain'], name: values.name }), { caCertificates });
  printResult(values.json, a, () => `${a.kind} ${a.name}`);
}

export async function caPinCommand({ values }: Parsed<typeof ADMIN_FLAGS>): Promise<void> {
  const res = await adminClientFor(values).request<{ url: string; pin: string }>('GET', P.caTls);
  printResult(values.json, res, () => `${res.url} ${res.pin}`);
}
