import { Agent as HttpsAgent } from 'node:https';
import {
  AgentPaths, type BatchX509Response, type JwtSvidMessage, type SyncResponse, type X509SvidMessage,
} from '../contract/agent-api.js';
import { parseBootstrapToken } from '../contract/bootstrap-token.js';
import { fetchPinnedAuthority, requestJson } from '../lib/tls-client.js';
import { derToPem } from '../spiffe/bundle/bundle.js';

export class CaError extends Error {
  override readonly name = 'CaError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface AgentCredentials {
  readonly caUrl: string;
  readonly authorityPem: string;
  readonly chainPem: string;
  readonly keyPem: string;
}

const pem = (ders: readonly string[]): string => ders.map((d) => derToPem(Buffer.from(d, 'base64'))).join('');

/** The agent's side of the CA's agent API: pinned first contact, then mTLS with the agent SVID. */
export class CaClient {
  private keepAlive = new HttpsAgent({ keepAlive: true, maxSockets: 4 });

  constructor(private creds: AgentCredentials) {}

  static async attest(token: string, csrBase64: string): Promise<{ svid: X509SvidMessage; caUrl: string; authorityPem: string }> {
    const { claims } = parseBootstrapToken(token);
    const authorityPem = await fetchPinnedAuthority(claims.url, claims.pin);
    const res = await requestJson<X509SvidMessage & { code?: string; message?: string }>('POST', claims.url + AgentPaths.attest, { token, csr: csrBase64 }, { ca: authorityPem });
    if (res.status !== 201) throw new CaError(res.status, res.body?.code ?? `http_${res.status}`, res.body?.message ?? 'attestation failed');
    return { svid: res.body, caUrl: claims.url, authorityPem };
  }

  /** Attestation without a token: the CA's URL and pin come from configuration, the evidence from the attestor. */
  static async attestWith(caUrl: string, pin: string, post: (url: string, ca: string) => Promise<X509SvidMessage>): Promise<{ svid: X509SvidMessage; caUrl: string; authorityPem: string }> {
    const base = caUrl.replace(/\/+$/, '');
    const authorityPem = await fetchPinnedAuthority(base, pin);
    return { svid: await post(base, authorityPem), caUrl: base, authorityPem };
  }

  /** POSTs to the CA's TLS listener without a client certificate (attestation steps). */
  static async post<T>(base: string, authorityPem: string, path: string, body: unknown, expect = 201): Promise<T> {
    const res = await requestJson<T & { code?: string; message?: string }>('POST', base + path, body, { ca: authorityPem });
    if (res.status !== expect) throw new CaError(res.status, res.body?.code ?? `http_${res.status}`, res.body?.message ?? 'attestation failed');
    return res.body;
  }

  get credentials(): AgentCredentials {
    return this.creds;
  }

  useCredentials(creds: AgentCredentials): void {
    this.creds = creds;
    this.keepAlive.destroy();
    this.keepAlive = new HttpsAgent({ keepAlive: true, maxSockets: 4 });
  }

  close(): void {
    this.keepAlive.destroy();
  }

  private async call<T>(method: string, path: string, body?: unknown, signal?: AbortSignal, timeoutMs = 30_000): Promise<T> {
    const res = await requestJson<T & { code?: string; message?: string }>(method, this.creds.caUrl + path, body, {
      ca: this.creds.authorityPem,
      cert: this.creds.chainPem,
      key: this.creds.keyPem,
      agent: this.keepAlive,
      timeoutMs,
      signal,
    });
    if (res.status >= 300) throw new CaError(res.status, res.body?.code ?? `http_${res.status}`, res.body?.message ?? `the CA answered ${res.status}`);
    return res.body;
  }

  renew(csrBase64: string): Promise<X509SvidMessage> {
    return this.call('POST', AgentPaths.renew, { csr: csrBase64 });
  }

  sync(revision: number, bundleSequence: number, waitSeconds: number, signal?: AbortSignal): Promise<SyncResponse> {
    return this.call('GET', `${AgentPaths.sync}?revision=${revision}&bundleSequence=${bundleSequence}&wait=${waitSeconds}`, undefined, signal, (waitSeconds + 15) * 1000);
  }

  issue(requests: { entryId: string; csr: string }[]): Promise<BatchX509Response> {
    return this.call('POST', AgentPaths.x509Svids, { requests });
  }

  mintJwt(entryId: string, audience: readonly string[]): Promise<JwtSvidMessage> {
    return this.call('POST', AgentPaths.jwtSvids, { entryId, audience });
  }
}

export const chainPemOf = (svid: Pick<X509SvidMessage, 'chain'>): string => pem(svid.chain);
