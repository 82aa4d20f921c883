import { Agent as HttpsAgent } from 'node:https';
import type { BatchX509Response, JwtSvidMessage, SyncResponse, X509SvidMessage } from '../contract/agent-api.js';
import type { TemplateX509Response } from '../contract/template-api.js';
import { AgentPaths } from '../contract/paths.js';
import { parseBootstrapToken } from '../contract/bootstrap-token.js';
import type { Clock } from '../lib/clock.js';
import { fetchPinnedAuthority, PinMismatchError, requestJson } from '../lib/tls-client.js';
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

export interface AttestRetry {
  readonly clock: Clock;
  /** How long to keep trying after transient failures (ms); 0 tries once. Default 5 minutes. */
  readonly deadlineMs?: number;
  readonly onRetry?: (err: Error, delayMs: number) => void;
}

/** Worth another try with the same request: the CA is away or overloaded, not refusing us. */
function isTransient(err: unknown): boolean {
  if (err instanceof CaError) return err.status >= 500 || err.status === 429;
  if (err instanceof PinMismatchError) return false;
  return err instanceof Error && /cannot reach the CA|timed out|ECONNREFUSED|ECONNRESET|EPIPE|socket hang up|EHOSTUNREACH|ENETUNREACH/.test(`${err.message} ${(err.cause as Error | undefined)?.message ?? ''}`);
}

const pem = (ders: readonly string[]): string => ders.map((d) => derToPem(Buffer.from(d, 'base64'))).join('');

/** The agent's side of the CA's agent API: pinned first contact, then mTLS with the agent SVID. */
export class CaClient {
  private keepAlive = new HttpsAgent({ keepAlive: true, maxSockets: 4 });
  /** Connection pools of replaced credentials, closed once their requests had time to finish. */
  private readonly retired = new Set<HttpsAgent>();

  constructor(private creds: AgentCredentials) {}

  /**
   * Redeems a join token for the agent SVID. While the CA is unreachable or answers 5xx/429 it tries
   * again with the *same* CSR until `retry.deadlineMs`: if the CA died after committing the
   * redemption, the same key gets the same SVID back (a fresh key would find the token spent).
   */
  static async attest(token: string, csrBase64: string, retry: AttestRetry): Promise<{ svid: X509SvidMessage; caUrl: string; authorityPem: string }> {
    const { claims } = parseBootstrapToken(token);
    const once = async () => {
      const authorityPem = await fetchPinnedAuthority(claims.url, claims.pin);
      const res = await requestJson<X509SvidMessage & { code?: string; message?: string }>('POST', claims.url + AgentPaths.attest, { token, csr: csrBase64 }, { ca: authorityPem });
      if (res.status !== 201) throw new CaError(res.status, res.body?.code ?? `http_${res.status}`, res.body?.message ?? 'attestation failed');
      return { svid: res.body, caUrl: claims.url, authorityPem };
    };
    const deadline = retry.clock.now().getTime() + (retry.deadlineMs ?? 300_000);
    for (let attempt = 1; ; attempt++) {
      try {
        return await once();
      } catch (err) {
        const delay = Math.min(10_000, 500 * 2 ** Math.min(attempt - 1, 5));
        if (!isTransient(err) || retry.clock.now().getTime() + delay > deadline) throw err;
        retry.onRetry?.(err as Error, delay);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
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
    // New connections present the new SVID. Requests in flight on the old ones (the sync long-poll)
    // finish first: destroying them would fail the long-poll at every renewal.
    const previous = this.keepAlive;
    this.keepAlive = new HttpsAgent({ keepAlive: true, maxSockets: 4 });
    this.retired.add(previous);
    const drop = setTimeout(() => {
      previous.destroy();
      this.retired.delete(previous);
    }, 60_000);
    drop.unref();
  }

  close(): void {
    this.keepAlive.destroy();
    for (const agent of this.retired) agent.destroy();
    this.retired.clear();
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

  /** `crl`: the revocation digest held ('' for none): the CA then sends CRLs and revoked serials when they change. */
  sync(revision: number, bundleSequence: number, waitSeconds: number, signal?: AbortSignal, crl?: string, federated?: string): Promise<SyncResponse> {
    const crlParam = crl === undefined ? '' : `&crl=${encodeURIComponent(crl)}`;
    const federatedParam = federated === undefined ? '' : `&federated=${encodeURIComponent(federated)}`;
    return this.call('GET', `${AgentPaths.sync}?revision=${revision}&bundleSequence=${bundleSequence}&wait=${waitSeconds}${crlParam}${federatedParam}`, undefined, signal, (waitSeconds + 15) * 1000);
  }

  issue(requests: { entryId: string; csr: string }[]): Promise<BatchX509Response> {
    return this.call('POST', AgentPaths.x509Svids, { requests });
  }

  mintJwt(entryId: string, audience: readonly string[]): Promise<JwtSvidMessage> {
    return this.call('POST', AgentPaths.jwtSvids, { entryId, audience });
  }

  /** Issuance by template: the CA renders each ID from the template and the selectors we vouch for. */
  issueByTemplate(requests: { templateId: string; selectors: readonly string[]; csr: string }[]): Promise<TemplateX509Response> {
    return this.call('POST', AgentPaths.templateX509Svids, { requests });
  }

  mintJwtByTemplate(templateId: string, selectors: readonly string[], audience: readonly string[]): Promise<JwtSvidMessage> {
    return this.call('POST', AgentPaths.templateJwtSvids, { templateId, selectors, audience });
  }
}

export const chainPemOf = (svid: Pick<X509SvidMessage, 'chain'>): string => pem(svid.chain);
