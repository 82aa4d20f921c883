import { createHash, X509Certificate } from 'node:crypto';
import { request as httpsRequest, type Agent as HttpsAgent } from 'node:https';
import { connect, type PeerCertificate } from 'node:tls';

/** "sha256:<base64url>" over a certificate's DER SubjectPublicKeyInfo (what tokens pin). */
export function spkiPin(certificateDer: Buffer): string {
  const spki = new X509Certificate(certificateDer).publicKey.export({ format: 'der', type: 'spki' });
  return `sha256:${createHash('sha256').update(spki).digest('base64url')}`;
}

export class PinMismatchError extends Error {
  override readonly name = 'PinMismatchError';
  readonly code = 'tls_pin_mismatch';
}

function chainOf(peer: PeerCertificate): Buffer[] {
  const out: Buffer[] = [];
  const seen = new Set<string>();
  let c: PeerCertificate | undefined = peer;
  while (c && c.raw && !seen.has(c.fingerprint256)) {
    seen.add(c.fingerprint256);
    out.push(c.raw);
    c = (c as PeerCertificate & { issuerCertificate?: PeerCertificate }).issuerCertificate;
  }
  return out;
}

/**
 * First contact, kubeadm-style: open a TLS connection without trusting anything, find the
 * certificate in the server's chain whose key matches the pin, check that the server's own
 * certificate is signed by it, and return it (PEM) to trust from then on. Nothing secret is sent
 * on this connection; a server with another key is refused before any secret leaves.
 */
export function fetchPinnedAuthority(url: string, pin: string, timeoutMs = 10_000): Promise<string> {
  const u = new URL(url);
  if (u.protocol !== 'https:') return Promise.reject(new TypeError('the CA endpoint must be https'));
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: u.hostname.replace(/^\[|\]$/g, ''),
      port: Number(u.port || 443),
      rejectUnauthorized: false,
      ...(/^[\d.]+$|:/.test(u.hostname) ? {} : { servername: u.hostname }),
    });
    const timer = setTimeout(() => socket.destroy(new Error(`timed out connecting to ${url}`)), timeoutMs);
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot reach the CA at ${url}: ${err.message}`, { cause: err }));
    });
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      try {
        const chain = chainOf(socket.getPeerCertificate(true)).map((d) => new X509Certificate(d));
        const leaf = chain[0];
        const anchor = chain.find((c) => spkiPin(c.raw) === pin);
        if (!leaf || !anchor || (leaf !== anchor && !(leaf.checkIssued(anchor) && leaf.verify(anchor.publicKey)))) {
          throw new PinMismatchError(`the server at ${url} does not present the pinned key (${pin}); refusing to send the token`);
        }
        resolve(anchor.toString());
      } catch (err) {
        reject(err);
      } finally {
        socket.end();
      }
    });
  });
}

export interface TlsClientOptions {
  /** PEM of the trust anchor for the server (the pinned authority); absent: the system's roots. */
  readonly ca: string | undefined;
  /**
   * Check the server certificate's name against the URL's host. Off for the CA (see requestJson);
   * on for servers with ordinary certificates, such as a Kubernetes API server.
   */
  readonly checkServerName?: boolean;
  /** Sent as `Authorization: Bearer …`. */
  readonly bearer?: string | undefined;
  /** Client SVID for mTLS: PEM chain and PEM key. */
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal | undefined;
  /** A keep-alive agent to reuse connections (an mTLS handshake per request is wasted work). */
  readonly agent?: HttpsAgent | undefined;
  /** Refuse (reject) a response body larger than this, for servers we do not control. */
  readonly maxBytes?: number | undefined;
}

export interface JsonResponse<T> {
  readonly status: number;
  readonly body: T;
}

/**
 * JSON over HTTPS. To the CA it verifies the server against the pinned authority without checking
 * the name: the trust anchor is this installation's private authority, whose key the token pinned,
 * and CA replicas answer under many names (pods, compose services, IPs). Other servers set
 * `checkServerName`.
 */
export function requestJson<T>(method: string, url: string, body: unknown, tls: TlsClientOptions): Promise<JsonResponse<T>> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method,
        ...(tls.ca ? { ca: tls.ca } : {}),
        ...(tls.cert ? { cert: tls.cert, key: tls.key } : {}),
        ...(tls.checkServerName ? {} : { checkServerIdentity: () => undefined }),
        headers: {
          accept: 'application/json',
          ...(tls.bearer ? { authorization: `Bearer ${tls.bearer}` } : {}),
          ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
        },
        timeout: tls.timeoutMs ?? 30_000,
        agent: tls.agent ?? false,
        ...(tls.signal ? { signal: tls.signal } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (tls.maxBytes !== undefined && size > tls.maxBytes) {
            req.destroy(new Error(`the response from ${url} is larger than ${tls.maxBytes} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = undefined;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            // a text/plain answer (the audit log's signed checkpoint) is handed back as the text
            const plain = (res.headers['content-type'] ?? '').startsWith('text/plain') && (res.statusCode ?? 0) < 300;
            parsed = plain ? text : { code: 'invalid_response', message: text.slice(0, 200) };
          }
          resolve({ status: res.statusCode ?? 0, body: parsed as T });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`request to ${url} timed out`)));
    req.on('error', reject);
    if (payload) req.write(payload);
    req.end();
  });
}
