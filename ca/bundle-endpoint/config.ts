import { isIP } from 'node:net';
import { CairnError } from '../../lib/errors.js';
import { SpiffeId } from '../../spiffe/id.js';
import { SpiffeError } from '../../spiffe/errors.js';
import type { BundleEndpoint } from '../trust-domains/model.js';

/** The bundle endpoint fields of a trust domain create or update (the REST body's names). */
export interface BundleEndpointInput {
  /** null (update only): no endpoint any more. */
  readonly bundleEndpointListen?: string | null | undefined;
  readonly bundleEndpointProfile?: string | undefined;
  readonly bundleEndpointSpiffeId?: string | undefined;
  readonly bundleEndpointUrl?: string | undefined;
  /** https_web: files in the CA's web certificate directory (web-files.ts). */
  readonly bundleEndpointCert?: string | undefined;
  readonly bundleEndpointKey?: string | undefined;
}

const DNS_NAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i;
const WILDCARDS = new Set(['0.0.0.0', '::']);

/** The SPIFFE ID the endpoint's SVID carries unless configured (issue 15). */
export const defaultEndpointSpiffeId = (trustDomain: string): string => `spiffe://${trustDomain}/cairn/bundle-endpoint`;

/** `host:port` or `[v6]:port`, as every replica will listen on it. */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value.trim());
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  const hostOk = host !== undefined && (m?.[1] !== undefined ? isIP(host) === 6 : isIP(host) === 4 || DNS_NAME.test(host));
  if (!m || !hostOk || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new CairnError('invalid_request', `bundleEndpointListen must be HOST:PORT (an address or name of this host, and a port 1-65535), e.g. 0.0.0.0:8444 or [::1]:8444 (got "${value}")`);
  }
  return { host, port };
}

function checkUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new CairnError('invalid_request', `bundleEndpointUrl must be an absolute https URL (got "${value}")`);
  }
  if (url.protocol !== 'https:' || url.username || url.password || url.hash || value.length > 512) {
    throw new CairnError('invalid_request', 'bundleEndpointUrl must be an https URL without credentials or fragment, at most 512 characters (SPIFFE Federation: no userinfo)');
  }
  return value;
}

function checkSpiffeId(value: string, trustDomain: string): string {
  let id: SpiffeId;
  try {
    id = SpiffeId.parse(value);
  } catch (err) {
    if (err instanceof SpiffeError) throw new CairnError('invalid_spiffe_id', `bundleEndpointSpiffeId: ${err.message}`, { cause: err });
    throw err;
  }
  // https_spiffe is self-serving here: peers check the endpoint's SVID against this trust domain's bundle
  if (id.trustDomain !== trustDomain) throw new CairnError('wrong_trust_domain', `bundleEndpointSpiffeId must be in trust domain ${trustDomain} (got ${value})`);
  return id.toString();
}

/**
 * The endpoint after a create (`current` undefined) or an update: undefined when the input does not
 * touch it, null when it is removed. The URL follows the listen address unless it was set; the
 * profile, its SPIFFE ID or files stay as they were unless given. The https_web files are only
 * named here: the service has them read and checked (web-files.ts).
 */
export function bundleEndpointOf(input: BundleEndpointInput, trustDomain: string, current: BundleEndpoint | null | undefined, hostName: string): BundleEndpoint | null | undefined {
  const { bundleEndpointListen: listen, bundleEndpointProfile: profile, bundleEndpointSpiffeId: spiffeId, bundleEndpointUrl: url, bundleEndpointCert: cert, bundleEndpointKey: key } = input;
  const others = profile !== undefined || spiffeId !== undefined || url !== undefined || cert !== undefined || key !== undefined;
  if (listen === undefined && !others) return undefined;
  if (listen === null || listen === '') {
    if (others) throw new CairnError('invalid_request', 'an endpoint that is removed (bundleEndpointListen null) takes no other bundleEndpoint settings');
    return null;
  }
  if (profile !== undefined && profile !== 'https_spiffe' && profile !== 'https_web') {
    throw new CairnError('invalid_request', `bundleEndpointProfile must be https_spiffe or https_web (got "${profile}")`);
  }
  const base = listen === undefined ? current : undefined;
  if (listen === undefined && !base) throw new CairnError('invalid_request', `trust domain ${trustDomain} has no bundle endpoint: set bundleEndpointListen to create one`);
  const where = parseListen(listen ?? base!.listen);
  const hostPort = `${where.host.includes(':') ? `[${where.host}]` : where.host}:${where.port}`;
  const publicHost = WILDCARDS.has(where.host) ? hostName : where.host;
  const derivedUrl = `https://${publicHost.includes(':') ? `[${publicHost}]` : publicHost}:${where.port}`;
  const common = {
    listen: hostPort,
    // a URL set before is kept when only other settings change; a new listen address without one derives it
    url: url !== undefined ? checkUrl(url) : listen === undefined && current ? current.url : derivedUrl,
  };
  const chosen = profile ?? current?.profile ?? 'https_spiffe';
  if (chosen === 'https_web') {
    if (spiffeId !== undefined) throw new CairnError('invalid_request', 'bundleEndpointSpiffeId is for the https_spiffe profile; an https_web endpoint serves the certificate the operator supplies');
    const was = current?.profile === 'https_web' ? current : undefined;
    const certFile = cert ?? was?.certFile;
    const keyFile = key ?? was?.keyFile;
    if (!certFile || !keyFile) throw new CairnError('invalid_request', 'the https_web profile needs bundleEndpointCert and bundleEndpointKey: the certificate and key files, in the CA\'s web certificate directory');
    return { ...common, profile: 'https_web', certFile, keyFile };
  }
  if (cert !== undefined || key !== undefined) {
    throw new CairnError('invalid_request', 'bundleEndpointCert and bundleEndpointKey are for the https_web profile (set bundleEndpointProfile https_web); an https_spiffe endpoint serves an SVID the CA issues');
  }
  const currentId = current?.profile === 'https_spiffe' ? current.spiffeId : undefined;
  return { ...common, profile: 'https_spiffe', spiffeId: checkSpiffeId(spiffeId ?? currentId ?? defaultEndpointSpiffeId(trustDomain), trustDomain) };
}
