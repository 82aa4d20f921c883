import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createPublicKey, generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { subjectPublicKeyFromDer } from '../../ca/issuance/spki.js';
import { generateKeyAndCsr } from '../../lib/pkcs10.js';
import { derToPem } from '../../spiffe/bundle/bundle.js';
import { publicJwkOf } from '../../spiffe/bundle/jwk.js';
import { splitDerCertificates } from '../../spiffe/svid/x509.js';
import { WorkloadApiClient } from '../../workload-api/client.js';
import { startCaOnTestStore } from '../support/ca-process.js';
import { referenceLeaf, testCaCertificate, type TestCaCert } from '../support/certs.js';
import { storeKind } from '../support/db.js';
import { firstMessage, grpc, grpcWorkloadClient, securityHeader, type GrpcWorkloadClient, type X509SvidWire } from '../support/grpc-workload.js';
import { opensslVerify } from '../support/openssl.js';
import { runCairnAsync, spawnCairn, type Spawned } from '../support/processes.js';
import { waitFor } from '../support/wait.js';

const TD = 'home.test';
/** Hosted by the same CA: entries federate with it without any bundle set. */
const HOSTED = 'neighbour.test';
/** Not hosted anywhere we can reach: its bundle is set statically. */
const FOREIGN = 'partner.test';
const FOREIGN_ID = `spiffe://${FOREIGN}`;

interface X509Message {
  svids: X509SvidWire[];
  federated_bundles: Record<string, Buffer>;
}

/**
 * SPIFFE federation, core (issue 15), with real processes: `cairn ca start` hosting two trust
 * domains, `cairn agent start` serving the Workload API on its Unix socket, a grpc-js client (built
 * from the proto, not our code) holding a FetchX509SVID stream, our own Workload API client, `cairn
 * svid fetch --write`, and `openssl verify` as the independent judge of what the socket hands out.
 */
