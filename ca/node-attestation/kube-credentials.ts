import { readFileSync } from 'node:fs';
import { UpstreamError } from './upstream-guard.js';

/**
 * Kubernetes API credentials from the CA's own configuration (`--kube-credentials`,
 * CAIRN_KUBE_CREDENTIALS, or the built-in `in-cluster` set). Only these name files on the CA host;
 * an attestor configured through the admin API selects one by name or brings its own token inline.
 */
export interface KubeCredentialSet {
  readonly name: string;
  readonly apiServer: string;
  /** Read at each use: projected service-account tokens rotate. */
  readonly tokenFile: string;
  /** PEM trust anchors for the API server; absent: the system's roots. */
  readonly caFile?: string | undefined;
}

export const IN_CLUSTER = 'in-cluster';
const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** The pod's own service account, as client-go's rest.InClusterConfig finds it. */
export function inClusterCredentials(env: Readonly<Record<string, string | undefined>>): KubeCredentialSet {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT ?? '443';
  const apiServer = host ? `https://${host.includes(':') ? `[${host}]` : host}:${port}` : 'https://kubernetes.default.svc';
  return { name: IN_CLUSTER, apiServer, tokenFile: `${SA_DIR}/token`, caFile: `${SA_DIR}/ca.crt` };
}

/**
 * One set as written on the command line: `NAME=api-server=URL,token-file=FILE[,ca-file=FILE]`.
 * Throws an Error whose message names what is wrong (the CLI turns it into a usage error).
 */
export function parseKubeCredentials(text: string): KubeCredentialSet {
  const eq = text.indexOf('=');
  const name = eq > 0 ? text.slice(0, eq) : '';
  if (!NAME.test(name)) throw new Error(`"${text}" must start with a name (letters, digits, ".", "_", "-"), then "=api-server=URL,token-file=FILE[,ca-file=FILE]"`);
  const fields = new Map<string, string>();
  for (const part of text.slice(eq + 1).split(',')) {
    const i = part.indexOf('=');
    const key = i > 0 ? part.slice(0, i) : part;
    if (!['api-server', 'token-file', 'ca-file'].includes(key) || i < 0 || i === part.length - 1) {
      throw new Error(`credential set "${name}": "${part}" is not api-server=URL, token-file=FILE or ca-file=FILE`);
    }
    if (fields.has(key)) throw new Error(`credential set "${name}" gives ${key} twice`);
    fields.set(key, part.slice(i + 1));
  }
  const apiServer = fields.get('api-server');
  const tokenFile = fields.get('token-file');
  if (!apiServer || !/^https:\/\/\S+$/.test(apiServer)) throw new Error(`credential set "${name}" needs api-server=https://…`);
  if (!tokenFile) throw new Error(`credential set "${name}" needs token-file=FILE`);
  return { name, apiServer: apiServer.replace(/\/+$/, ''), tokenFile, caFile: fields.get('ca-file') };
}

/** The CA's credential sets by name: `in-cluster` unless the configuration defines its own of that name. */
export function credentialSets(configured: readonly KubeCredentialSet[], env: Readonly<Record<string, string | undefined>>): ReadonlyMap<string, KubeCredentialSet> {
  const sets = new Map<string, KubeCredentialSet>([[IN_CLUSTER, inClusterCredentials(env)]]);
  for (const c of configured) sets.set(c.name, c);
  return sets;
}

/** The set's files, read now; a failure is the CA's own problem, told to the log, never to the caller. */
export function readCredentialSet(set: KubeCredentialSet): { apiServer: string; bearer: string; ca: string | undefined } {
  const read = (path: string, what: string): string => {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw new UpstreamError(`credential set "${set.name}": cannot read its ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const bearer = read(set.tokenFile, 'token file').trim();
  if (!bearer) throw new UpstreamError(`credential set "${set.name}": its token file ${set.tokenFile} is empty`);
  return { apiServer: set.apiServer, bearer, ca: set.caFile ? read(set.caFile, 'CA file') : undefined };
}
