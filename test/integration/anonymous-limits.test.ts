import { X509Certificate } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentPaths } from '../../contract/agent-api.js';
import { encodeBootstrapToken, parseBootstrapToken } from '../../contract/bootstrap-token.js';
import { NodeAttestationPaths } from '../../contract/node-attestation.js';
import { createCsr, generateKeyAndCsr } from '../../lib/pkcs10.js';
import { fetchPinnedAuthority } from '../../lib/tls-client.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';
import { rsaKeyWithExponent } from '../support/rsa-keys.js';

const TD = 'limits.test';
const INVALID = { code: 'invalid_token', message: 'the token is not valid (unknown, already used, or expired)' };

/**
 * The anonymous routes of the TLS listener (token redemption, device redeem, PSAT/x509pop
 * attestation): refusals are decided before any cryptography, guesses are limited per source
 * address, and a valid token is never refused because of someone else's guesses.
 */
describe(`anonymous routes: limits before cryptography (${storeKind()} store)`, () => {
  let ca: TestCa;
  let authority: string;
  let nextSource = 0;
  /** A loopback address of its own per test, so the per-source limits of one test stay out of the others. */
  const newSource = (): string => `127.0.9.${++nextSource}`;

  const post = (path: string, body: unknown, source: string): Promise<{ status: number; body: { code?: string; message?: string; serial?: string } }> =>
    new Promise((resolve, reject) => {
      const data = Buffer.from(JSON.stringify(body));
      const req = httpsRequest(ca.tlsUrl + path, {
        method: 'POST',
        ca: authority,
        checkServerIdentity: () => undefined,
        localAddress: source,
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': data.length },
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString() || '{}') }));
      });
      req.on('error', reject);
      req.end(data);
    });
  const token = async (body: Record<string, unknown> = {}): Promise<string> => {
    const res = await ca.admin('/v1/tokens', { body: { trustDomain: TD, ...body } });
    expect(res.status).toBe(201);
    return (await res.json()).token;
  };
  const goodCsr = (): string => generateKeyAndCsr().csr.toString('base64');
  /** A well-formed CSR for an accepted key whose signature does not verify. */
  const brokenCsr = (): string => {
    const der = Buffer.from(generateKeyAndCsr().csr);
    der[der.length - 5]! ^= 0x01;
    return der.toString('base64');
  };
  const junkToken = (real: string, i: number): string => encodeBootstrapToken({ ...parseBootstrapToken(real).claims, id: `junk${i}junk${i}junk` }, 'J'.repeat(43));
  const logLines = (): Record<string, unknown>[] => ca.logs().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

  beforeAll(async () => {
    ca = await startTestCa();
    expect((await ca.admin('/v1/trust-domains', { body: { name: TD } })).status).toBe(201);
    authority = await fetchPinnedAuthority(ca.tlsUrl, await ca.core.serverTls.pin());
  }, 180_000); // a CA on a fresh database: slow on a loaded machine
  afterAll(() => ca?.close());

  it('after 10+ junk tokens from one address, a valid token from the same address still redeems', async () => {
    const source = newSource();
    const real = await token();
    const statuses: number[] = [];
    for (let i = 0; i < 14; i++) statuses.push((await post(AgentPaths.attest, { token: junkToken(real, i), csr: goodCsr() }, source)).status);
    expect(statuses.slice(0, 10)).toEqual(Array(10).fill(401));
    expect(statuses.slice(10)).toEqual(Array(4).fill(429)); // the guesses are limited…
    const valid = await post(AgentPaths.attest, { token: real, csr: goodCsr() }, source);
    expect(valid.status, JSON.stringify(valid.body)).toBe(201); // …the valid token is not
    const device = await post(AgentPaths.deviceRedeem, { token: await token({ spiffeId: `spiffe://${TD}/device/1` }), csr: goodCsr() }, source);
    expect(device.status, JSON.stringify(device.body)).toBe(201);
    // and the source is still limited for guesses afterwards
    expect((await post(AgentPaths.attest, { token: junkToken(real, 99), csr: goodCsr() }, source)).status).toBe(429);
  });

  it('a flood of junk tokens is refused and limited without a CSR signature check', async () => {
    // Each CSR's signature is broken: had it been checked, the answer would be 400 csr_signature_invalid.
    const source = newSource();
    const real = await token();
    const answers = [];
    for (let i = 0; i < 13; i++) answers.push(await post(i % 2 ? AgentPaths.deviceRedeem : AgentPaths.attest, { token: junkToken(real, i), csr: brokenCsr() }, source));
    expect(answers.slice(0, 10).map((a) => a.body)).toEqual(Array(10).fill(INVALID));
    expect(answers.slice(10).map((a) => [a.status, a.body.code])).toEqual(Array(3).fill([429, 'rate_limited']));
    // the same broken CSR with a token that can be answered does get its signature checked (and the token stays unspent)
    const checked = await post(AgentPaths.attest, { token: real, csr: brokenCsr() }, source);
    expect([checked.status, checked.body.code]).toEqual([400, 'csr_signature_invalid']);
    expect((await post(AgentPaths.attest, { token: real, csr: goodCsr() }, source)).status).toBe(201);
  });

  it('a spent token presented by another key is refused before its CSR signature is checked', async () => {
    const source = newSource();
    const real = await token();
    expect((await post(AgentPaths.attest, { token: real, csr: goodCsr() }, source)).status).toBe(201);
    expect(await post(AgentPaths.attest, { token: real, csr: brokenCsr() }, source)).toEqual({ status: 401, body: INVALID });
  });

  it('a CSR with a huge RSA exponent is refused (400) without spending the token or checking its signature', async () => {
    const source = newSource();
    const real = await token();
    const huge = rsaKeyWithExponent(3072, 'huge');
    const der = createCsr(huge.privateKey, huge.publicKey);
    const broken = Buffer.from(der);
    broken[broken.length - 5]! ^= 0x01;
    for (const csr of [der, broken]) {
      const res = await post(AgentPaths.attest, { token: real, csr: csr.toString('base64') }, source);
      expect([res.status, res.body.code]).toEqual([400, 'unsupported_key_type']);
      expect(res.body.message).toContain('65537');
    }
    const psat = await post(NodeAttestationPaths.attestPsat, { trustDomain: TD, cluster: 'c', token: 'a.b.c', csr: broken.toString('base64') }, source);
    expect([psat.status, psat.body.code]).toEqual([400, 'unsupported_key_type']);
    expect((await post(AgentPaths.attest, { token: real, csr: goodCsr() }, source)).status).toBe(201);
  });

  it('PSAT and x509pop: CSRs whose signature fails count toward the source limit, which then applies before any cryptography', async () => {
    const source = newSource();
    const statuses: number[] = [];
    for (let i = 0; i < 62; i++) {
      statuses.push((await post(NodeAttestationPaths.attestPsat, { trustDomain: TD, cluster: 'c', token: 'a.b.c', csr: brokenCsr() }, source)).status);
    }
    expect(statuses.slice(0, 60)).toEqual(Array(60).fill(400));
    expect(statuses.slice(60)).toEqual([429, 429]);
    const pop = await post(NodeAttestationPaths.attestX509Pop, { challengeId: 'nope', signature: 'AAAA', csr: goodCsr() }, source);
    expect([pop.status, pop.body.code]).toEqual([429, 'rate_limited']);
    // another address is not affected
    expect((await post(NodeAttestationPaths.attestPsat, { trustDomain: TD, cluster: 'c', token: 'a.b.c', csr: brokenCsr() }, newSource())).status).toBe(400);
  });

  it('the caller gets one answer for expired, used, unknown, malformed and wrong-kind tokens; the log records the real reason', async () => {
    const source = newSource();
    const expired = await token({ ttlSeconds: 30 });
    const expiredId = parseBootstrapToken(expired).claims.id;
    await ca.handle.db.query(`UPDATE one_time_tokens SET expires_at = now() - interval '1 minute' WHERE id = $1`, [expiredId]);
    const used = await token();
    const usedId = parseBootstrapToken(used).claims.id;
    expect((await post(AgentPaths.attest, { token: used, csr: goodCsr() }, source)).status).toBe(201);
    const joinAsDevice = await token();
    const unknown = junkToken(used, 7);
    const answers = [
      await post(AgentPaths.attest, { token: expired, csr: goodCsr() }, source),
      await post(AgentPaths.attest, { token: used, csr: goodCsr() }, source),
      await post(AgentPaths.attest, { token: unknown, csr: goodCsr() }, source),
      await post(AgentPaths.attest, { token: 'cairn1.garbage', csr: goodCsr() }, source),
      await post(AgentPaths.deviceRedeem, { token: joinAsDevice, csr: goodCsr() }, source),
    ];
    for (const a of answers) expect(a).toEqual({ status: 401, body: INVALID });

    const lines = logLines();
    const refusals = lines.filter((l) => l.event === 'token.refused' && l.source === source).map((l) => [l.reason, l.tokenId]);
    expect(refusals).toEqual([
      ['expired', expiredId],
      ['used', usedId],
      ['unknown', parseBootstrapToken(unknown).claims.id],
      ['malformed', undefined],
      ['wrong_kind', parseBootstrapToken(joinAsDevice).claims.id],
    ]);
    // token.redeemed only for the redemption that happened, never for a refused token
    const redeemed = lines.filter((l) => l.event === 'token.redeemed').map((l) => l.tokenId);
    expect(redeemed).toContain(usedId);
    expect(redeemed).not.toContain(expiredId);
    expect(redeemed).not.toContain(parseBootstrapToken(joinAsDevice).claims.id);
    expect(redeemed.filter((id) => id === usedId)).toHaveLength(1);
    // the refused expired and wrong-kind tokens were spent by their presentation
    const spent = await ca.handle.db.query<{ id: string }>('SELECT id FROM one_time_tokens WHERE used_at IS NOT NULL AND id = ANY($1)', [[expiredId, parseBootstrapToken(joinAsDevice).claims.id]]);
    expect(spent.rows).toHaveLength(2);
  });

  it('a spent token answered again to its own key is logged as a repeat, not a second redemption', async () => {
    const source = newSource();
    const real = await token();
    const key = generateKeyAndCsr();
    const first = await post(AgentPaths.attest, { token: real, csr: key.csr.toString('base64') }, source);
    const again = await post(AgentPaths.attest, { token: real, csr: key.csr.toString('base64') }, source);
    expect([first.status, again.status]).toEqual([201, 201]);
    expect(again.body.serial).toBe(first.body.serial);
    const id = parseBootstrapToken(real).claims.id;
    const events = logLines().filter((l) => l.tokenId === id).map((l) => l.event);
    expect(events).toEqual(['token.created', 'token.redeemed', 'token.answer_repeated']);
    expect(new X509Certificate(Buffer.from((first.body as unknown as { chain: string[] }).chain[0]!, 'base64')).serialNumber.toLowerCase()).toBe(first.body.serial);
  });
});
