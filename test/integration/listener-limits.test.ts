import { spawn } from 'node:child_process';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentPaths, type SyncResponse } from '../../contract/agent-api.js';
import { replaceTlsCredentials } from '../../ca/http/listener.js';
import { fetchPinnedAuthority } from '../../lib/tls-client.js';
import { redeem } from '../support/agent-client.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';

const TD = 'listeners.test';
const ISSUER = `https://issuer.example/td/${TD}`;
/** Short for the test; the defaults are 30 s / 72 s / 10,000. */
const LIMITS = { requestTimeoutMs: 2_000, keepAliveTimeoutMs: 2_000, maxConnections: 8 };
/** Generous: Node's own defaults would hold these sockets 60 s (headers), forever (bodies), 120 s (handshakes). */
const DEADLINE_MS = 20_000;

interface Closed {
  readonly closed: boolean;
  /** What the server wrote before closing (decrypted on TLS). */
  readonly answer: string;
}

/** Waits for the server to close the socket, up to the deadline; resolves with what it answered. */
function untilClosed(socket: Socket): Promise<Closed> {
  return new Promise((resolve) => {
    let answer = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ closed: false, answer });
    }, DEADLINE_MS);
    socket.on('data', (d: Buffer) => (answer += d.toString()));
    socket.on('error', () => undefined);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve({ closed: true, answer });
    });
  });
}

