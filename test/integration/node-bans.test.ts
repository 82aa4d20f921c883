import { execFileSync } from 'node:child_process';
import { createHash, randomUUID, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentPaths, type X509SvidMessage } from '../../contract/agent-api.js';
import { NodeAttestationPaths as P, type X509PopChallenge } from '../../contract/node-attestation.js';
import { generateKeyAndCsr } from '../../lib/pkcs10.js';
import { fetchPinnedAuthority, requestJson } from '../../lib/tls-client.js';
import { pemToDerList } from '../../spiffe/bundle/bundle.js';
import { redeem, TestNode } from '../support/agent-client.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';
import { runCairnAsync } from '../support/processes.js';

const TD = 'bans.test';
const openssl = (args: string[], cwd: string): void => {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
};

describe(`bans outlive node records and cover every attestation and renewal (${storeKind()} store)`, () => {
  let ca: TestCa;
  let dir: string;
  let authority: string;
  let signingKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
  let jwk: JWK;

  const post = <T>(path: string, body: unknown) => requestJson<T & { code?: string; message?: string }>('POST', ca.tlsUrl + path, body, { ca: authority });
  const admin = async <T = Record<string, unknown>>(path: string, body?: unknown) => {
    const res = await ca.admin(path, body === undefined ? {} : { body });
    return { status: res.status, body: (res.status === 204 ? undefined : await res.json()) as T & { code?: string; message?: string } };
  };
  const banList = async (): Promise<Record<string, unknown>[]> => (await admin<{ bans: Record<string, unknown>[] }>(`/v1/agents/bans?trustDomain=${TD}`)).body.bans;

  /** A device with a manufacturer-issued certificate, as x509pop wants it. */
  const device = (name: string): { der: Buffer; key: string; fingerprint: string } => {
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'mfr.pem', '-CAkey', 'mfr.key', '-days', '30', '-out', `${name}.pem`, '-extfile', 'device.ext'], dir);
    const der = pemToDerList(readFileSync(join(dir, `${name}.pem`), 'utf8'))[0]!;
    return { der, key: readFileSync(join(dir, `${name}.key`), 'utf8'), fingerprint: createHash('sha1').update(der).digest('hex') };
  };
  /** Both x509pop steps; the node on success, else the refusal. */
  const attestDevice = async (d: { der: Buffer; key: string }) => {
    const ch = await post<X509PopChallenge>(P.x509PopChallenge, { trustDomain: TD, chain: [d.der.toString('base64')] });
    if (ch.status !== 201) return { status: ch.status, code: ch.body.code, step: 'challenge' };
    const key = generateKeyAndCsr('ec-p256');
    const res = await post<X509SvidMessage>(P.attestX509Pop, { challengeId: ch.body.challengeId, signature: sign('sha256', Buffer.from(ch.body.nonce, 'base64'), d.key).toString('base64'), csr: key.csr.toString('base64') });
    if (res.status !== 201) return { status: res.status, code: res.body.code, step: 'answer' };
    return { status: 201, node: new TestNode(ca.tlsUrl, authority, res.body, key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()) };
  };
  const psat = (nodeUid: string) =>
    new SignJWT({ 'kubernetes.io': { namespace: 'cairn', serviceaccount: { name: 'cairn-agent', uid: randomUUID() }, pod: { name: 'agent', uid: randomUUID() }, node: { name: 'n', uid: nodeUid } } })
      .setProtectedHeader({ alg: 'RS256', kid: jwk.kid! })
      .setIssuer('https://oidc.bans.example')
      .setAudience(['cairn-ca'])
      .setIssuedAt()
      .setExpirationTime('10m')
      .setJti(randomUUID())
      .sign(signingKey);
  const attestPsat = async (nodeUid: string) => {
    const key = generateKeyAndCsr('ec-p256');
    const res = await post<X509SvidMessage>(P.attestPsat, { trustDomain: TD, cluster: 'prod', token: await psat(nodeUid), csr: key.csr.toString('base64') });
    return { ...res, node: res.status === 201 ? new TestNode(ca.tlsUrl, authority, res.body, key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()) : undefined };
  };
  /** node.refused entries naming `like` (issue 14: a refusal of a node that proved who it is is on record). */
  const refusals = async (like: string): Promise<Record<string, unknown>[]> =>
    (await ca.handle.db.query<{ data: Uint8Array }>(`SELECT data FROM audit_entries WHERE event = 'node.refused' AND convert_from(data, 'UTF8') LIKE $1 ORDER BY seq`, [`%${like}%`])).rows
      .map((r) => JSON.parse(Buffer.from(r.data).toString('utf8')) as Record<string, unknown>);
  const token = async (body: Record<string, unknown>): Promise<string> => (await admin<{ token: string }>('/v1/tokens', { trustDomain: TD, ...body })).body.token;

  beforeAll(async () => {
    ca = await startTestCa();
    dir = mkdtempSync(join(tmpdir(), 'cairn-bans-'));
    await ca.admin('/v1/trust-domains', { body: { name: TD } });
    const { pin } = await (await ca.admin(P.caTls)).json();
    authority = await fetchPinnedAuthority(ca.tlsUrl, pin);
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'mfr.key', '-out', 'mfr.pem', '-days', '30', '-subj', '/CN=Acme Manufacturing CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign'], dir);
    writeFileSync(join(dir, 'device.ext'), 'basicConstraints=CA:FALSE\n');
    expect((await ca.admin(`/v1/trust-domains/${TD}/attestors/x509pop/acme`, { method: 'PUT', body: { caCertificates: readFileSync(join(dir, 'mfr.pem'), 'utf8') } })).status).toBe(200);
    const pair = await generateKeyPair('RS256');
    signingKey = pair.privateKey;
    jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256' };
    expect((await ca.admin(`/v1/trust-domains/${TD}/attestors/k8s-psat/prod`, { method: 'PUT', body: { mode: 'jwks', issuer: 'https://oidc.bans.example', jwks: { keys: [jwk] }, allowedServiceAccounts: ['cairn:cairn-agent'] } })).status).toBe(200);
  });
  afterAll(async () => {
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('ban → evict → the same x509pop device attesting again is refused; unban lets it back', async () => {
    const d = device('sensor-1');
    const first = await attestDevice(d);
    expect(first.status).toBe(201);
    const node = first.node!;
    expect(node.spiffeId).toBe(`spiffe://${TD}/cairn/agent/x509pop/${d.fingerprint}`);
    const banned = await admin('/v1/agents/ban', { spiffeId: node.spiffeId });
    expect(banned.status).toBe(200);
    expect(banned.body).toMatchObject({ spiffeId: node.spiffeId });
    expect((await node.call<{ code: string }>('GET', AgentPaths.sync)).status).toBe(403);
    expect(await refusals(node.spiffeId)).toEqual([expect.objectContaining({ event: 'node.refused', actor: node.spiffeId, reason: 'agent_banned', kind: 'agent', serial: expect.stringMatching(/^[0-9a-f]+$/) })]);
    // a banned agent keeps asking: a few entries a minute, then log lines only
    for (let i = 0; i < 8; i++) expect((await node.call<{ code: string }>('GET', AgentPaths.sync)).status).toBe(403);
    expect(await refusals(node.spiffeId)).toHaveLength(5);
    expect((await admin('/v1/agents/evict', { spiffeId: node.spiffeId })).status).toBe(204);
    const again = await attestDevice(d);
    expect(again).toMatchObject({ status: 403, code: 'agent_banned', step: 'challenge' });
    // the node record is gone, the ban is not
    expect(await banList()).toEqual(expect.arrayContaining([expect.objectContaining({ spiffeId: node.spiffeId, reason: null, createdBy: expect.any(String) })]));
    expect((await admin('/v1/agents/ban', { spiffeId: node.spiffeId, reason: 'stolen' })).body).toMatchObject({ trustDomain: TD, spiffeId: node.spiffeId, reason: 'stolen' });
    const agents = (await admin<{ agents: { spiffeId: string }[] }>(`/v1/agents?trustDomain=${TD}`)).body.agents;
    expect(agents.map((a) => a.spiffeId)).not.toContain(node.spiffeId);

    expect((await admin('/v1/agents/unban', { spiffeId: node.spiffeId })).status).toBe(200);
    expect((await attestDevice(d)).status).toBe(201);
    expect((await admin('/v1/agents/unban', { spiffeId: node.spiffeId })).status).toBe(404);
  });

  it('a device certificate banned by fingerprint: refused before its first attestation, and an attested one loses renewal', async () => {
    const fresh = device('sensor-2');
    // as openssl prints it: upper case with colons
    const printed = fresh.fingerprint.toUpperCase().match(/../g)!.join(':');
    const ban = await admin('/v1/agents/ban', { trustDomain: TD, fingerprint: printed });
    expect(ban.status).toBe(200);
    expect(ban.body).toMatchObject({ fingerprint: fresh.fingerprint });
    expect(await attestDevice(fresh)).toMatchObject({ status: 403, code: 'agent_banned' });

    const live = device('sensor-3');
    const attested = await attestDevice(live);
    expect(attested.status).toBe(201);
    expect((await admin('/v1/agents/ban', { trustDomain: TD, fingerprint: live.fingerprint })).status).toBe(200);
    const renew = await attested.node!.call<{ code: string }>('POST', AgentPaths.renew, { csr: generateKeyAndCsr().csr.toString('base64') });
    expect(renew.status).toBe(403);
    expect(renew.body.code).toBe('agent_banned');
    const view = (await admin<{ agents: { spiffeId: string; banned: boolean }[] }>(`/v1/agents?trustDomain=${TD}`)).body.agents.find((a) => a.spiffeId === attested.node!.spiffeId);
    expect(view?.banned).toBe(true);
  });

  it('a SPIFFE ID that never attested can be banned: its first attestation (join token, workload credential) is refused and the token stays unspent', async () => {
    const alias = `spiffe://${TD}/cairn/agent/edge-9`;
    expect((await admin('/v1/agents/ban', { spiffeId: alias })).status).toBe(200);
    const t = await token({ agentId: alias });
    const refused = await redeem(t);
    expect(refused.status).toBe(403);
    expect((refused.body as { code: string }).code).toBe('agent_banned');
    expect(await refusals(`"tokenId":"`)).toEqual(expect.arrayContaining([expect.objectContaining({ reason: 'agent_banned', kind: 'join', trustDomain: TD, actor: expect.stringMatching(/^token:/) })]));

    const deviceId = `spiffe://${TD}/device-type/thermostat/ins/${randomUUID()}`;
    expect((await admin('/v1/agents/ban', { spiffeId: deviceId })).status).toBe(200);
    const cred = await redeem(await token({ spiffeId: deviceId }), AgentPaths.deviceRedeem);
    expect(cred.status).toBe(403);

    // lifting the ban: the same token works, it was never spent
    expect((await admin('/v1/agents/unban', { spiffeId: alias })).status).toBe(200);
    const ok = await redeem(t);
    expect(ok.status).toBe(201);
    // and a device that renews is refused once banned
    expect((await admin('/v1/agents/ban', { spiffeId: alias })).status).toBe(200);
    expect((await ok.node!.call<{ code: string }>('POST', AgentPaths.renew, { csr: generateKeyAndCsr().csr.toString('base64') })).status).toBe(403);
  });

  it('a Kubernetes node banned by UID: its agent is refused on sync and at attestation, attested before or not', async () => {
    expect((await attestPsat('node-uid-banned-later')).status).toBe(201);
    const attested = await attestPsat('node-uid-banned-later');
    expect(attested.status).toBe(201);
    expect((await admin('/v1/agents/ban', { trustDomain: TD, nodeUid: 'node-uid-banned-later', reason: 'decommissioned' })).status).toBe(200);
    expect((await attested.node!.call('GET', AgentPaths.sync)).status).toBe(403);
    const again = await attestPsat('node-uid-banned-later');
    expect(again.status).toBe(403);
    expect(again.body.code).toBe('agent_banned');
    expect((await admin('/v1/agents/ban', { trustDomain: TD, nodeUid: 'node-uid-never-seen' })).status).toBe(200);
    expect((await attestPsat('node-uid-never-seen')).status).toBe(403);
    expect((await attestPsat('node-uid-someone-else')).status).toBe(201);
  });

  it('bad ban requests get clear 4xx answers', async () => {
    const cases: [unknown, number, string][] = [
      [{ spiffeId: `spiffe://${TD}/x`, nodeUid: 'n' }, 400, 'invalid_request'],
      [{}, 400, 'invalid_request'],
      [{ fingerprint: 'ab'.repeat(20) }, 400, 'invalid_request'],
      [{ trustDomain: TD, fingerprint: 'zz'.repeat(20) }, 400, 'invalid_request'],
      [{ trustDomain: TD, nodeUid: 'not a uid' }, 400, 'invalid_request'],
      [{ spiffeId: 'spiffe://nowhere.test/agent' }, 404, 'trust_domain_not_found'],
      [{ spiffeId: `spiffe://${TD}/x`, trustDomain: 'other.test' }, 400, 'wrong_trust_domain'],
      [{ spiffeId: 'not-an-id' }, 400, 'invalid_spiffe_id'],
    ];
    for (const [body, status, code] of cases) {
      const res = await admin('/v1/agents/ban', body);
      expect(res.status, JSON.stringify(body)).toBe(status);
      expect(res.body.code, JSON.stringify(body)).toBe(code);
    }
  });

  it('the CLI bans by node UID and fingerprint and lists the deny-list', async () => {
    const env = { CAIRN_SERVER: ca.url, CAIRN_ADMIN_TOKEN: ca.adminToken, CAIRN_DATA_DIR: dir };
    const byUid = await runCairnAsync(['agent', 'ban', '--trust-domain', TD, '--node-uid', 'cli-node-1', '--reason', 'rma'], env);
    expect(byUid.status, byUid.stderr).toBe(0);
    expect(byUid.stdout.trim()).toBe('k8s node cli-node-1');
    const byFingerprint = await runCairnAsync(['agent', 'ban', '--trust-domain', TD, '--fingerprint', 'AB:'.repeat(19) + 'AB'], env);
    expect(byFingerprint.status, byFingerprint.stderr).toBe(0);
    expect(byFingerprint.stdout.trim()).toBe(`x509pop fingerprint ${'ab'.repeat(20)}`);
    const byId = await runCairnAsync(['agent', 'ban', `spiffe://${TD}/cairn/agent/cli-1`], env);
    expect(byId.status, byId.stderr).toBe(0);
    const listed = await runCairnAsync(['agent', 'bans', '--trust-domain', TD, '--json'], env);
    expect(listed.status, listed.stderr).toBe(0);
    expect(JSON.parse(listed.stdout).bans).toEqual(expect.arrayContaining([
      expect.objectContaining({ nodeUid: 'cli-node-1', reason: 'rma' }),
      expect.objectContaining({ spiffeId: `spiffe://${TD}/cairn/agent/cli-1` }),
    ]));
    const table = await runCairnAsync(['agent', 'bans', '--trust-domain', TD], env);
    expect(table.stdout).toMatch(/k8s node cli-node-1\s+rma/);
    const unban = await runCairnAsync(['agent', 'unban', '--trust-domain', TD, '--node-uid', 'cli-node-1'], env);
    expect(unban.status, unban.stderr).toBe(0);
    const usage = await runCairnAsync(['agent', 'ban', '--node-uid', 'x'], env);
    expect(usage.status).toBe(2);
    expect(usage.stderr).toMatch(/--trust-domain TD with one of --fingerprint SHA1 or --node-uid UID/);
  }, 120_000);
});
