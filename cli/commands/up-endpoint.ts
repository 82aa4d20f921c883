import { realpathSync } from 'node:fs';
import { dirname, isAbsolute, relative } from 'node:path';
import { publicUrls } from '../../contract/public-api.js';
import { jwksUriOf } from '../../ca/bundle/documents.js';
import type { CaConfig } from '../../ca/main.js';
import type { CaCore } from '../../ca/services.js';
import type { TrustDomain } from '../../ca/trust-domains/model.js';
import { isCairnError } from '../../lib/errors.js';
import { ConfigError, type Values } from '../flags.js';
import type { UP_FLAGS } from '../specs/ca.js';

/** `cairn up`'s bundle endpoint settings, in the admin API's names. */
export interface UpEndpoint {
  readonly bundleEndpointListen: string;
  readonly bundleEndpointUrl?: string;
  readonly bundleEndpointProfile: 'https_spiffe' | 'https_web';
  readonly bundleEndpointCert?: string;
  readonly bundleEndpointKey?: string;
}

/**
 * The bundle endpoint `cairn up` serves, if asked for. With a certificate it is https_web, and the
 * operator who names the files on the command line also allows their directory (--web-cert-dir
 * defaults to the certificate's): the files go to the CA as names inside it, like an admin's.
 */
export function upEndpointOf(values: Values<typeof UP_FLAGS>, config: CaConfig): { config: CaConfig; endpoint: UpEndpoint | undefined } {
  const listen = values['bundle-endpoint-listen'];
  const cert = values['bundle-endpoint-cert'];
  const key = values['bundle-endpoint-key'];
  if (listen === undefined) {
    const stray = cert !== undefined ? '--bundle-endpoint-cert' : key !== undefined ? '--bundle-endpoint-key' : values['bundle-endpoint-url'] !== undefined ? '--bundle-endpoint-url' : undefined;
    if (stray) throw new ConfigError(`${stray} needs --bundle-endpoint-listen HOST:PORT`);
    return { config, endpoint: undefined };
  }
  const url = values['bundle-endpoint-url'] !== undefined ? { bundleEndpointUrl: values['bundle-endpoint-url'] } : {};
  if (cert === undefined && key === undefined) return { config, endpoint: { bundleEndpointListen: listen, bundleEndpointProfile: 'https_spiffe', ...url } };
  if (cert === undefined || key === undefined) throw new ConfigError(`${cert === undefined ? '--bundle-endpoint-key' : '--bundle-endpoint-cert'} needs ${cert === undefined ? '--bundle-endpoint-cert' : '--bundle-endpoint-key'} too (https_web serves a certificate and its key)`);
  const dir = realpathSync(config.webCertDir ?? dirname(cert));
  const inside = (file: string, flag: string): string => {
    const rel = relative(dir, realpathSync(file));
    if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) throw new ConfigError(`${flag} ${file} must be in ${config.webCertDir ? '--web-cert-dir' : 'the directory of --bundle-endpoint-cert'} (${dir})`);
    return rel;
  };
  return {
    config: { ...config, webCertDir: dir },
    endpoint: { bundleEndpointListen: listen, bundleEndpointProfile: 'https_web', bundleEndpointCert: inside(cert, '--bundle-endpoint-cert'), bundleEndpointKey: inside(key, '--bundle-endpoint-key'), ...url },
  };
}

/**
 * Creates `cairn up`'s trust domain, or brings an existing one to the endpoint asked for. With an
 * https_web endpoint the JWT issuer is that endpoint's URL, which serves OIDC discovery and the
 * JWKS over https (AWS and GCP federation need an https issuer); else the CA's plain URL.
 */
export async function upTrustDomain(core: CaCore, name: string, base: string, endpoint: UpEndpoint | undefined): Promise<TrustDomain> {
  let td: TrustDomain;
  try {
    td = await core.trustDomains.create({ name, jwtIssuer: publicUrls(base, name).defaultIssuer, ...endpoint }, 'system:up');
  } catch (err) {
    if (!isCairnError(err, 'trust_domain_exists')) throw err;
    td = endpoint ? await core.trustDomains.update(name, endpoint, 'system:up') : await core.trustDomains.get(name);
  }
  const web = td.bundleEndpoint?.profile === 'https_web' ? td.bundleEndpoint.url : undefined;
  if (endpoint && web && td.jwtIssuer !== web) td = await core.trustDomains.update(name, { jwtIssuer: web }, 'system:up');
  return td;
}

/** What endpoints.json and the banner report for OIDC: beside the issuer, wherever it is served. */
export function oidcUrlsOf(td: TrustDomain, base: string): { jwtIssuer?: string; jwksUrl: string; oidcDiscoveryUrl: string; bundleEndpointUrl?: string } {
  const plain = publicUrls(base, td.name);
  const endpoint = td.bundleEndpoint ? { bundleEndpointUrl: td.bundleEndpoint.url } : {};
  if (!td.jwtIssuer) return { jwksUrl: plain.jwksUrl, oidcDiscoveryUrl: plain.oidcDiscoveryUrl, ...endpoint };
  const issuer = td.jwtIssuer.replace(/\/+$/, '');
  return { jwtIssuer: td.jwtIssuer, jwksUrl: jwksUriOf(td.jwtIssuer), oidcDiscoveryUrl: `${issuer}/.well-known/openid-configuration`, ...endpoint };
}
