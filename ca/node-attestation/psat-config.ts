import { X509Certificate } from 'node:crypto';
import type { JSONWebKeySet } from 'jose';
import type { PsatClusterBody } from '../../contract/node-attestation.js';
import { CairnError } from '../../lib/errors.js';
import { pemToDerList } from '../../spiffe/bundle/bundle.js';
import { IN_CLUSTER, type KubeCredentialSet } from './kube-credentials.js';
import type { PsatClusterConfig } from './psat.js';

/** A cluster as an admin sends it; the host-path fields are in the schema only to be refused with a useful message. */
export type PsatClusterInput = PsatClusterBody;

export const DEFAULT_PSAT_AUDIENCE = 'cairn-ca';
const SERVICE_ACCOUNT = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const HTTPS_URL = /^https:\/\/\S+$/;
const HOST_PATHS = { apiTokenFile: 'apiToken', apiCaFile: 'apiCaCertificates', jwksCaFile: 'jwksCaCertificates' } as const;

const bad = (message: string): CairnError => new CairnError('invalid_request', message);

function checkCertificates(pem: string, field: string): string {
  let ders: Buffer[];
  try {
    ders = pemToDerList(pem);
    for (const d of ders) new X509Certificate(d);
  } catch {
    ders = [];
  }
  if (ders.length === 0) throw bad(`${field} must hold PEM certificates (the content of the CA file, not its path)`);
  return pem;
}

function refuseFields(input: PsatClusterInput, fields: readonly (keyof PsatClusterInput)[], why: string): void {
  const given = fields.filter((f) => input[f] !== undefined);
  if (given.length > 0) throw bad(`${given.join(', ')} ${given.length === 1 ? 'is' : 'are'} not for ${why}`);
}

/**
 * Validates a cluster configuration and returns what will be stored, with the inline API token
 * still in the clear (the service seals it). Nothing accepted here names a file on the CA host:
 * credentials are a named set of the CA's own configuration, or content given inline.
 */
export function checkPsatInput(input: PsatClusterInput, sets: ReadonlyMap<string, KubeCredentialSet>): PsatClusterConfig & { apiToken?: string } {
  for (const [field, instead] of Object.entries(HOST_PATHS) as [keyof typeof HOST_PATHS, string][]) {
    if (input[field] !== undefined) {
      throw bad(`${field} names a file on the CA host, which the admin API never reads: send the content as ${instead} (the CLI's --${field === 'apiTokenFile' ? 'api-token-file' : field === 'apiCaFile' ? 'api-ca-file' : 'jwks-ca-file'} reads a file on your machine and sends it) or name a credential set the CA was started with (kubeCredentials)`);
    }
  }
  if (input.allowedServiceAccounts.length === 0) throw bad('allowedServiceAccounts must name at least one namespace:serviceaccount (an empty list would authorize nobody)');
  for (const sa of input.allowedServiceAccounts) {
    if (!SERVICE_ACCOUNT.test(sa)) throw bad(`"${sa}" is not namespace:serviceaccount`);
  }
  const base = { mode: input.mode, audience: input.audience ?? DEFAULT_PSAT_AUDIENCE, allowedServiceAccounts: [...new Set(input.allowedServiceAccounts)] };
  if (input.mode === 'token_review') {
    refuseFields(input, ['issuer', 'jwks', 'jwksUrl', 'jwksCaCertificates'], 'mode token_review (they configure offline validation, mode jwks)');
    if (input.kubeCredentials !== undefined) {
      refuseFields(input, ['apiServer', 'apiToken', 'apiCaCertificates'], 'a cluster that names a credential set (the set gives the API server and its credentials)');
      if (!sets.has(input.kubeCredentials)) throw bad(`no Kubernetes credential set "${input.kubeCredentials}" is configured on this CA; it knows ${[...sets.keys()].join(', ')} (cairn ca start --kube-credentials NAME=api-server=URL,token-file=F[,ca-file=F])`);
      return { ...base, kubeCredentials: input.kubeCredentials };
    }
    if (input.apiServer === undefined) {
      refuseFields(input, ['apiToken', 'apiCaCertificates'], 'a cluster without apiServer (give apiServer too, or name a credential set)');
      return { ...base, kubeCredentials: IN_CLUSTER };
    }
    if (!HTTPS_URL.test(input.apiServer)) throw bad('apiServer must be an https URL');
    const apiToken = input.apiToken?.trim();
    if (!apiToken) throw bad('apiServer needs apiToken: the bearer token Cairn sends it (stored sealed under the key-encryption key, never shown again)');
    if (!/^[\x21-\x7e]+$/.test(apiToken)) throw bad('apiToken must be a bearer token (printable characters, no spaces)');
    return {
      ...base,
      apiServer: input.apiServer.replace(/\/+$/, ''),
      ...(input.apiCaCertificates !== undefined ? { apiCaCertificates: checkCertificates(input.apiCaCertificates, 'apiCaCertificates') } : {}),
      apiToken,
    };
  }
  refuseFields(input, ['kubeCredentials', 'apiServer', 'apiToken', 'apiCaCertificates'], 'mode jwks (offline validation calls no API server)');
  if (!input.issuer || !HTTPS_URL.test(input.issuer)) throw bad("offline validation needs the service-account issuer (an https URL, as in the tokens' iss)");
  if (input.jwksUrl !== undefined) {
    if (input.jwks !== undefined) throw bad('give the JWKS inline or its URL, not both');
    if (!HTTPS_URL.test(input.jwksUrl)) throw bad('jwksUrl must be an https URL (e.g. <issuer>/openid/v1/jwks)');
    return {
      ...base,
      issuer: input.issuer,
      jwksUrl: input.jwksUrl,
      ...(input.jwksCaCertificates !== undefined ? { jwksCaCertificates: checkCertificates(input.jwksCaCertificates, 'jwksCaCertificates') } : {}),
    };
  }
  refuseFields(input, ['jwksCaCertificates'], 'an inline JWKS (it is for fetching jwksUrl)');
  const keys = (input.jwks as { keys?: unknown } | undefined)?.keys;
  if (!Array.isArray(keys) || keys.length === 0 || !keys.every((k) => typeof k === 'object' && k !== null && typeof (k as { kty?: unknown }).kty === 'string')) {
    throw bad('offline validation needs the cluster JWKS ({"keys": [...]}, from <issuer>/openid/v1/jwks)');
  }
  if (keys.some((k) => 'd' in (k as object))) throw bad('the JWKS must hold public keys only');
  return { ...base, issuer: input.issuer, jwks: input.jwks as JSONWebKeySet };
}
