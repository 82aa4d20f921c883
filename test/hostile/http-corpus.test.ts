import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../lib/errors.js';
import { createCsr, generateKeyAndCsr } from '../../lib/pkcs10.js';
import { fetchPinnedAuthority } from '../../lib/tls-client.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';
import { rsaKeyWithExponent } from '../support/rsa-keys.js';

/**
 * The hostile-input corpus over HTTP: hand-written and generated inputs against every kind of entry
 * point (admin, public, token redemption, node attestation), each asserting the exact status and
 * error code. Totals (inputs, 5xx, codes outside the catalogue) go to RELIABILITY.md through
 * scripts/reliability.mjs when CAIRN_RELIABILITY_DIR is set.
 */

interface Case {
  readonly name: string;
  readonly method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  readonly path: string;
  readonly listener?: 'http' | 'tls';
  readonly body?: unknown;
  /** Sent verbatim instead of JSON. */
  readonly raw?: string | Buffer;
  readonly contentType?: string;
  readonly admin?: boolean;
  readonly status: number;
  readonly code?: string;
}

const TD = 'hostile.test';
const OK_ID = `spiffe://${TD}/workload`;
const PARENT = `spiffe://${TD}/cairn/agent/join_token/x`;

const BAD_SPIFFE_IDS: [string, string][] = [
  ['empty', ''],
  ['no scheme', `${TD}/w`],
  ['http scheme', `http://${TD}/w`],
  ['upper-case scheme', `SPIFFE://${TD}/w`],
  ['spiffe: without //', `spiffe:${TD}/w`],
  ['no trust domain', 'spiffe:///w'],
  ['upper-case trust domain', `spiffe://Hostile.Test/w`],
  ['space in trust domain', 'spiffe://hostile test/w'],
  ['port', `spiffe://${TD}:443/w`],
  ['userinfo', `spiffe://user@${TD}/w`],
  ['userinfo with password', `spiffe://u:p@${TD}/w`],
  ['query', `${OK_ID}?x=1`],
  ['empty query', `${OK_ID}?`],
  ['fragment', `${OK_ID}#f`],
  ['percent-encoded slash', `spiffe://${TD}/a%2Fb`],
  ['percent-encoded letter', `spiffe://${TD}/%61`],
  ['percent in trust domain', 'spiffe://host%2Etest/w'],
  ['dot segment', `spiffe://${TD}/./w`],
  ['dot-dot segment', `spiffe://${TD}/a/../w`],
  ['trailing dot-dot', `spiffe://${TD}/a/..`],
  ['trailing dot', `spiffe://${TD}/a/.`],
  ['empty segment', `spiffe://${TD}//w`],
  ['trailing slash', `spiffe://${TD}/w/`],
  ['only slash', `spiffe://${TD}/`],
  ['backslash', `spiffe://${TD}/a\\b`],
  ['NUL byte', `spiffe://${TD}/a\u0000b`],
  ['tab', `spiffe://${TD}/a\tb`],
  ['newline', `spiffe://${TD}/a\nb`],
  ['non-ASCII path', `spiffe://${TD}/caf\u00e9`],
  ['non-ASCII trust domain', 'spiffe://b\u00fccher.example/w'],
  ['colon in path', `spiffe://${TD}/a:b`],
  ['at sign in path', `spiffe://${TD}/a@b`],
  ['asterisk', `spiffe://${TD}/*`],
  ['over-long (2049 bytes)', `spiffe://${TD}/${'a'.repeat(2049 - `spiffe://${TD}/`.length)}`],
  ['over-long trust domain', `spiffe://${'a'.repeat(256)}/w`],
  ['leading whitespace', ` ${OK_ID}`],
  ['trailing whitespace', `${OK_ID} `],
  ['IPv6 literal', 'spiffe://[::1]/w'],
  ['double scheme', `spiffe://spiffe://${TD}/w`],
];

const BAD_TRUST_DOMAINS: [string, string][] = [
  ['empty', ''],
  ['upper case', 'Example.Org'],
  ['space', 'ex ample.org'],
  ['with path', 'example.org/x'],
  ['with port', 'example.org:8443'],
  ['with userinfo', 'u@example.org'],
  ['percent', 'ex%41mple.org'],
  ['NUL', 'exa\u0000mple.org'],
  ['non-ASCII', 'b\u00fccher.example'],
  ['over-long', 'a'.repeat(256)],
  ['query', 'example.org?x'],
  ['fragment', 'example.org#x'],
  ['slash only', '/'],
  ['asterisk', '*.example.org'],
];

function openssl(args: string[], cwd: string): Buffer {
  return execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** CSRs made by openssl for what our own writer will not produce. */
function foreignCsrs(dir: string): Record<string, string> {
  const make = (name: string, keyArgs: string[], extra: string[] = []): string => {
    openssl(['req', '-new', '-nodes', ...keyArgs, '-keyout', `${name}.key`, '-subj', '/CN=hostile', ...extra, '-outform', 'DER', '-out', `${name}.der`], dir);
    return readFileSync(join(dir, `${name}.der`)).toString('base64');
  };
  return {
    rsa1024: make('rsa1024', ['-newkey', 'rsa:1024']),
    ed25519: make('ed25519', ['-newkey', 'ed25519']),
    ed448: make('ed448', ['-newkey', 'ed448']),
    secp256k1: make('k1', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:secp256k1']),
    caRequest: make('careq', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], ['-addext', 'basicConstraints=critical,CA:TRUE']),
    certificate: (() => {
      openssl(['req', '-x509', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-keyout', 'cert.key', '-subj', '/CN=hostile', '-outform', 'DER', '-out', 'cert.der'], dir);
      return readFileSync(join(dir, 'cert.der')).toString('base64');
    })(),
    extraSans: make('sans', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], ['-addext', 'subjectAltName=DNS:evil.example,URI:spiffe://other.test/admin,IP:10.0.0.1']),
  };
}

function nested(depth: number): string {
  return '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
}

describe(`hostile HTTP input (${storeKind()} store)`, () => {
  let ca: TestCa;
  let authority: string;
  let dir: string;
  const outcomes: { status: number; code: string | undefined }[] = [];
  let source = 0;

  /** Each token case from its own loopback address, so the per-source guess limit stays out of the way. */
  const tlsRequest = (c: Case, body: Buffer | undefined, contentType: string | undefined): Promise<{ status: number; json: unknown }> =>
    new Promise((resolve, reject) => {
      source++;
      const req = httpsRequest(ca.tlsUrl + c.path, {
        method: c.method,
        ca: authority,
        checkServerIdentity: () => undefined,
        localAddress: `127.0.${1 + Math.floor(source / 250)}.${1 + (source % 250)}`,
        headers: { ...(contentType ? { 'content-type': contentType } : {}), ...(body ? { 'content-length': body.length } : {}) },
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = text;
          }
          resolve({ status: res.statusCode ?? 0, json });
        });
      });
      req.on('error', reject);
      req.end(body);
    });

  async function send(c: Case): Promise<{ status: number; json: unknown }> {
    const body = c.raw !== undefined ? Buffer.from(c.raw) : c.body !== undefined ? Buffer.from(JSON.stringify(c.body)) : undefined;
    const contentType = c.contentType ?? (body ? 'application/json' : undefined);
    if (c.listener === 'tls') return tlsRequest(c, body, contentType);
    const res = await fetch(ca.url + c.path, {
      method: c.method,
      headers: { ...(c.admin === false ? {} : { authorization: `Bearer ${ca.adminToken}` }), ...(contentType ? { 'content-type': contentType } : {}) },
      ...(body ? { body } : {}),
    });
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = text;
    }
    return { status: res.status, json };
  }

  const cases: Case[] = [];

  beforeAll(async () => {
    ca = await startTestCa();
    dir = mkdtempSync(join(tmpdir(), 'cairn-hostile-'));
    mkdirSync(dir, { recursive: true });
    await ca.admin('/v1/trust-domains', { body: { name: TD } });
    authority = await fetchPinnedAuthority(ca.tlsUrl, await ca.core.serverTls.pin());
  });
  afterAll(async () => {
    const fiveXX = outcomes.filter((o) => o.status >= 500).length;
    const uncatalogued = outcomes.filter((o) => o.status >= 400 && !(ERROR_CODES as readonly string[]).includes(o.code ?? '')).length;
    if (process.env.CAIRN_RELIABILITY_DIR) {
      writeFileSync(join(process.env.CAIRN_RELIABILITY_DIR, `http-corpus-${storeKind()}.json`), JSON.stringify({ inputs: outcomes.length, fiveXX, uncatalogued }));
    }
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers ≥ 200 hostile inputs with the exact status and a catalogued code, and never a 5xx', async () => {
    const good = generateKeyAndCsr('ec-p256').csr;
    const foreign = foreignCsrs(dir);
    const flipped = Buffer.from(good);
    flipped[flipped.length - 5] = flipped[flipped.length - 5]! ^ 0xff;
    const ttlOk = { ttlSeconds: 600 };

    // SPIFFE IDs, in every field that takes one
    for (const [name, id] of BAD_SPIFFE_IDS) {
      // empty and over-long values already fail the request schema
      const code = id === '' || id.length > 2048 ? 'invalid_request' : 'invalid_spiffe_id';
      cases.push({ name: `entry spiffeId: ${name}`, method: 'POST', path: '/v1/entries', body: { spiffeId: id, parentId: PARENT, selectors: ['unix:uid:1'] }, status: 400, code });
      cases.push({ name: `entry parentId: ${name}`, method: 'POST', path: '/v1/entries', body: { spiffeId: OK_ID, parentId: id, selectors: ['unix:uid:1'] }, status: 400, code });
      cases.push({ name: `x509 mint spiffeId: ${name}`, method: 'POST', path: '/v1/x509-svids', body: { spiffeId: id, csr: good.toString('base64'), ...ttlOk }, status: 400, code });
      cases.push({ name: `jwt mint spiffeId: ${name}`, method: 'POST', path: '/v1/jwt-svids', body: { spiffeId: id, audience: ['a'] }, status: 400, code });
    }
    cases.push({ name: 'entry: parent in another trust domain', method: 'POST', path: '/v1/entries', body: { spiffeId: OK_ID, parentId: 'spiffe://other_td.test/x', selectors: ['unix:uid:1'] }, status: 400, code: 'wrong_trust_domain' });
    cases.push({ name: 'reserved /cairn/ path', method: 'POST', path: '/v1/entries', body: { spiffeId: `spiffe://${TD}/cairn/agent/x`, parentId: PARENT, selectors: ['unix:uid:1'] }, status: 400, code: 'reserved_spiffe_id' });
    cases.push({ name: 'ID in an unknown trust domain', method: 'POST', path: '/v1/x509-svids', body: { spiffeId: 'spiffe://nowhere.test/w', csr: good.toString('base64') }, status: 404, code: 'trust_domain_not_found' });

    // trust domain names
    for (const [name, td] of BAD_TRUST_DOMAINS) {
      const code = td === '' || td.length > 255 ? 'invalid_request' : 'invalid_trust_domain';
      cases.push({ name: `trust domain create: ${name}`, method: 'POST', path: '/v1/trust-domains', body: { name: td }, status: 400, code });
      cases.push({ name: `trust domain in a token request: ${name}`, method: 'POST', path: '/v1/tokens', body: { trustDomain: td }, status: 400, code });
    }

    // CSRs
    const csrCase = (name: string, csr: string, status: number, code?: string): void => {
      cases.push({ name: `csr: ${name}`, method: 'POST', path: '/v1/x509-svids', body: { spiffeId: OK_ID, csr }, status, ...(code ? { code } : {}) });
    };
    for (const n of [0, 1, 2, 10, 50, 100, good.length - 1]) if (n > 0) csrCase(`truncated to ${n} bytes`, good.subarray(0, n).toString('base64'), 400, 'invalid_csr');
    csrCase('signature bits flipped', flipped.toString('base64'), 400, 'csr_signature_invalid');
    csrCase('random bytes', Buffer.from('3082019a3082014002', 'hex').toString('base64'), 400, 'invalid_csr');
    csrCase('not base64', '!!!not base64!!!', 400, 'invalid_csr');
    csrCase('PEM with garbage inside', '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----', 400, 'invalid_csr');
    csrCase('a certificate instead of a CSR', foreign.certificate!, 400, 'invalid_csr');
    csrCase('RSA-1024', foreign.rsa1024!, 400, 'unsupported_key_type');
    csrCase('Ed25519', foreign.ed25519!, 400, 'unsupported_key_type');
    csrCase('Ed448', foreign.ed448!, 400, 'unsupported_key_type');
    csrCase('secp256k1', foreign.secp256k1!, 400, 'unsupported_key_type');
    // RSA exponents other than 65537 (a 3071-bit one makes each signature check cost milliseconds)
    for (const [name, e] of [['RSA-3072 with a 3071-bit exponent', 'huge'], ['RSA-2048 with exponent 3', 3n]] as const) {
      const key = rsaKeyWithExponent(name.startsWith('RSA-3072') ? 3072 : 2048, e);
      csrCase(name, createCsr(key.privateKey, key.publicKey).toString('base64'), 400, 'unsupported_key_type');
    }
    csrCase('a CA request', foreign.caRequest!, 400, 'invalid_csr');
    // extra SANs are not an attack that works: the CA takes only the key
    csrCase('extra SANs (ignored, only the key is used)', foreign.extraSans!, 201);

    // one-time tokens (redemption on the TLS listener, each from its own source address)
    const mint = async (): Promise<string> => (await (await ca.admin('/v1/tokens', { body: { trustDomain: TD } })).json()).token;
    const used = await mint();
    const spender = generateKeyAndCsr('ec-p256').csr.toString('base64');
    await tlsRequest({ name: 'spend', method: 'POST', path: '/agent/v1/attest', status: 201 }, Buffer.from(JSON.stringify({ token: used, csr: spender })), 'application/json');
    // The key that spent it gets the same SVID again (a lost answer); as a workload credential it is the wrong kind.
    cases.push({ name: 'token: already used, presented again by the key that spent it', method: 'POST', path: '/agent/v1/attest', listener: 'tls', body: { token: used, csr: spender }, status: 201 });
    cases.push({ name: 'workload credential: a spent join token with the key that spent it', method: 'POST', path: '/device/v1/redeem', listener: 'tls', body: { token: used, csr: spender }, status: 401, code: 'invalid_token' });
    const real = await mint();
    const [prefix, claims] = real.split('.');
    const tokenCase = (name: string, token: unknown, status = 401, code = 'invalid_token'): void => {
      cases.push({ name: `token: ${name}`, method: 'POST', path: '/agent/v1/attest', listener: 'tls', body: { token, csr: good.toString('base64') }, status, code });
      cases.push({ name: `workload credential: ${name}`, method: 'POST', path: '/device/v1/redeem', listener: 'tls', body: { token, csr: good.toString('base64') }, status, code });
    };
    tokenCase('already used (by another key)', used);
    tokenCase('unknown secret, real claims', `${prefix}.${claims}.${'A'.repeat(43)}`);
    tokenCase('claims from another token', `${prefix}.${Buffer.from('{"id":"nope"}').toString('base64url')}.${real.split('.')[2]}`);
    tokenCase('wrong prefix', real.replace(/^cairn1/, 'cairn2'));
    tokenCase('no dots', 'cairn1' + 'x'.repeat(60));
    tokenCase('random junk', 'hello');
    tokenCase('non-ASCII', 't\u00f6ken.\u00fc.\u00e4');
    tokenCase('JSON claims not base64', 'cairn1.{"id":"x"}.secret');
    tokenCase('over-long', 'cairn1.' + 'a'.repeat(4000), 401);
    tokenCase('empty string', '', 400, 'invalid_request');
    tokenCase('a number (coerced to a string, then unknown)', 42);
    tokenCase('null', null, 400, 'invalid_request');
    tokenCase('too long for the schema', 'x'.repeat(5000), 400, 'invalid_request');

    // request shape: oversized, nested, wrong types, wrong content types, extra fields
    for (const [path, method] of [['/v1/entries', 'POST'], ['/v1/trust-domains', 'POST'], ['/v1/tokens', 'POST'], ['/v1/x509-svids', 'POST']] as const) {
      cases.push({ name: `${path}: 2 MB body`, method, path, raw: JSON.stringify({ x: 'a'.repeat(2 * 1024 * 1024) }), status: 413, code: 'payload_too_large' });
      cases.push({ name: `${path}: 10,000-deep JSON`, method, path, raw: nested(10_000), status: 400 });
      cases.push({ name: `${path}: truncated JSON`, method, path, raw: '{"name": "x"', status: 400, code: 'malformed_json' });
      cases.push({ name: `${path}: JSON array`, method, path, raw: '[1,2,3]', status: 400, code: 'invalid_request' });
      cases.push({ name: `${path}: JSON null`, method, path, raw: 'null', status: 400 });
      cases.push({ name: `${path}: text/plain`, method, path, raw: 'name=x', contentType: 'text/plain', status: 415, code: 'unsupported_media_type' });
      cases.push({ name: `${path}: application/xml`, method, path, raw: '<x/>', contentType: 'application/xml', status: 415, code: 'unsupported_media_type' });
      cases.push({ name: `${path}: form-encoded`, method, path, raw: 'a=b', contentType: 'application/x-www-form-urlencoded', status: 415, code: 'unsupported_media_type' });
      cases.push({ name: `${path}: unknown field`, method, path, body: { name: TD, spiffeId: OK_ID, nope: true }, status: 400, code: 'invalid_request' });
      cases.push({ name: `${path}: __proto__ pollution`, method, path, raw: '{"__proto__": {"admin": true}}', status: 400 });
      cases.push({ name: `${path}: without credentials`, method, path, body: {}, admin: false, status: 401, code: 'unauthenticated' });
    }
    cases.push({ name: 'entry: 10,000 selectors', method: 'POST', path: '/v1/entries', body: { spiffeId: OK_ID, parentId: PARENT, selectors: Array.from({ length: 10_000 }, (_, i) => `unix:uid:${i}`) }, status: 400, code: 'invalid_request' });
    cases.push({ name: 'entry: selector without a value', method: 'POST', path: '/v1/entries', body: { spiffeId: OK_ID, parentId: PARENT, selectors: ['unix'] }, status: 400 });
    cases.push({ name: 'entry: negative TTL', method: 'POST', path: '/v1/entries', body: { spiffeId: OK_ID, parentId: PARENT, selectors: ['unix:uid:1'], x509SvidTtl: -1 }, status: 400 });
    cases.push({ name: 'entry: TTL as string', method: 'POST', path: '/v1/entries', body: { spiffeId: OK_ID, parentId: PARENT, selectors: ['unix:uid:1'], x509SvidTtl: '1h' }, status: 400, code: 'invalid_request' });
    cases.push({ name: 'entry: bad DNS name', method: 'POST', path: '/v1/entries', body: { spiffeId: OK_ID, parentId: PARENT, selectors: ['unix:uid:1'], dnsNames: ['-bad-.example'] }, status: 400, code: 'invalid_dns_name' });
    // the batch create: its own body limit (4 MiB) and item cap; items that are not entries fail alone, in a 200
    const batchItem = { spiffeId: OK_ID, parentId: PARENT, selectors: ['unix:uid:1'] };
    cases.push({ name: 'entries batch: 5 MB body', method: 'POST', path: '/v1/entries/batch', raw: JSON.stringify({ entries: [{ hint: 'a'.repeat(5 * 1024 * 1024) }] }), status: 413, code: 'payload_too_large' });
    cases.push({ name: 'entries batch: 1,001 items', method: 'POST', path: '/v1/entries/batch', body: { entries: Array.from({ length: 1001 }, () => batchItem) }, status: 413, code: 'batch_too_large' });
    cases.push({ name: 'entries batch: 100,000 empty items', method: 'POST', path: '/v1/entries/batch', raw: JSON.stringify({ entries: Array.from({ length: 100_000 }, () => ({})) }), status: 413, code: 'batch_too_large' });
    cases.push({ name: 'entries batch: no items', method: 'POST', path: '/v1/entries/batch', body: { entries: [] }, status: 400, code: 'invalid_request' });
    cases.push({ name: 'entries batch: items that are not entries', method: 'POST', path: '/v1/entries/batch', body: { entries: [1, 'x', null, [], { ...batchItem, nope: true }, { ...batchItem, selectors: Array.from({ length: 10_000 }, (_, i) => `unix:uid:${i}`) }] }, status: 200 });
    cases.push({ name: 'entries batch: __proto__ pollution in an item', method: 'POST', path: '/v1/entries/batch', raw: `{"entries": [{"__proto__": {"admin": true}}]}`, status: 400, code: 'malformed_json' });
    cases.push({ name: 'entries batch: an unknown field beside entries', method: 'POST', path: '/v1/entries/batch', body: { entries: [batchItem], nope: true }, status: 400, code: 'invalid_request' });
    cases.push({ name: 'jwt: no audience', method: 'POST', path: '/v1/jwt-svids', body: { spiffeId: OK_ID, audience: [] }, status: 400 });
    cases.push({ name: 'jwt: control character in audience', method: 'POST', path: '/v1/jwt-svids', body: { spiffeId: OK_ID, audience: ['a\u0001b'] }, status: 400, code: 'invalid_audience' });
    cases.push({ name: 'x509 mint: TTL of ten years', method: 'POST', path: '/v1/x509-svids', body: { spiffeId: OK_ID, csr: good.toString('base64'), ttlSeconds: 315_360_000 }, status: 400, code: 'invalid_ttl' });

    // path traversal and odd paths
    cases.push({ name: 'GET an entry ID of 5,000 characters', method: 'GET', path: '/v1/entries/' + 'a'.repeat(5000), status: 414, code: 'invalid_request' });
    for (const p of ['/v1/entries/..%2F..%2Fetc%2Fpasswd', '/v1/entries/%00', '/v1/entries/' + 'a'.repeat(500), '/v1/entries/a%20b', '/v1/entries/%E2%80%AE']) {
      cases.push({ name: `GET ${p.slice(0, 40)}`, method: 'GET', path: p, status: 400, code: 'invalid_request' });
      cases.push({ name: `DELETE ${p.slice(0, 40)}`, method: 'DELETE', path: p, status: 400, code: 'invalid_request' });
    }
    cases.push({ name: 'GET an entry that does not exist', method: 'GET', path: '/v1/entries/NoSuchEntry0000000000000', status: 404, code: 'entry_not_found' });
    for (const p of ['/v1/entries/..', '/v1/entries/%2e%2e', '/v1/entries/%ZZ']) {
      cases.push({ name: `GET ${p}`, method: 'GET', path: p, status: p.includes('%ZZ') ? 400 : 404, code: p.includes('%ZZ') ? 'invalid_request' : 'not_found' });
    }
    // NUL and friends in query parameters and free-text fields reach the database as text
    for (const q of ['trustDomain=%00', 'parentId=spiffe%3A%2F%2Fhostile.test%2F%00', 'selector=unix%3Auid%3A%00', 'pageToken=%00']) {
      cases.push({ name: `list entries with ${q}`, method: 'GET', path: `/v1/entries?${q}`, status: 400 });
    }
    cases.push({ name: 'inventory search with a NUL prefix', method: 'GET', path: '/v1/x509-svids?spiffeIdPrefix=spiffe%3A%2F%2Fhostile.test%2F%00', status: 400 });
    cases.push({ name: 'entry with a NUL in a selector', method: 'POST', path: '/v1/entries', body: { spiffeId: OK_ID, parentId: PARENT, selectors: ['unix:uid:\u0000'] }, status: 400 });
    cases.push({ name: 'entry with a NUL in the hint', method: 'POST', path: '/v1/entries', body: { spiffeId: OK_ID, parentId: PARENT, selectors: ['unix:uid:1'], hint: 'a\u0000b' }, status: 400 });
    for (const p of ['/v1/trust-domains/..%2F..%2Fetc', '/v1/trust-domains/%00', '/v1/trust-domains/UPPER.case']) {
      cases.push({ name: `GET ${p}`, method: 'GET', path: p, status: 400, code: 'invalid_trust_domain' });
    }
    for (const p of ['/td/../../etc/passwd', '/td/%2e%2e/bundle', '/td/nowhere.test/bundle', '/td/nowhere.test/jwks', '/nope', '/v1', '/v1/entries/x/y/z']) {
      cases.push({ name: `GET ${p}`, method: 'GET', path: p, admin: false, status: 404 });
    }
    cases.push({ name: 'DELETE on a public route', method: 'DELETE', path: `/td/${TD}/bundle`, admin: false, status: 404 });

    // node attestation endpoints
    cases.push({ name: 'psat: unknown cluster', method: 'POST', path: '/agent/v1/attest/k8s-psat', listener: 'tls', body: { trustDomain: TD, cluster: 'nope', token: 'a.b.c', csr: good.toString('base64') }, status: 401, code: 'unauthenticated' });
    cases.push({ name: 'psat: extra field', method: 'POST', path: '/agent/v1/attest/k8s-psat', listener: 'tls', body: { trustDomain: TD, cluster: 'c', token: 'a', csr: 'x', extra: 1 }, status: 400, code: 'invalid_request' });
    cases.push({ name: 'x509pop: no manufacturer CA configured', method: 'POST', path: '/agent/v1/attest/x509pop/challenge', listener: 'tls', body: { trustDomain: TD, chain: ['AAAA'] }, status: 401, code: 'unauthenticated' });
    cases.push({ name: 'x509pop: unknown challenge', method: 'POST', path: '/agent/v1/attest/x509pop', listener: 'tls', body: { challengeId: 'nope', signature: 'AAAA', csr: good.toString('base64') }, status: 401, code: 'unauthenticated' });
    cases.push({ name: 'agent route without a client certificate', method: 'GET', path: '/agent/v1/sync', listener: 'tls', status: 401, code: 'unauthenticated' });

    expect(cases.length).toBeGreaterThanOrEqual(200);
    const failures: string[] = [];
    for (const c of cases) {
      const res = await send(c);
      const code = (res.json as { code?: string } | undefined)?.code;
      outcomes.push({ status: res.status, code: res.status >= 400 ? code : 'ok' });
      if (res.status !== c.status || (c.code && code !== c.code)) failures.push(`${c.name}: expected ${c.status} ${c.code ?? ''}, got ${res.status} ${code ?? ''} ${JSON.stringify(res.json).slice(0, 120)}`);
      if (res.status >= 400 && typeof (res.json as { message?: unknown }).message !== 'string') failures.push(`${c.name}: no human message`);
    }
    expect(failures).toEqual([]);
    expect(outcomes.filter((o) => o.status >= 500)).toEqual([]);
    expect(outcomes.filter((o) => o.status >= 400 && !(ERROR_CODES as readonly string[]).includes(o.code ?? ''))).toEqual([]);
  }, 120_000);
});