function openssl(args: string[]): Promise<{ status: number | null; out: string }> {
  // Asynchronous on purpose: the CA under test runs in this process and must keep answering.
  return new Promise((resolve) => {
    const child = spawn('openssl', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.stdin.end();
    child.once('close', (status) => resolve({ status, out }));
  });
}

describe(`CA listeners: timeouts, connection cap and TLS suites (${storeKind()} store)`, () => {
  let ca: TestCa;
  let authority: string;
  let httpPort: number;
  let tlsPort: number;

  beforeAll(async () => {
    ca = await startTestCa({ limits: LIMITS });
    expect((await ca.admin('/v1/trust-domains', { body: { name: TD, jwtIssuer: ISSUER } })).status).toBe(201);
    authority = await fetchPinnedAuthority(ca.tlsUrl, await ca.core.serverTls.pin());
    httpPort = Number(new URL(ca.url).port);
    tlsPort = Number(new URL(ca.tlsUrl).port);
  }, 180_000); // a CA on a fresh database: slow on a loaded machine
  afterAll(() => ca?.close());

  const plain = (send?: string): Promise<Closed> => {
    const socket = netConnect(httpPort, '127.0.0.1');
    if (send !== undefined) socket.once('connect', () => socket.write(send));
    return untilClosed(socket);
  };
  const overTls = (send?: string): Promise<Closed> => {
    const socket = tlsConnect({ port: tlsPort, host: '127.0.0.1', ca: authority, checkServerIdentity: () => undefined });
    if (send !== undefined) socket.once('secureConnect', () => socket.write(send));
    return untilClosed(socket);
  };

  it('stalled headers and stalled bodies are closed with 408 on both listeners', async () => {
    const headers = 'POST /v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n';
    const body = 'POST /agent/v1/attest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"token":';
    const results = await Promise.all([plain(''), plain(headers), plain(body), overTls(headers), overTls(body)]);
    for (const r of results) {
      expect(r.closed).toBe(true);
      expect(r.answer).toMatch(/^HTTP\/1\.1 408 /);
    }
  });

  it('a TLS handshake that never starts, and an idle kept-alive connection, are closed', async () => {
    const silent = netConnect(tlsPort, '127.0.0.1');
    const idle = overTls('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    const [handshake, keptAlive] = await Promise.all([untilClosed(silent), idle]);
    expect(handshake).toEqual({ closed: true, answer: '' });
    expect(keptAlive.closed).toBe(true);
    expect(keptAlive.answer).toMatch(/^HTTP\/1\.1 200 /); // answered, then closed while idle
  });

  it('the request timeout does not cut a long-poll that outlasts it', async () => {
    const r = await redeem((await (await ca.admin('/v1/tokens', { body: { trustDomain: TD } })).json()).token);
    expect(r.status).toBe(201);
    const entry = await ca.admin('/v1/entries', { body: { spiffeId: `spiffe://${TD}/w`, parentId: r.node!.spiffeId, selectors: ['unix:uid:1000'] } });
    expect(entry.status).toBe(201);
    const first = await r.node!.call<SyncResponse>('GET', `${AgentPaths.sync}?revision=0`);
    expect(first.body.revision).toBeGreaterThan(0);
    expect(first.status).toBe(200);
    // nothing changes: the CA holds the request for the whole wait, twice the request timeout
    const started = Date.now();
    const polled = await r.node!.call<SyncResponse>('GET', `${AgentPaths.sync}?revision=${first.body.revision}&bundleSequence=${first.body.bundle!.sequence}&wait=4`);
    expect(polled.status).toBe(200);
    expect(polled.body.entries).toEqual([]);
    // it did wait (a lower bound only, so a slow machine cannot fail it): longer than the request timeout
    expect(Date.now() - started).toBeGreaterThanOrEqual(LIMITS.requestTimeoutMs + 1_000);
  });

  it('connections beyond the cap are closed as they arrive', async () => {
    // 20 silent connections at once: at most 8 are admitted (and later answered 408 by the
    // header timeout); the others are closed on arrival without a byte.
    const results = await Promise.all(Array.from({ length: 20 }, () => plain()));
    expect(results.every((r) => r.closed)).toBe(true);
    const admitted = results.filter((r) => r.answer.startsWith('HTTP/1.1 408'));
    const refused = results.filter((r) => r.answer === '');
    expect(admitted.length).toBeGreaterThan(0);
    expect(admitted.length).toBeLessThanOrEqual(LIMITS.maxConnections);
    expect(refused.length).toBe(20 - admitted.length);
    // and the listener serves again once they are gone
    expect((await fetch(`${ca.url}/healthz`)).status).toBe(200);
  });

  it('jwks_uri follows the issuer on both listeners, never a forged Host header', async () => {
    const path = `/td/${TD}/.well-known/openid-configuration`;
    const forged = { host: 'evil.example:666', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https', forwarded: 'host=evil.example;proto=https' };
    const get = (useTls: boolean): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> =>
      new Promise((resolve, reject) => {
        const req = (useTls ? httpsRequest : httpRequest)(`${useTls ? ca.tlsUrl : ca.url}${path}`, { headers: forged, ...(useTls ? { ca: authority, checkServerIdentity: () => undefined } : {}) }, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        });
        req.on('error', reject);
        req.end();
      });
    for (const useTls of [false, true]) {
      const res = await get(useTls);
      expect(res.status).toBe(200);
      expect(res.headers['cache-control']).toMatch(/public/);
      const doc = JSON.parse(res.body) as { issuer: string; jwks_uri: string };
      expect(doc.jwks_uri).toBe(`${ISSUER}/jwks`);
      expect(doc.issuer).toBe(ISSUER);
      expect(res.body).not.toContain('evil');
    }
  });

  it('TLS 1.2 offers only ECDHE with AES-GCM or ChaCha20-Poly1305 (openssl s_client); TLS 1.3 stays on', async () => {
    const connect = ['s_client', '-connect', `127.0.0.1:${tlsPort}`, '-servername', 'localhost'];
    const ok = await openssl([...connect, '-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256']);
    expect(ok.status, ok.out).toBe(0);
    expect(ok.out).toMatch(/Cipher is ECDHE-ECDSA-AES128-GCM-SHA256/);
    for (const cipher of ['ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305']) {
      expect((await openssl([...connect, '-tls1_2', '-cipher', cipher])).status, cipher).toBe(0);
    }
    const refused = [
      'ECDHE-ECDSA-AES128-SHA', // CBC with SHA-1
      'ECDHE-ECDSA-AES256-SHA', // CBC with SHA-1
      'ECDHE-ECDSA-AES128-SHA256', // CBC
      'ECDHE-ECDSA-AES256-SHA384', // CBC
      'ECDHE-ECDSA-AES128-CCM8', // CCM8
      'ECDHE-ECDSA-AES256-CCM8', // CCM8
      'ECDHE-ECDSA-AES128-CCM', // CCM
      'ECDHE-ECDSA-ARIA128-GCM-SHA256', // ARIA
      'ECDHE-ECDSA-ARIA256-GCM-SHA384', // ARIA
      'ECDHE-ECDSA-CAMELLIA128-SHA256', // Camellia, CBC
      'AES128-GCM-SHA256', // no ECDHE: static RSA key exchange
      'DHE-RSA-AES128-GCM-SHA256', // no ECDHE: finite-field DHE
    ];
    for (const cipher of refused) {
      const r = await openssl([...connect, '-tls1_2', '-cipher', cipher]);
      expect(r.status, `${cipher} was accepted:\n${r.out}`).not.toBe(0);
      expect(r.out).not.toMatch(/Cipher is (?!\(NONE\))/);
    }
    const tls13 = await openssl([...connect, '-tls1_3']);
    expect(tls13.status, tls13.out).toBe(0);
    expect(tls13.out).toMatch(/New, TLSv1\.3, Cipher is TLS_AES_(128|256)_GCM_SHA(256|384)|Cipher is TLS_CHACHA20_POLY1305_SHA256/);
    expect((await openssl([...connect, '-tls1_1'])).status).not.toBe(0);

    // a renewed server certificate keeps the policy (setSecureContext alone falls back to Node's list)
    const renewed = await ca.core.serverTls.serverCredentials(['localhost', '127.0.0.1']);
    replaceTlsCredentials(ca.tlsApp.app.server, { key: renewed.keyPem, cert: renewed.certChainPem });
    for (const cipher of ['ECDHE-ECDSA-AES128-SHA', 'ECDHE-ECDSA-ARIA128-GCM-SHA256']) {
      expect((await openssl([...connect, '-tls1_2', '-cipher', cipher])).status, cipher).not.toBe(0);
    }
    const after = await openssl([...connect, '-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256']);
    expect(after.status, after.out).toBe(0);
  });
});
