import { createHmac, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publicJwkOf } from '../../spiffe/bundle/jwk.js';
import type { Bundle } from '../../spiffe/bundle/bundle.js';
import { startWorkloadApiServer, type WorkloadApiServer } from '../../workload-api/server.js';
import type { WorkloadApiPorts } from '../../workload-api/ports.js';
import { loadPeerCredentialSource } from '../../node-agent/platform/peercred.js';
import { grpc, grpcWorkloadClient, unary, type GrpcWorkloadClient } from '../support/grpc-workload.js';

/**
 * Hostile JWT-SVIDs at ValidateJWTSVID, and a flood of calls without the security header, against
 * the real Workload API server on a Unix socket (a fake agent behind it holds one trust domain with
 * an EC and an RSA JWT key).
 */
const TD = 'jwt.test';
const b64 = (v: unknown): string => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

describe('hostile input at the Workload API', () => {
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const attacker = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const bundle: Bundle = { trustDomain: TD, x509Authorities: [], jwtAuthorities: [{ kid: 'ec1', jwk: publicJwkOf(ec.publicKey) }, { kid: 'rsa1', jwk: publicJwkOf(rsa.publicKey) }] };
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub: `spiffe://${TD}/w`, aud: ['api'], exp: now + 300, iat: now };
  let dir: string;
  let server: WorkloadApiServer;
  let client: GrpcWorkloadClient;
  const outcomes: { expected: boolean; code: number }[] = [];

  const es256 = (input: string, key: KeyObject = ec.privateKey): string => sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url');
  const rs256 = (input: string): string => sign('sha256', Buffer.from(input), rsa.privateKey).toString('base64url');
  const token = (header: object, payload: object | string, signer: (input: string) => string = es256): string => {
    const input = `${b64(header)}.${b64(payload)}`;
    return `${input}.${signer(input)}`;
  };
  const HEADER = { alg: 'ES256', kid: 'ec1', typ: 'JWT' };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-wl-hostile-'));
    const ports: WorkloadApiPorts = {
      ready: () => true,
      trustDomain: () => TD,
      bundle: (td) => (td === TD ? bundle : undefined),
      now: () => new Date(),
      onChange: () => () => undefined,
      attestConnection: (peer) => ({
        workload: async () => ({ snapshot: () => ({ x509Svids: [], federatedTrustDomains: [] }), jwtSvids: async () => [] }),
        release: () => peers.release(peer as never),
      }),
    };
    const peers = loadPeerCredentialSource();
    // the flood below opens 200 connections from one uid: above the default per-uid cap, which is not what this file tests
    server = await startWorkloadApiServer({ socketPath: join(dir, 'api.sock'), ports, peerOf: (s) => peers.fromSocket(s), releasePeer: (p) => peers.release(p as never), maxConnectionsPerUid: 1000 });
    client = grpcWorkloadClient(server.socketPath);
  });
  afterAll(async () => {
    client?.close();
    await server?.close();
    if (process.env.CAIRN_RELIABILITY_DIR) {
      writeFileSync(join(process.env.CAIRN_RELIABILITY_DIR, 'workload-corpus.json'), JSON.stringify({ inputs: outcomes.length, unexpected: outcomes.filter((o) => !o.expected).length }));
    }
    rmSync(dir, { recursive: true, force: true });
  });

  const validate = async (svid: string, audience = 'api'): Promise<number> => {
    try {
      await unary(client, 'ValidateJWTSVID', { audience, svid });
      return grpc.status.OK;
    } catch (err) {
      return (err as grpc.ServiceError).code;
    }
  };

  it('accepts a valid JWT-SVID (ES256 and RS256) and refuses every hostile one with InvalidArgument', async () => {
    expect(await validate(token(HEADER, claims))).toBe(grpc.status.OK);
    expect(await validate(token({ alg: 'RS256', kid: 'rsa1', typ: 'JWT' }, claims, rs256))).toBe(grpc.status.OK);
    expect(await validate(token({ alg: 'ES256', kid: 'ec1' }, claims))).toBe(grpc.status.OK); // typ is optional

    const rsaPem = rsa.publicKey.export({ format: 'pem', type: 'spki' }).toString();
    const hmac = (secret: string) => (input: string): string => createHmac('sha256', secret).update(input).digest('base64url');
    const valid = token(HEADER, claims);
    const [vh, vp, vs] = valid.split('.') as [string, string, string];
    const hostile: [string, string, string?][] = [
      ['alg none, no signature', `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`],
      ['alg none with a signature', `${b64({ alg: 'none', kid: 'ec1' })}.${b64(claims)}.${vs}`],
      ['alg None', token({ alg: 'None', kid: 'ec1' }, claims)],
      ['HS256 signed with the RSA public key', token({ alg: 'HS256', kid: 'rsa1', typ: 'JWT' }, claims, hmac(rsaPem))],
      ['HS256 signed with the kid', token({ alg: 'HS256', kid: 'ec1' }, claims, hmac('ec1'))],
      ['HS512', token({ alg: 'HS512', kid: 'ec1' }, claims, hmac('x'))],
      ['missing kid', token({ alg: 'ES256', typ: 'JWT' }, claims)],
      ['empty kid', token({ alg: 'ES256', kid: '', typ: 'JWT' }, claims)],
      ['unknown kid', token({ alg: 'ES256', kid: 'nope', typ: 'JWT' }, claims)],
      ['alg RS256 on the EC key', token({ alg: 'RS256', kid: 'ec1' }, claims, rs256)],
      ['alg ES256 on the RSA key', token({ alg: 'ES256', kid: 'rsa1' }, claims)],
      ['wrong typ', token({ ...HEADER, typ: 'at+jwt' }, claims)],
      ['crit header the validator cannot honour', token({ ...HEADER, crit: ['exp'] }, claims)],
      ['embedded attacker jwk', token({ ...HEADER, kid: 'attacker', jwk: publicJwkOf(attacker.publicKey) }, claims, (i) => es256(i, attacker.privateKey))],
      ['attacker key under a real kid', token(HEADER, claims, (i) => es256(i, attacker.privateKey))],
      ['jku pointing elsewhere', token({ ...HEADER, kid: 'remote', jku: 'https://evil.example/jwks' }, claims, (i) => es256(i, attacker.privateKey))],
      ['no aud', token(HEADER, { ...claims, aud: undefined })],
      ['empty aud', token(HEADER, { ...claims, aud: [] })],
      ['other audience', token(HEADER, { ...claims, aud: ['other'] })],
      ['aud as a number', token(HEADER, { ...claims, aud: 7 })],
      ['expired', token(HEADER, { ...claims, exp: now - 3600 })],
      ['no exp', token(HEADER, { ...claims, exp: undefined })],
      ['exp as a string', token(HEADER, { ...claims, exp: String(now + 300) })],
      ['not yet valid', token(HEADER, { ...claims, nbf: now + 3600 })],
      ['no sub', token(HEADER, { ...claims, sub: undefined })],
      ['sub not a SPIFFE ID', token(HEADER, { ...claims, sub: 'alice' })],
      ['sub with a query', token(HEADER, { ...claims, sub: `spiffe://${TD}/w?admin=1` })],
      ['sub in a trust domain without a bundle', token(HEADER, { ...claims, sub: 'spiffe://elsewhere.test/w' })],
      ['tampered payload', `${vh}.${b64({ ...claims, sub: `spiffe://${TD}/admin` })}.${vs}`],
      ['tampered header', `${b64({ ...HEADER, kid: 'rsa1' })}.${vp}.${vs}`],
      ['truncated signature', `${vh}.${vp}.${vs.slice(0, 20)}`],
      ['empty signature', `${vh}.${vp}.`],
      ['DER signature instead of raw', `${vh}.${vp}.${sign('sha256', Buffer.from(`${vh}.${vp}`), ec.privateKey).toString('base64url')}`],
      ['two segments', `${vh}.${vp}`],
      ['four segments', `${valid}.x`],
      ['padding characters', `${vh}=.${vp}.${vs}`],
      ['payload not JSON', token(HEADER, 'not json')],
      ['payload a JSON array', `${vh}.${b64('[1,2]')}.${es256(`${vh}.${b64('[1,2]')}`)}`],
      ['whitespace around', ` ${valid} `],
      ['100 kB of junk', 'a'.repeat(100_000)],
      ['valid token, asked for another audience', valid, 'billing'],
      ['empty token', ''],
    ];
    const wrong: string[] = [];
    for (const [name, svid, audience] of hostile) {
      const code = await validate(svid, audience ?? 'api');
      const expected = code === grpc.status.INVALID_ARGUMENT;
      outcomes.push({ expected, code });
      if (!expected) wrong.push(`${name}: got ${grpc.status[code]}`);
    }
    expect(wrong).toEqual([]);
  });

  it('survives a flood of calls without the security header, and still serves a proper caller', async () => {
    const sessions: ClientHttp2Session[] = await Promise.all(
      Array.from({ length: 200 }, () => new Promise<ClientHttp2Session>((resolve, reject) => {
        const s = h2connect('http://localhost', { createConnection: () => netConnect(server.socketPath) });
        s.once('connect', () => resolve(s));
        s.once('error', reject);
      })),
    );
    const statuses = await Promise.all(
      sessions.flatMap((s) =>
        Array.from({ length: 10 }, () => new Promise<string>((resolve) => {
          const req = s.request({ ':method': 'POST', ':path': '/SpiffeWorkloadAPI/FetchX509SVID', 'content-type': 'application/grpc', te: 'trailers' });
          let status = '';
          req.on('response', (h) => (status = String(h['grpc-status'] ?? status)));
          req.on('trailers', (h) => (status = String(h['grpc-status'] ?? status)));
          req.on('close', () => resolve(status));
          req.on('error', () => resolve('transport error'));
          req.resume();
          req.end(Buffer.from([0, 0, 0, 0, 0]));
        })),
      ),
    );
    sessions.forEach((s) => s.destroy());
    for (const code of statuses) outcomes.push({ expected: code === String(grpc.status.INVALID_ARGUMENT), code: Number(code) });
    expect(statuses.filter((c) => c !== String(grpc.status.INVALID_ARGUMENT))).toEqual([]);
    expect(statuses).toHaveLength(2000);
    // the server is still there for a caller that follows the rules
    expect(await validate(token(HEADER, claims))).toBe(grpc.status.OK);
  });
});
