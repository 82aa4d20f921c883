import { request } from 'node:https';
import { isIP } from 'node:net';
import type { PeerCertificate } from 'node:tls';
import { CairnError } from '../../lib/errors.js';
import { derToPem, type Bundle } from '../../spiffe/bundle/bundle.js';
import type { FederationProfile } from './store.js';

/** Bounds on every fetch of a foreign bundle endpoint: an endpoint cannot hold or flood the CA. */
export const FETCH_LIMITS = { timeoutMs: 10_000, maxBytes: 256 * 1024 } as const;

/**
 * A bundle endpoint URL as the SPIFFE Federation standard allows it: https, no userinfo. Also no
 * fragment, and nothing but a host name or an IP literal as the host. The CA fetches what an admin
 * names here, so this is what keeps a relationship from being a way to make the CA speak anything
 * but HTTPS GET to any host (README: Federation, on the risk that remains).
 */
export function checkEndpointUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new CairnError('invalid_request', `bundleEndpointUrl ${JSON.stringify(text)} is not a URL`);
  }
  if (url.protocol !== 'https:') throw new CairnError('invalid_request', `bundleEndpointUrl must be an https URL (SPIFFE federation: https_web and https_spiffe both use TLS), not ${url.protocol.replace(/:$/, '')}`);
  if (url.username !== '' || url.password !== '') throw new CairnError('invalid_request', 'bundleEndpointUrl must not carry credentials (user:password@)');
  if (url.hash !== '' || text.includes('#')) throw new CairnError('invalid_request', 'bundleEndpointUrl must not have a fragment');
  if (url.hostname === '') throw new CairnError('invalid_request', 'bundleEndpointUrl must name a host');
  return url;
}

export interface FetchTarget {
  readonly url: string;
  readonly profile: FederationProfile;
  /** https_spiffe: the SPIFFE ID the server's SVID must carry, and the bundle that authenticates it. */
  readonly endpointSpiffeId?: string | null;
  readonly endpointBundle?: Bundle | undefined;
  /** https_web: PEM roots; absent: the system's. */
  readonly webRoots?: string | null;
}

/** The one URI SAN of an SVID, as Node reports the peer certificate. */
function uriSans(cert: PeerCertificate): string[] {
  return (cert.subjectaltname ?? '').split(/,\s*/).filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
}

/**
 * GETs a foreign bundle endpoint and returns the body, authenticating the server before the request
 * is sent: https_spiffe against the endpoint trust domain's bundle (only its CAs are trust anchors) and
 * the expected SPIFFE ID instead of a host name; https_web against the given roots (or the system's)
 * and the host name. Redirects are not followed, the answer must be 200, and the body is bounded in
 * size and time.
 */
export function fetchBundleDocument(target: FetchTarget, limits: { readonly timeoutMs: number; readonly maxBytes: number } = FETCH_LIMITS): Promise<string> {
  const url = checkEndpointUrl(target.url);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  let tls: Record<string, unknown>;
  if (target.profile === 'https_spiffe') {
    const expected = target.endpointSpiffeId;
    const bundle = target.endpointBundle;
    if (!expected) throw new CairnError('invalid_request', 'https_spiffe needs the endpoint SPIFFE ID');
    if (!bundle || bundle.x509Authorities.length === 0) throw new CairnError('invalid_bundle', `no X.509 authorities to authenticate ${expected} with (the bundle of ${bundle?.trustDomain ?? 'its trust domain'} holds none)`);
    tls = {
      ca: bundle.x509Authorities.map((d) => derToPem(d)),
      rejectUnauthorized: true,
      checkServerIdentity: (_host: string, cert: PeerCertificate): Error | undefined => {
        const sans = uriSans(cert);
        if (sans.length !== 1) return new Error(`the endpoint's certificate is not an X.509-SVID (it has ${sans.length} URI SANs)`);
        if (sans[0] !== expected) return new Error(`the endpoint presented ${sans[0]}, not ${expected}`);
        return undefined;
      },
    };
  } else {
    tls = { rejectUnauthorized: true, ...(target.webRoots ? { ca: target.webRoots } : {}) };
  }
  return new Promise<string>((resolve, reject) => {
    let settled = false;
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      reject(err);
    };
    const req = request(
      {
        host,
        port: url.port === '' ? 443 : Number(url.port),
        path: `${url.pathname}${url.search}`,
        method: 'GET',
        headers: { accept: 'application/json', 'user-agent': 'cairn-federation' },
        ...(isIP(host) ? {} : { servername: host }),
        agent: false,
        ...tls,
      },
      (res) => {
        const status = res.statusCode ?? 0;
        if (status >= 300 && status < 400) {
          fail(new Error(`the endpoint answered HTTP ${status}${res.headers.location ? ` to ${res.headers.location}` : ''}: redirects are not followed`));
          return;
        }
        if (status !== 200) {
          fail(new Error(`the endpoint answered HTTP ${status}`));
          return;
        }
        const declared = Number(res.headers['content-length']);
        if (Number.isFinite(declared) && declared > limits.maxBytes) {
          fail(new Error(`the endpoint's answer is larger than ${limits.maxBytes / 1024} KiB`));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > limits.maxBytes) fail(new Error(`the endpoint's answer is larger than ${limits.maxBytes / 1024} KiB`));
          else chunks.push(c);
        });
        res.on('end', () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve(Buffer.concat(chunks).toString('utf8'));
        });
        res.on('error', (err) => fail(err));
      },
    );
    const timer = setTimeout(() => fail(new Error(`the endpoint did not answer within ${limits.timeoutMs / 1000} s`)), limits.timeoutMs);
    req.on('error', (err) => fail(new Error(`cannot fetch the bundle: ${(err as Error).message}`)));
    req.end();
  });
}