describe(`federation: foreign bundles reach workloads (${storeKind()} store)`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-federation-'));
  chmodSync(dir, 0o755);
  const socket = join(dir, 'agent.sock');
  let ca: Awaited<ReturnType<typeof startCaOnTestStore>>;
  let agent: Spawned | undefined;
  let grpcClient: GrpcWorkloadClient | undefined;
  let ours: WorkloadApiClient | undefined;
  let call: grpc.ClientReadableStream<X509Message> | undefined;
  const messages: X509Message[] = [];
  const errors: grpc.ServiceError[] = [];
  let cliEnv: Record<string, string | undefined>;
  let entryId = '';
  let partnerCa: TestCaCert;
  let partnerCa2: TestCaCert;
  const partnerJwt = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const cairn = (...args: string[]) => runCairnAsync(args, cliEnv);
  const file = (name: string, text: string): string => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const partnerBundle = (sequence: number, cas: TestCaCert[]): string =>
    JSON.stringify({
      spiffe_sequence: sequence,
      spiffe_refresh_hint: 300,
      keys: [
        ...cas.map((c) => ({ ...publicJwkOf(c.publicKey), use: 'x509-svid', x5c: [c.der.toString('base64')] })),
        { ...publicJwkOf(partnerJwt.publicKey), use: 'jwt-svid', kid: 'partner-kid-1' },
      ],
    });
  const svidOf = async (ca: TestCaCert, spiffeId: string): Promise<{ cert: string; key: string }> => {
    const key = generateKeyAndCsr();
    const subjectKey = subjectPublicKeyFromDer(createPublicKey(key.privateKey).export({ format: 'der', type: 'spki' }));
    const now = Date.now();
    const leaf = await referenceLeaf(ca, { spiffeId, serial: randomBytes(16), notBefore: new Date(now - 60_000), notAfter: new Date(now + 3600_000), dnsNames: [], publicKey: subjectKey }, subjectKey);
    return { cert: derToPem(leaf), key: key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() };
  };
  const partnerLeaf = async (ca: TestCaCert): Promise<string> => (await svidOf(ca, `${FOREIGN_ID}/api`)).cert;
  const federatedOf = (m: X509Message, td: string): X509Certificate[] | undefined => {
    const der = m.federated_bundles[`spiffe://${td}`];
    return der === undefined ? undefined : splitDerCertificates(Buffer.from(der)).map((d) => new X509Certificate(d));
  };

  beforeAll(async () => {
    partnerCa = await testCaCertificate(FOREIGN);
    partnerCa2 = await testCaCertificate(FOREIGN);
    // the operator allows loopback endpoints (the test's); 169.254.169.254 and the rest stay refused
    ca = await startCaOnTestStore(join(dir, 'ca'), { CAIRN_FEDERATION_ENDPOINTS: '127.0.0.1,localhost' });
    cliEnv = { CAIRN_SERVER: ca.httpUrl, CAIRN_ADMIN_TOKEN: readFileSync(join(dir, 'ca', 'admin-token'), 'utf8').trim(), CAIRN_DATA_DIR: join(dir, 'cli') };
    expect((await ca.admin('/v1/trust-domains', { name: TD, x509SvidTtlSeconds: 3600 })).status).toBe(201);
    expect((await ca.admin('/v1/trust-domains', { name: HOSTED })).status).toBe(201);
    const { body: tok } = await ca.admin<{ token: string; spiffeId: string }>('/v1/tokens', { trustDomain: TD });
    const created = await ca.admin<{ id: string }>('/v1/entries', { spiffeId: `spiffe://${TD}/web`, parentId: tok.spiffeId, selectors: [`unix:uid:${process.getuid!()}`] });
    expect(created.status).toBe(201);
    entryId = created.body.id;
    agent = spawnCairn(['agent', 'start', '--data-dir', join(dir, 'agent'), '--socket', socket, '--join-token', tok.token], { CAIRN_DATA_DIR: undefined, CAIRN_LOG_LEVEL: 'info' });
    await agent.waitFor(/serving the Workload API/, 60_000);
    const healthy = await runCairnAsync(['agent', 'healthcheck', '--socket', socket, '--wait', '60s']);
    expect(healthy.status, healthy.stderr).toBe(0);
    grpcClient = grpcWorkloadClient(socket);
    ours = new WorkloadApiClient(`unix://${socket}`);
    call = grpcClient.FetchX509SVID!({}, securityHeader()) as grpc.ClientReadableStream<X509Message>;
    call.on('data', (m: X509Message) => messages.push(m));
    call.on('error', (e: grpc.ServiceError) => errors.push(e));
    await waitFor('the first X.509-SVID on the stream', () => messages[0], 30_000);
  }, 120_000);

  const servers: Server[] = [];
  afterAll(async () => {
    for (const server of servers) server.close();
    call?.cancel();
    grpcClient?.close();
    ours?.close();
    await agent?.stop();
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('--federates-with names only a hosted trust domain or one whose bundle is held; bad bundle files get clear errors', { timeout: 120_000 }, async () => {
    const unknown = await cairn('entry', 'update', entryId, '--federates-with', FOREIGN);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toMatch(/^error: unknown_federated_trust_domain: --federates-with: partner\.test is neither a trust domain of this CA nor one whose bundle home\.test holds; set its bundle first \(cairn bundle set --trust-domain home\.test --foreign partner\.test --file F\)/m);
    const viaApi = await ca.admin<{ code: string }>('/v1/entries', { spiffeId: `spiffe://${TD}/other`, parentId: `spiffe://${TD}/cairn/agent/x`, selectors: ['unix:uid:4242'], federatesWith: ['nowhere.test'] });
    expect([viaApi.status, viaApi.body.code]).toEqual([400, 'unknown_federated_trust_domain']);
    expect(messages.every((m) => Object.keys(m.federated_bundles).length === 0)).toBe(true);

    const set = (path: string, foreign = FOREIGN) => cairn('bundle', 'set', '--trust-domain', TD, '--foreign', foreign, '--file', path);
    const garbage = await set(file('garbage.txt', 'hello, not a bundle\n'));
    expect(garbage.status).toBe(1);
    expect(garbage.stderr).toMatch(/^error: invalid_bundle: this is neither a SPIFFE bundle \(JSON with a "keys" array\) nor PEM CA certificates/m);
    const noKeys = await set(file('nokeys.json', '{"spiffe_sequence": 1}'));
    expect(noKeys.stderr).toMatch(/^error: invalid_bundle: not a SPIFFE bundle: bundle has no "keys" array/m);
    const badX5c = await set(file('badx5c.json', JSON.stringify({ keys: [{ kty: 'EC', use: 'x509-svid', x5c: ['AAAA', 'BBBB'] }] })));
    expect(badX5c.stderr).toMatch(/^error: invalid_bundle: not a SPIFFE bundle: x509-svid key 0 must have exactly one x5c certificate/m);
    const svid = await set(file('leaf.pem', await partnerLeaf(partnerCa)));
    expect(svid.stderr).toMatch(/^error: invalid_bundle: X\.509 authority 1 .* is not a CA certificate: a bundle holds the trust domain's CAs, not an SVID/m);
    const otherTd = await set(file('other.pem', derToPem((await testCaCertificate('elsewhere.test')).der)));
    expect(otherTd.stderr).toMatch(/^error: wrong_trust_domain: X\.509 authority 1 is the CA of spiffe:\/\/elsewhere\.test, not of spiffe:\/\/partner\.test/m);
    const emptyPem = await set(file('empty.pem', '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'));
    expect(emptyPem.stderr).toMatch(/^error: invalid_bundle: the PEM holds no CERTIFICATE block/m);
    const self = await set(file('self.pem', derToPem(partnerCa.der)), TD);
    expect(self.stderr).toMatch(/^error: invalid_request: a trust domain does not federate with itself/m);
    const missing = await set(join(dir, 'no-such-file.json'));
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/^error: cannot read the bundle file \(--file\) .*no-such-file\.json: ENOENT/m);
    const noForeign = await cairn('bundle', 'set', '--trust-domain', TD, '--file', join(dir, 'self.pem'));
    expect(noForeign.status).toBe(2);
    expect(noForeign.stderr).toMatch(/^error: bundle set needs --foreign FTD/m);
    const badFormat = await cairn('bundle', 'show', '--trust-domain', TD, '--format', 'jwks');
    expect(badFormat.stderr).toMatch(/^error: --format must be one of pem, spiffe \(got "jwks"\)/m);
    const notHeld = await cairn('bundle', 'show', '--trust-domain', TD, '--foreign', FOREIGN);
    expect(notHeld.stderr).toMatch(/^error: federated_bundle_not_found: trust domain home\.test holds no bundle of partner\.test/m);
    // nothing was stored by any of these
    const list = await cairn('bundle', 'list', '--trust-domain', TD, '--json');
    expect(JSON.parse(list.stdout).bundles).toEqual([]);
  });

  it('a static bundle and a hosted trust domain reach the open stream, the bundle RPCs, ValidateJWTSVID and svid fetch --write', { timeout: 120_000 }, async () => {
    const set = await cairn('bundle', 'set', '--trust-domain', TD, '--foreign', FOREIGN, '--file', file('partner.json', partnerBundle(5, [partnerCa])));
    expect(set.status, set.stderr).toBe(0);
    expect(set.stderr).toContain('home.test now holds the bundle of partner.test: 1 X.509 authority, 1 JWT key(s), spiffe_sequence 5');
    const seen = messages.length;
    const upd = await cairn('entry', 'update', entryId, '--federates-with', FOREIGN, '--federates-with', HOSTED);
    expect(upd.status, upd.stderr).toBe(0);

    // the open stream (grpc-js) gets both foreign bundles
    const withBoth = await waitFor('federated bundles on the open stream', () => messages.slice(seen).find((m) => federatedOf(m, FOREIGN) && federatedOf(m, HOSTED)), 30_000);
    expect(federatedOf(withBoth, FOREIGN)!.map((c) => c.raw.toString('base64'))).toEqual([partnerCa.der.toString('base64')]);
    const hostedPublished = await (await fetch(`${ca.httpUrl}/td/${HOSTED}/bundle.pem`)).text();
    expect(federatedOf(withBoth, HOSTED)!.map((c) => derToPem(c.raw)).join('')).toBe(hostedPublished);
    expect(Object.keys(withBoth.federated_bundles).sort()).toEqual([`spiffe://${HOSTED}`, FOREIGN_ID]);
    expect(errors).toEqual([]);

    // FetchX509Bundles (grpc-js): own + both foreign
    const x509Bundles = await firstMessage<{ bundles: Record<string, Buffer> }>(grpcClient!, 'FetchX509Bundles');
    expect(Object.keys(x509Bundles.bundles).sort()).toEqual([`spiffe://${TD}`, `spiffe://${HOSTED}`, FOREIGN_ID]);
    expect(Buffer.from(x509Bundles.bundles[FOREIGN_ID]!).equals(partnerCa.der)).toBe(true);
    // FetchJWTBundles (our client): the partner's JWT key by its kid
    const jwtBundles = await ours!.fetchJwtBundles();
    expect(jwtBundles.get(FOREIGN_ID)!.keys.map((k) => k.kid)).toEqual(['partner-kid-1']);
    expect(jwtBundles.get(`spiffe://${HOSTED}`)!.keys.length).toBeGreaterThan(0);

    // ValidateJWTSVID accepts a partner token signed with its published key, and not one signed by anyone else
    const token = (key = partnerJwt.privateKey) =>
      new SignJWT({ sub: `${FOREIGN_ID}/api`, aud: ['home-gw'] }).setProtectedHeader({ alg: 'ES256', kid: 'partner-kid-1', typ: 'JWT' }).setIssuedAt().setExpirationTime('5m').sign(key);
    const valid = await ours!.validateJwtSvid(await token(), 'home-gw');
    expect(valid.spiffeId).toBe(`${FOREIGN_ID}/api`);
    await expect(ours!.validateJwtSvid(await token(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey), 'home-gw')).rejects.toThrow(/signature/i);

    // what the socket hands out verifies a partner SVID with openssl, and our own bundle does not
    const leafPem = await partnerLeaf(partnerCa);
    const out = join(dir, 'fetched');
    const fetched = await runCairnAsync(['svid', 'fetch', '--socket', `unix://${socket}`, '--write', out]);
    expect(fetched.status, fetched.stderr).toBe(0);
    const federatedPem = readFileSync(join(out, 'federated', `${FOREIGN}.pem`), 'utf8');
    expect(opensslVerify(leafPem, federatedPem, ['-partial_chain'])).toMatch(/OK/);
    expect(() => opensslVerify(leafPem, readFileSync(join(out, 'bundle.pem'), 'utf8'), ['-partial_chain'])).toThrow();
    expect(readFileSync(join(out, 'federated', `${HOSTED}.pem`), 'utf8')).toBe(hostedPublished);

    // show: the foreign bundle as held, both formats; without --foreign the trust domain's own
    const spiffe = JSON.parse((await cairn('bundle', 'show', '--trust-domain', TD, '--foreign', FOREIGN, '--format', 'spiffe')).stdout);
    expect(spiffe.spiffe_sequence).toBe(5);
    expect(spiffe.keys.map((k: { use: string }) => k.use)).toEqual(['x509-svid', 'jwt-svid']);
    expect((await cairn('bundle', 'show', '--trust-domain', TD, '--foreign', FOREIGN)).stdout).toBe(derToPem(partnerCa.der));
    expect((await cairn('bundle', 'show', '--trust-domain', TD)).stdout).toBe(await (await fetch(`${ca.httpUrl}/td/${TD}/bundle.pem`)).text());
    const list = JSON.parse((await cairn('bundle', 'list', '--trust-domain', TD, '--json')).stdout);
    expect(list.bundles.map((b: { foreignTrustDomain: string; sequence: number; source: string }) => [b.foreignTrustDomain, b.sequence, b.source])).toEqual([[FOREIGN, 5, 'static']]);
  });

  it('an update reaches the open stream; an older spiffe_sequence is refused; delete is refused while in use, then forced', { timeout: 120_000 }, async () => {
    const seen = messages.length;
    const rotated = await cairn('bundle', 'set', '--trust-domain', TD, '--foreign', FOREIGN, '--file', file('partner-6.json', partnerBundle(6, [partnerCa, partnerCa2])));
    expect(rotated.status, rotated.stderr).toBe(0);
    const withTwo = await waitFor('the rotated partner bundle on the open stream', () => messages.slice(seen).find((m) => federatedOf(m, FOREIGN)?.length === 2), 30_000);
    expect(federatedOf(withTwo, FOREIGN)!.map((c) => c.raw.equals(partnerCa2.der))).toEqual([false, true]);

    const older = await cairn('bundle', 'set', '--trust-domain', TD, '--foreign', FOREIGN, '--file', file('partner-4.json', partnerBundle(4, [partnerCa])));
    expect(older.status).toBe(1);
    expect(older.stderr).toMatch(/^error: bundle_sequence_older: the bundle's spiffe_sequence 4 is older than the 6 held for partner\.test/m);
    expect(JSON.parse((await cairn('bundle', 'show', '--trust-domain', TD, '--foreign', FOREIGN, '--format', 'spiffe')).stdout).spiffe_sequence).toBe(6);

    const inUse = await cairn('bundle', 'delete', '--trust-domain', TD, '--foreign', FOREIGN);
    expect(inUse.status).toBe(1);
    expect(inUse.stderr).toMatch(/^error: federated_bundle_in_use: 1 registration entry of home\.test federate with partner\.test \(e\.g\. spiffe:\/\/home\.test\/web\).*pass --force/m);
    const beforeDelete = messages.length;
    const forced = await cairn('bundle', 'delete', '--trust-domain', TD, '--foreign', FOREIGN, '--force');
    expect(forced.status, forced.stderr).toBe(0);
    const without = await waitFor('the stream without the partner bundle', () => messages.slice(beforeDelete).find((m) => !federatedOf(m, FOREIGN)), 30_000);
    expect(federatedOf(without, HOSTED)).toBeDefined();
    await expect(ours!.fetchJwtBundles().then((b) => [...b.keys()].sort())).resolves.toEqual([`spiffe://${TD}`, `spiffe://${HOSTED}`]);
    // svid fetch --write drops the file of a bundle no longer sent
    const out = join(dir, 'fetched');
    const again = await runCairnAsync(['svid', 'fetch', '--socket', `unix://${socket}`, '--write', out]);
    expect(again.status, again.stderr).toBe(0);
    expect(existsSync(join(out, 'federated', `${FOREIGN}.pem`))).toBe(false);
    expect(existsSync(join(out, 'federated', `${HOSTED}.pem`))).toBe(true);
    // the entry keeps its list; an unrelated update still works, a new unknown name does not
    const unrelated = await cairn('entry', 'update', entryId, '--hint', 'web');
    expect(unrelated.status, unrelated.stderr).toBe(0);
    expect(errors).toEqual([]);
    // each change is in the audit log, with who did it
    const audited = async (event: string) => {
      const r = await cairn('audit', 'search', '--event', event, '--json');
      expect(r.status, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { entry: Record<string, unknown> }[]).map((e) => e.entry);
    };
    const sets = await waitFor('federation.bundle_set in the audit log', async () => ((await audited('federation.bundle_set')).length >= 2 ? audited('federation.bundle_set') : undefined), 30_000);
    expect(sets.map((e) => [e.trustDomain, e.foreignTrustDomain, e.source, e.sequence, e.actor])).toEqual([
      [TD, FOREIGN, 'static', 5, 'bootstrap'],
      [TD, FOREIGN, 'static', 6, 'bootstrap'],
    ]);
    const deletes = await waitFor('federation.bundle_deleted in the audit log', async () => ((await audited('federation.bundle_deleted')).length > 0 ? audited('federation.bundle_deleted') : undefined), 30_000);
    expect(deletes.map((e) => [e.foreignTrustDomain, e.forced, e.entriesFederating])).toEqual([[FOREIGN, true, 1]]);
  });

  it('relationships: the CA polls https_spiffe and https_web endpoints, keeps the last good bundle, refuses wrong documents, reports status', { timeout: 240_000 }, async () => {
    const REMOTE = 'remote.test';
    const remoteCa = await testCaCertificate(REMOTE);
    const remoteCa2 = await testCaCertificate(REMOTE);
    const remoteBundle = (sequence: number, cas: TestCaCert[]): string =>
      JSON.stringify({ spiffe_sequence: sequence, spiffe_refresh_hint: 5, keys: cas.map((c) => ({ ...publicJwkOf(c.publicKey), use: 'x509-svid', x5c: [c.der.toString('base64')] })) });
    // the foreign endpoint: an https server authenticating with an X.509-SVID of remote.test
    const endpoint = await svidOf(remoteCa, `spiffe://${REMOTE}/cairn/bundle-endpoint`);
    let answer: { status: number; body: string; headers?: Record<string, string> } = { status: 200, body: remoteBundle(2, [remoteCa, remoteCa2]) };
    let connections = 0;
    let requests = 0;
    const server = createServer({ cert: endpoint.cert, key: endpoint.key }, (_req, res) => {
      requests++;
      res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers }).end(answer.body);
    });
    server.on('connection', () => connections++);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/bundle`;
    const create = (...extra: string[]) => cairn('federation', 'create', '--trust-domain', TD, '--foreign', REMOTE, '--bundle-endpoint', url, '--profile', 'https_spiffe', ...extra);
    const show = async (foreign = REMOTE) => {
      const r = await cairn('federation', 'show', '--trust-domain', TD, '--foreign', foreign, '--json');
      expect(r.status, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as { sequence: number | null; lastRefreshAt: string | null; lastError: string | null; failures: number };
    };

    // refusals: what the CA would fetch must be https without credentials; the profile's inputs
    const plain = await cairn('federation', 'create', '--trust-domain', TD, '--foreign', REMOTE, '--bundle-endpoint', 'http://127.0.0.1:1/b', '--profile', 'https_web');
    expect(plain.stderr).toMatch(/^error: invalid_request: --bundle-endpoint must be an https URL .*not http$/m);
    const creds = await cairn('federation', 'create', '--trust-domain', TD, '--foreign', REMOTE, '--bundle-endpoint', 'https://user:pw@127.0.0.1:1/b', '--profile', 'https_web');
    expect(creds.stderr).toMatch(/^error: invalid_request: --bundle-endpoint must not carry credentials/m);
    const noBootstrap = await create();
    expect(noBootstrap.stderr).toMatch(/^error: invalid_request: https_spiffe needs a bootstrap bundle of remote\.test \(--bundle-file\)/m);
    const mixed = await cairn('federation', 'create', '--trust-domain', TD, '--foreign', REMOTE, '--bundle-endpoint', url, '--profile', 'https_web', '--bundle-file', join(dir, 'x'));
    expect(mixed.status).toBe(2);
    expect(mixed.stderr).toMatch(/^error: --bundle-file is for --profile https_spiffe/m);
    // an admin cannot point the CA at a host the operator did not allow (the cloud metadata address here)
    const metadata = await cairn('federation', 'create', '--trust-domain', TD, '--foreign', REMOTE, '--bundle-endpoint', 'https://169.254.169.254/latest', '--profile', 'https_web');
    expect(metadata.stderr).toMatch(/^error: federation_endpoint_not_allowed: 169\.254\.169\.254 is not among the bundle endpoints this CA may fetch \(--federation-endpoints 127\.0\.0\.1,localhost\)/m);
    const badProfile = await cairn('federation', 'create', '--trust-domain', TD, '--foreign', REMOTE, '--bundle-endpoint', url, '--profile', 'https');
    expect(badProfile.stderr).toMatch(/^error: --profile must be one of https_spiffe, https_web \(got "https"\)/m);

    const created = await create('--bundle-file', file('remote-1.json', remoteBundle(1, [remoteCa])));
    expect(created.status, created.stderr).toBe(0);
    const refreshed = await waitFor('the first refresh', async () => ((await show()).sequence === 2 ? show() : undefined), 30_000);
    expect(refreshed.lastRefreshAt).not.toBeNull();
    expect(refreshed.lastError).toBeNull();
    const seen = messages.length;
    const upd = await cairn('entry', 'update', entryId, '--federates-with', REMOTE, '--federates-with', HOSTED);
    expect(upd.status, upd.stderr).toBe(0);
    await waitFor('the refreshed remote bundle on the open stream', () => messages.slice(seen).find((m) => federatedOf(m, REMOTE)?.length === 2), 30_000);
    // a bundle the relationship owns is not set or deleted by hand
    const byHand = await cairn('bundle', 'set', '--trust-domain', TD, '--foreign', REMOTE, '--file', join(dir, 'remote-1.json'));
    expect(byHand.stderr).toMatch(/^error: conflict: home\.test fetches the bundle of remote\.test from its bundle endpoint/m);

    // every wrong answer is reported and the last good bundle stays
    const failsWith = async (what: string, re: RegExp) => {
      const before = connections;
      const st = await waitFor(what, async () => {
        const s = await show();
        return connections > before && s.lastError !== null && re.test(s.lastError) ? s : undefined;
      }, 40_000);
      expect(st.sequence).toBe(2);
      expect(st.failures).toBeGreaterThan(0);
    };
    answer = { status: 200, body: remoteBundle(3, [(await testCaCertificate('elsewhere.test'))]) };
    await failsWith('a bundle of another trust domain refused', /is the CA of spiffe:\/\/elsewhere\.test, not of spiffe:\/\/remote\.test/);
    answer = { status: 200, body: remoteBundle(1, [remoteCa]) };
    await failsWith('an older sequence refused', /spiffe_sequence 1 is older than the 2 held/);
    answer = { status: 302, body: '', headers: { location: 'https://169.254.169.254/latest/meta-data' } };
    await failsWith('a redirect not followed', /HTTP 302 to https:\/\/169\.254\.169\.254\/latest\/meta-data: redirects are not followed/);
    answer = { status: 200, body: 'x'.repeat(300 * 1024) };
    await failsWith('an oversized answer refused', /larger than 256 KiB/);
    const impostor = await svidOf(remoteCa, `spiffe://${REMOTE}/not-the-endpoint`);
    server.setSecureContext({ cert: impostor.cert, key: impostor.key });
    answer = { status: 200, body: remoteBundle(3, [remoteCa2]) };
    const requestsBefore = requests;
    await failsWith('an endpoint with another SPIFFE ID refused', /presented spiffe:\/\/remote\.test\/not-the-endpoint, not spiffe:\/\/remote\.test\/cairn\/bundle-endpoint/);
    const stranger = await svidOf(await testCaCertificate(REMOTE), `spiffe://${REMOTE}/cairn/bundle-endpoint`);
    server.setSecureContext({ cert: stranger.cert, key: stranger.key });
    await failsWith('an SVID from a CA outside the bundle refused', /cannot fetch the bundle: .*(certificate|issuer)/i);
    // an endpoint that does not authenticate gets no request at all
    expect(requests).toBe(requestsBefore);
    expect(messages.at(-1) && federatedOf(messages.at(-1)!, REMOTE)?.length).toBe(2);
    // the endpoint goes away: the last good bundle is kept and the status says so
    server.setSecureContext({ cert: endpoint.cert, key: endpoint.key });
    server.close();
    server.closeAllConnections();
    await waitFor('the endpoint away in the status', async () => {
      const st = await show();
      return st.lastError && /cannot fetch the bundle: .*ECONNREFUSED/.test(st.lastError) ? st : undefined;
    }, 40_000);
    expect(JSON.parse((await cairn('bundle', 'show', '--trust-domain', TD, '--foreign', REMOTE, '--format', 'spiffe')).stdout).spiffe_sequence).toBe(2);
    // back, with a rotated bundle (the key the endpoint's SVID chains to is now remoteCa2's successor set)
    const back = await svidOf(remoteCa2, `spiffe://${REMOTE}/cairn/bundle-endpoint`);
    server.setSecureContext({ cert: back.cert, key: back.key });
    await new Promise<void>((resolve) => server.listen(Number(new URL(url).port), '127.0.0.1', resolve));
    const seenRotation = messages.length;
    answer = { status: 200, body: remoteBundle(3, [remoteCa2]) };
    const recovered = await waitFor('recovery with sequence 3', async () => ((await show()).sequence === 3 ? show() : undefined), 40_000);
    expect([recovered.lastError, recovered.failures]).toEqual([null, 0]);
    const rotated = await waitFor('the rotation on the open stream', () => messages.slice(seenRotation).find((m) => federatedOf(m, REMOTE)?.length === 1), 30_000);
    expect(federatedOf(rotated, REMOTE)![0]!.raw.equals(remoteCa2.der)).toBe(true);

    // https_web: a web PKI certificate for the endpoint's address, authenticated with --ca-file roots
    const WEB = 'webby.test';
    const webCa = await testCaCertificate(WEB);
    const pki = join(dir, 'pki');
    execFileSync('mkdir', ['-p', pki]);
    const ossl = (...args: string[]) => execFileSync('openssl', args, { cwd: pki, stdio: ['ignore', 'pipe', 'pipe'] });
    ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'root.key', '-out', 'root.pem', '-subj', '/CN=test web root', '-days', '1', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
    ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'web.key', '-out', 'web.csr', '-subj', '/CN=127.0.0.1');
    writeFileSync(join(pki, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    ossl('x509', '-req', '-in', 'web.csr', '-CA', 'root.pem', '-CAkey', 'root.key', '-CAcreateserial', '-out', 'web.pem', '-days', '1', '-extfile', 'ext.cnf');
    const web = createServer({ cert: readFileSync(join(pki, 'web.pem')), key: readFileSync(join(pki, 'web.key')) }, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ spiffe_sequence: 7, spiffe_refresh_hint: 5, keys: [{ ...publicJwkOf(webCa.publicKey), use: 'x509-svid', x5c: [webCa.der.toString('base64')] }] }));
    });
    servers.push(web);
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    const webUrl = `https://127.0.0.1:${(web.address() as AddressInfo).port}/`;
    const webCreated = await cairn('federation', 'create', '--trust-domain', TD, '--foreign', WEB, '--bundle-endpoint', webUrl, '--profile', 'https_web', '--ca-file', join(pki, 'root.pem'));
    expect(webCreated.status, webCreated.stderr).toBe(0);
    await waitFor('the https_web refresh', async () => ((await show(WEB)).sequence === 7 ? true : undefined), 30_000);
    // without the roots, the system's do not know this certificate: refused, reported
    const SYS = 'webby2.test';
    expect((await cairn('federation', 'create', '--trust-domain', TD, '--foreign', SYS, '--bundle-endpoint', webUrl, '--profile', 'https_web')).status).toBe(0);
    await waitFor('the unknown web root reported', async () => ((await show(SYS)).lastError?.match(/cannot fetch the bundle: .*(certificate|issuer)/i) ? true : undefined), 30_000);
    const listed = JSON.parse((await cairn('federation', 'list', '--trust-domain', TD, '--json')).stdout);
    expect(listed.relationships.map((r: { foreignTrustDomain: string; profile: string; sequence: number | null }) => [r.foreignTrustDomain, r.profile, r.sequence])).toEqual([
      [REMOTE, 'https_spiffe', 3],
      [WEB, 'https_web', 7],
      [SYS, 'https_web', null],
    ]);

    // ending a relationship in use needs --force; then polling stops and workloads lose the bundle
    const inUse = await cairn('federation', 'delete', '--trust-domain', TD, '--foreign', REMOTE);
    expect(inUse.stderr).toMatch(/^error: federated_bundle_in_use: .*pass --force/m);
    const beforeDelete = messages.length;
    const deleted = await cairn('federation', 'delete', '--trust-domain', TD, '--foreign', REMOTE, '--force');
    expect(deleted.status, deleted.stderr).toBe(0);
    await waitFor('the stream without the remote bundle', () => messages.slice(beforeDelete).find((m) => !federatedOf(m, REMOTE)), 30_000);
    const gone = await cairn('federation', 'show', '--trust-domain', TD, '--foreign', REMOTE);
    expect(gone.stderr).toMatch(/^error: not_found: trust domain home\.test has no federation relationship with remote\.test/m);
    expect(errors).toEqual([]);
    // the refreshes are audit entries of the CA itself; the relationships, of the admin
    const search = async (event: string) => (JSON.parse((await cairn('audit', 'search', '--event', event, '--json')).stdout) as { entry: Record<string, unknown> }[]).map((e) => e.entry);
    const refreshes = await waitFor('refreshes in the audit log', async () => {
      const found = (await search('federation.bundle_set')).filter((e) => e.foreignTrustDomain === REMOTE);
      return found.some((e) => e.sequence === 3) ? found : undefined;
    }, 30_000);
    expect(refreshes.map((e) => [e.source, e.sequence, e.actor])).toEqual([['endpoint', 1, 'bootstrap'], ['endpoint', 2, 'cairn'], ['endpoint', 3, 'cairn']]);
    expect((await search('federation.relationship_created')).map((e) => [e.foreignTrustDomain, e.profile])).toEqual([[REMOTE, 'https_spiffe'], [WEB, 'https_web'], [SYS, 'https_web']]);
  });
});
