import { NodeAttestationPaths as P } from '../../contract/node-attestation.js';
import { parse, UsageError } from '../args.js';
import { adminClientFor, readInputFile } from '../client.js';
import { printResult, table } from '../output.js';

export const ATTESTOR_USAGE = `cairn attestor k8s-psat add --trust-domain TD --cluster NAME --allow NS:SA [--allow …] [--audience cairn-ca]
                           (--token-review [--kube-credentials NAME | --api-server URL --api-token-file F [--api-ca-file F]]
                            | --issuer URL (--jwks-url URL [--jwks-ca-file F] | --jwks-file F))
                           (files are read here and their content sent; the token is stored sealed.
                            --kube-credentials names a set the CA was started with; default in-cluster)
cairn attestor x509pop add --trust-domain TD --name NAME --ca-file MANUFACTURER-CA.pem   (the CA's own TLS: --ca-pin or CAIRN_CA_FILE)
cairn attestor list --trust-domain TD | remove --trust-domain TD k8s-psat|x509pop NAME
cairn ca pin                                   (the TLS URL and pin agents without a join token need)`;

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
    if (err instanceof SyntaxError) throw new UsageError(`${file} is not JSON (want the cluster's {"keys": [...]})`);
    throw err;
  }
}

function psatDetail(c: Record<string, unknown>): string {
  if (typeof c.disabled === 'string') return `DISABLED: ${c.disabled}`;
  const via = c.kubeCredentials ? ` credentials=${String(c.kubeCredentials)}` : c.apiServer ? ` ${String(c.apiServer)}` : c.jwksUrl ? ` ${String(c.jwksUrl)}` : '';
  return `${String(c.mode)}${via} ${(c.allowedServiceAccounts as string[]).join(',')}`;
}

export async function attestorCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    'trust-domain': { type: 'string' },
    cluster: { type: 'string' },
    name: { type: 'string' },
    allow: { type: 'string', multiple: true },
    audience: { type: 'string' },
    'token-review': { type: 'boolean', default: false },
    'kube-credentials': { type: 'string' },
    'api-server': { type: 'string' },
    'api-ca-file': { type: 'string' },
    'api-token-file': { type: 'string' },
    'jwks-file': { type: 'string' },
    'jwks-url': { type: 'string' },
    'jwks-ca-file': { type: 'string' },
    issuer: { type: 'string' },
    'ca-file': { type: 'string' },
  });
  const td = values['trust-domain'];
  if (!td) throw new UsageError(ATTESTOR_USAGE);
  // Here --ca-file names the manufacturer CA (x509pop add); the connection to the CA trusts --ca-pin,
  // CAIRN_CA_PIN / CAIRN_CA_FILE or endpoints.json instead.
  const client = adminClientFor({ ...values, 'ca-file': undefined });
  const [kind, verb, name] = positionals;
  if (kind === 'list') {
    const res = await client.request<{ attestors: AttestorView[] }>('GET', path(P.attestors, { trustDomain: td }));
    return printResult(values.json, res, () => table([['KIND', 'NAME', 'DETAIL', 'UPDATED'], ...res.attestors.map((a) => [a.kind, a.name, a.kind === 'k8s_psat' ? psatDetail(a.config) : 'manufacturer CAs', a.updatedAt])]));
  }
  if (kind === 'remove' && (verb === 'k8s-psat' || verb === 'x509pop') && name) {
    await client.request('DELETE', path(P.attestor, { trustDomain: td, kind: verb, name }));
    return printResult(values.json, { removed: name }, () => name);
  }
  if (kind === 'k8s-psat' && verb === 'add' && values.cluster && values.allow?.length) {
    const jwks = values['jwks-file'] ? jwksOf(values['jwks-file']) : undefined;
    if (!values['token-review'] && !jwks && !values['jwks-url']) throw new UsageError('choose --token-review, or --jwks-url URL (or --jwks-file F) with --issuer URL');
    const body = {
      mode: values['token-review'] ? 'token_review' : 'jwks',
      allowedServiceAccounts: values.allow,
      ...(values.audience ? { audience: values.audience } : {}),
      ...(values['kube-credentials'] ? { kubeCredentials: values['kube-credentials'] } : {}),
      ...(values['api-server'] ? { apiServer: values['api-server'] } : {}),
      // The CA never reads files named through its API: these are read here and their content sent.
      ...(values['api-ca-file'] ? { apiCaCertificates: readInputFile(values['api-ca-file'], 'the API server CA file') } : {}),
      ...(values['api-token-file'] ? { apiToken: readInputFile(values['api-token-file'], 'the API token file').trim() } : {}),
      ...(jwks ? { jwks, issuer: values.issuer } : {}),
      ...(values['jwks-url'] ? { jwksUrl: values['jwks-url'], issuer: values.issuer, ...(values['jwks-ca-file'] ? { jwksCaCertificates: readInputFile(values['jwks-ca-file'], 'the JWKS CA file') } : {}) } : {}),
    };
    const a = await client.request<AttestorView>('PUT', path(P.psatCluster, { trustDomain: td, name: values.cluster }), body);
    return printResult(values.json, a, () => `${a.kind} ${a.name}`);
  }
  if (kind === 'x509pop' && verb === 'add' && values.name && values['ca-file']) {
    const a = await client.request<AttestorView>('PUT', path(P.x509PopCa, { trustDomain: td, name: values.name }), { caCertificates: readInputFile(values['ca-file'], 'the manufacturer CA file') });
    return printResult(values.json, a, () => `${a.kind} ${a.name}`);
  }
  throw new UsageError(ATTESTOR_USAGE);
}

export async function caPinCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv.slice(1), {});
  const res = await adminClientFor(values).request<{ url: string; pin: string }>('GET', P.caTls);
  printResult(values.json, res, () => `${res.url} ${res.pin}`);
}
