import { Agent as HttpsAgent } from 'node:https';
import { parseBootstrapToken } from '../../contract/bootstrap-token.js';
import { AgentPaths, type X509SvidMessage } from '../../contract/agent-api.js';
import { generateKeyAndCsr } from '../../lib/pkcs10.js';
import { fetchPinnedAuthority, requestJson, type JsonResponse } from '../../lib/tls-client.js';
import { derToPem } from '../../spiffe/bundle/bundle.js';

export const pemChain = (svid: Pick<X509SvidMessage, 'chain'>): string => svid.chain.map((c) => derToPem(Buffer.from(c, 'base64'))).join('');
export const pemBundle = (svid: Pick<X509SvidMessage, 'bundle'>): string => svid.bundle.map((c) => derToPem(Buffer.from(c, 'base64'))).join('');

/** A node (agent or device) as the CA sees it: an SVID, its key, and the pinned CA authority. */
export class TestNode {
  private readonly keepAlive = new HttpsAgent({ keepAlive: true, maxSockets: 8 });

  constructor(
    readonly url: string,
    readonly authorityPem: string,
    public svid: X509SvidMessage,
    public keyPem: string,
  ) {}

  get spiffeId(): string {
    return this.svid.spiffeId;
  }

  call<T>(method: string, path: string, body?: unknown, creds: { cert: string; key: string } = { cert: pemChain(this.svid), key: this.keyPem }): Promise<JsonResponse<T>> {
    const same = creds.cert === pemChain(this.svid);
    return requestJson<T>(method, this.url + path, body, { ca: this.authorityPem, ...creds, ...(same ? { agent: this.keepAlive } : {}) });
  }

  /** Renews the node's SVID; returns the previous credentials so a test can try them. */
  async renew(path: string = AgentPaths.renew): Promise<{ cert: string; key: string }> {
    const old = { cert: pemChain(this.svid), key: this.keyPem };
    const key = generateKeyAndCsr();
    const res = await this.call<X509SvidMessage>('POST', path, { csr: key.csr.toString('base64') });
    if (res.status !== 201) throw new Error(`renew failed: ${res.status} ${JSON.stringify(res.body)}`);
    this.svid = res.body;
    this.keepAlive.destroy();
    this.keyPem = key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    return old;
  }
}

/** Redeems a token the way a real bootstrapper does: pin check first, then the secret. */
/** Redeems a one-time token with a fresh key, or with `key` (the same key may redeem again: a lost answer). */
export async function redeem(token: string, path: string = AgentPaths.attest, key = generateKeyAndCsr()): Promise<{ status: number; node?: TestNode; body: unknown }> {
  const { claims } = parseBootstrapToken(token);
  const authorityPem = await fetchPinnedAuthority(claims.url, claims.pin);
  const res = await requestJson<X509SvidMessage>('POST', claims.url + path, { token, csr: key.csr.toString('base64') }, { ca: authorityPem });
  if (res.status !== 201) return { status: res.status, body: res.body };
  return { status: 201, body: res.body, node: new TestNode(claims.url, authorityPem, res.body, key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()) };
}
