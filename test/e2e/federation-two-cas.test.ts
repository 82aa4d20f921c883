import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { derToPem } from '../../spiffe/bundle/bundle.js';
import { splitDerCertificates } from '../../spiffe/svid/x509.js';
import { WorkloadApiClient } from '../../workload-api/client.js';
import { startCaOnTestStore } from '../support/ca-process.js';
import { storeKind } from '../support/db.js';
import { firstMessage, grpc, grpcWorkloadClient, unary, securityHeader, type GrpcWorkloadClient, type X509SvidWire } from '../support/grpc-workload.js';
import { opensslVerify } from '../support/openssl.js';
import { freePort, runCairnAsync, spawnCairn, type Spawned } from '../support/processes.js';
import { waitFor } from '../support/wait.js';

interface X509Message {
  svids: X509SvidWire[];
  federated_bundles: Record<string, Buffer>;
}
interface BundlesMessage {
  bundles: Record<string, Buffer>;
}
interface Relationship {
  sequence: number | null;
  lastRefreshAt: string | null;
  lastAttemptAt: string | null;
  lastError: string | null;
  failures: number;
}

type Ca = Awaited<ReturnType<typeof startCaOnTestStore>>;

/** One side of the federation: a CA process with its own database, its trust domain, an agent and a workload. */
interface Side {
  readonly td: string;
  readonly other: string;
  readonly dir: string;
  readonly socket: string;
  readonly endpointPort: number;
  ca: Ca;
  env: Record<string, string | undefined>;
  agent?: Spawned;
  grpc?: GrpcWorkloadClient;
  ours?: WorkloadApiClient;
  /** The workload's open FetchX509SVID stream (grpc-js) and what it received. */
  svidStream?: grpc.ClientReadableStream<X509Message>;
  svidMessages: X509Message[];
  /** The workload's open FetchX509Bundles stream (grpc-js). */
  bundleStream?: grpc.ClientReadableStream<BundlesMessage>;
  bundleMessages: BundlesMessage[];
  errors: grpc.ServiceError[];
}

const certsOf = (der: Buffer | Uint8Array | undefined): X509Certificate[] => (der === undefined ? [] : splitDerCertificates(Buffer.from(der)).map((d) => new X509Certificate(d)));
const pemOf = (der: Buffer | Uint8Array | undefined): string => certsOf(der).map((c) => derToPem(c.raw)).join('');

/**
 * The proof of SPIFFE federation (issue 15): two `cairn ca start` processes with separate databases,
 * each hosting one trust domain with its own https_spiffe bundle endpoint and a relationship to the
 * other's endpoint; an agent for each and one workload each whose entry federates with the other trust
 * domain. Judged by independent parties: grpc-js (not our client) on the sockets, openssl
 * s_server/s_client doing mutual TLS with nothing but the files each workload got from its own socket.
 */
describe(`federation between two CAs: a.test and b.test (${storeKind()} store)`, () => {
  const root = mkdtempSync(join(tmpdir(), 'cairn-fed2-'));
  chmodSync(root, 0o755);
  const sides: Side[] = [];
  const children: ChildProcess[] = [];
  const watchers: Spawned[] = [];
  let a!: Side;
  let b!: Side;

  const cairn = (side: Side, ...args: string[]) => runCairnAsync(args, side.env);
  const ok = async (side: Side, ...args: string[]) => {
    const r = await cairn(side, ...args);
    expect(r.status, `cairn ${args.join(' ')}: ${r.stderr}`).toBe(0);
    return r;
  };
  const show = async (side: Side): Promise<Relationship> =>
    JSON.parse((await ok(side, 'federation', 'show', '--trust-domain', side.td, '--foreign', side.other, '--json')).stdout) as Relationship;
  /** What the foreign CA itself publishes (its plain-http public endpoint), to compare with. */
  const publishedPem = async (side: Side): Promise<string> => (await fetch(`${side.ca.httpUrl}/td/${side.td}/bundle.pem`)).text();
  const publishedJwks = async (side: Side): Promise<string[]> =>
    ((await (await fetch(`${side.ca.httpUrl}/td/${side.td}/bundle`)).json()) as { keys: { use: string; kid?: string }[] }).keys.filter((k) => k.use === 'jwt-svid').map((k) => k.kid!).sort();

  const openStreams = (side: Side): void => {
    side.grpc = grpcWorkloadClient(side.socket);
    side.ours = new WorkloadApiClient(`unix://${side.socket}`);
    side.svidStream = side.grpc.FetchX509SVID!({}, securityHeader()) as grpc.ClientReadableStream<X509Message>;
    side.svidStream.on('data', (m: X509Message) => side.svidMessages.push(m));
    side.svidStream.on('error', (e: grpc.ServiceError) => side.errors.push(e));
    side.bundleStream = side.grpc.FetchX509Bundles!({}, securityHeader()) as grpc.ClientReadableStream<BundlesMessage>;
    side.bundleStream.on('data', (m: BundlesMessage) => side.bundleMessages.push(m));
    side.bundleStream.on('error', (e: grpc.ServiceError) => side.errors.push(e));
  };

  beforeAll(async () => {
    for (const [td, other] of [['a.test', 'b.test'], ['b.test', 'a.test']] as const) {
      const dir = join(root, td);
      mkdirSync(dir);
      // each CA allows only loopback endpoints (the other CA's); it would refuse anything else
      const ca = await startCaOnTestStore(join(dir, 'ca'), { CAIRN_FEDERATION_ENDPOINTS: '127.0.0.1' });
      const env = { CAIRN_SERVER: ca.httpUrl, CAIRN_ADMIN_TOKEN: readFileSync(join(dir, 'ca', 'admin-token'), 'utf8').trim(), CAIRN_DATA_DIR: join(dir, 'cli') };
      sides.push({ td, other, dir, socket: join(dir, 'agent.sock'), endpointPort: await freePort(), ca, env, svidMessages: [], bundleMessages: [], errors: [] });
    }
    [a, b] = sides as [Side, Side];
    // each trust domain: its bundle endpoint (https_spiffe, the default profile) and a 5 s refresh hint
    for (const side of sides) {
      await ok(side, 'trust-domain', 'create', side.td, '--bundle-endpoint-listen', `127.0.0.1:${side.endpointPort}`, '--bundle-refresh-hint', '5s');
    }
    // each federates with the other: the bootstrap bundle is what the other CA's operator hands over
    for (const side of sides) {
      writeFileSync(join(side.dir, `${side.td}.bootstrap.json`), (await ok(side, 'bundle', 'show', '--trust-domain', side.td, '--format', 'spiffe')).stdout);
    }
    for (const side of sides) {
      const peer = side === a ? b : a;
      const bootstrap = join(peer.dir, `${peer.td}.bootstrap.json`);
      await ok(side, 'federation', 'create', '--trust-domain', side.td, '--foreign', peer.td, '--bundle-endpoint', `https://127.0.0.1:${peer.endpointPort}`, '--profile', 'https_spiffe', '--bundle-file', bootstrap);
    }
    // an agent each, and one workload (this test process's uid) whose entry federates with the other trust domain
    for (const side of sides) {
      const tok = await side.ca.admin<{ token: string; spiffeId: string }>('/v1/tokens', { trustDomain: side.td });
      expect(tok.status).toBe(201);
      await ok(side, 'entry', 'create', '--spiffe-id', `spiffe://${side.td}/workload`, '--parent-id', tok.body.spiffeId, '--selector', `unix:uid:${process.getuid!()}`, '--federates-with', side.other);
      side.agent = spawnCairn(['agent', 'start', '--data-dir', join(side.dir, 'agent'), '--socket', side.socket, '--join-token', tok.body.token], { CAIRN_DATA_DIR: undefined, CAIRN_SERVER: undefined });
    }
    for (const side of sides) {
      await side.agent!.waitFor(/serving the Workload API/, 60_000);
      const healthy = await runCairnAsync(['agent', 'healthcheck', '--socket', side.socket, '--wait', '60s']);
      expect(healthy.status, healthy.stderr).toBe(0);
      // the streams open once the workload has its SVID (before, the Workload API answers PermissionDenied)
      const probe = new WorkloadApiClient(`unix://${side.socket}`);
      await waitFor(`${side.td}'s workload SVID`, () => probe.fetchX509Context().then(() => true, () => undefined), 60_000);
      probe.close();
      openStreams(side);
    }
  }, 240_000);

  afterAll(async () => {
    for (const w of watchers) await w.stop();
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    for (const side of sides) {
      side.svidStream?.cancel();
      side.bundleStream?.cancel();
      side.grpc?.close();
      side.ours?.close();
      await side.agent?.stop();
      await side.ca.close();
    }
    rmSync(root, { recursive: true, force: true });
  });

  it('each trust domain publishes its bundle on its https_spiffe endpoint with the refresh hint it was given (--bundle-refresh-hint)', { timeout: 60_000 }, async () => {
    for (const side of sides) {
      const td = JSON.parse((await ok(side, 'trust-domain', 'show', side.td, '--json')).stdout) as Record<string, unknown>;
      expect(td).toMatchObject({ bundleRefreshHintSeconds: 5, bundleEndpointUrl: `https://127.0.0.1:${side.endpointPort}`, bundleEndpointProfile: 'https_spiffe', bundleEndpointSpiffeId: `spiffe://${side.td}/cairn/bundle-endpoint` });
      expect((await ok(side, 'trust-domain', 'show', side.td)).stdout).toMatch(/^bundle refresh hint +5s$/m);
      // the endpoint itself, authenticated as a peer does: the trust domain's CA and the endpoint's SPIFFE ID
      const doc = await waitFor(`${side.td}'s bundle endpoint`, () => fetchEndpoint(side.endpointPort, readFileSync(join(side.dir, `${side.td}.bootstrap.json`), 'utf8'), `spiffe://${side.td}/cairn/bundle-endpoint`).catch(() => undefined), 30_000);
      expect(doc.spiffe_refresh_hint).toBe(5);
      expect(doc.spiffe_sequence).toBe(1);
    }
    // out of bounds: refused by the CLI (naming the flag) and by the API
    const cli = await cairn(a, 'trust-domain', 'update', 'a.test', '--bundle-refresh-hint', '2s');
    expect(cli.status).toBe(2);
    expect(cli.stderr).toMatch(/^error: --bundle-refresh-hint must be between 5s and 1d \(got "2s"\)/m);
    const api = await fetch(`${a.ca.httpUrl}/v1/trust-domains/a.test`, { method: 'PATCH', headers: { authorization: `Bearer ${a.env.CAIRN_ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ bundleRefreshHintSeconds: 86401 }) });
    expect(api.status).toBe(400);
    expect(await api.json()).toMatchObject({ code: 'invalid_ttl', message: 'bundleRefreshHintSeconds must be between 5 and 86400 seconds' });
  });

  it('each workload gets the other trust domain\'s bundle from its own agent: FetchX509SVID, FetchX509Bundles, FetchJWTBundles', { timeout: 120_000 }, async () => {
    for (const side of sides) {
      const peer = side === a ? b : a;
      const foreignId = `spiffe://${peer.td}`;
      // fetched from the peer's bundle endpoint (the bootstrap is sequence 1 too, so wait for a refresh)
      const st = await waitFor(`${side.td}'s first refresh from ${peer.td}'s endpoint`, async () => {
        const s = await show(side);
        return s.lastRefreshAt !== null ? s : undefined;
      }, 60_000);
      expect([st.lastError, st.failures]).toEqual([null, 0]);
      const expected = await publishedPem(peer);
      expect(expected).toMatch(/BEGIN CERTIFICATE/);

      const svid = await waitFor(`${side.td}'s stream with ${peer.td}'s bundle`, () => side.svidMessages.find((m) => m.federated_bundles[foreignId] !== undefined), 60_000);
      expect(svid.svids.map((s) => s.spiffe_id)).toEqual([`spiffe://${side.td}/workload`]);
      expect(Object.keys(svid.federated_bundles)).toEqual([foreignId]);
      expect(pemOf(svid.federated_bundles[foreignId])).toBe(expected);
      // the own bundle is the own trust domain's, not the peer's
      expect(pemOf(svid.svids[0]!.bundle)).toBe(await publishedPem(side));

      const x509 = await waitFor(`${side.td}'s FetchX509Bundles stream with ${peer.td}`, () => side.bundleMessages.find((m) => m.bundles[foreignId] !== undefined), 30_000);
      expect(Object.keys(x509.bundles).sort()).toEqual([`spiffe://${side.td}`, foreignId].sort());
      expect(pemOf(x509.bundles[foreignId])).toBe(expected);

      const jwt = await firstMessage<BundlesMessage>(side.grpc!, 'FetchJWTBundles');
      expect(Object.keys(jwt.bundles).sort()).toEqual([`spiffe://${side.td}`, foreignId].sort());
      const kids = (JSON.parse(Buffer.from(jwt.bundles[foreignId]!).toString('utf8')) as { keys: { kid: string }[] }).keys.map((k) => k.kid).sort();
      expect(kids).toEqual(await publishedJwks(peer));
      expect(kids.length).toBeGreaterThan(0);
    }
    expect([...a.errors, ...b.errors]).toEqual([]);
  });

  it('openssl s_server / s_client: mutual TLS between an a.test and a b.test SVID with only what each got from its own socket, and not without the federated bundle', { timeout: 120_000 }, async () => {
    // a.test: cairn svid fetch --write; b.test: cairn svid watch --write (files kept current)
    const outA = join(a.dir, 'id');
    await ok(a, 'svid', 'fetch', '--socket', `unix://${a.socket}`, '--write', outA);
    const outB = join(b.dir, 'id');
    const watch = spawnCairn(['svid', 'watch', '--socket', `unix://${b.socket}`, '--write', outB], {});
    watchers.push(watch);
    await waitFor('svid watch output of b.test', () => (existsSync(join(outB, 'federated', 'a.test.pem')) && existsSync(join(outB, 'svid.key')) ? true : undefined), 60_000);
    expect(readFileSync(join(outA, 'federated', 'b.test.pem'), 'utf8')).toBe(await publishedPem(b));
    expect(readFileSync(join(outB, 'federated', 'a.test.pem'), 'utf8')).toBe(await publishedPem(a));

    const handshake = async (serverCa: string, clientCa: string): Promise<{ ok: boolean; client: string; server: string }> => {
      const port = await freePort();
      const server = spawn('openssl', [
        's_server', '-accept', `127.0.0.1:${port}`, '-cert', join(outA, 'svid.pem'), '-key', join(outA, 'svid.key'),
        '-CAfile', serverCa, '-Verify', '4', '-verify_return_error', '-www',
      ], { stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(server);
      let serverOut = '';
      server.stdout!.on('data', (d: Buffer) => (serverOut += d.toString()));
      server.stderr!.on('data', (d: Buffer) => (serverOut += d.toString()));
      await waitFor('s_server accepting', () => (/ACCEPT/.test(serverOut) ? true : undefined), 20_000);
      const client = spawnSync('openssl', [
        's_client', '-connect', `127.0.0.1:${port}`, '-cert', join(outB, 'svid.pem'), '-key', join(outB, 'svid.key'),
        '-CAfile', clientCa, '-verify_return_error', '-ign_eof',
      ], { input: 'GET / HTTP/1.0\r\n\r\n', encoding: 'utf8', timeout: 30_000 });
      server.kill('SIGKILL');
      const out = `${client.stdout}\n${client.stderr}`;
      // the server answers its status page only after the handshake, client certificate included, verified
      return { ok: client.status === 0 && /HTTP\/1\.0 200 ok/.test(out) && /Verify return code: 0 \(ok\)/.test(out), client: out, server: serverOut };
    };

    const both = await handshake(join(outA, 'federated', 'b.test.pem'), join(outB, 'federated', 'a.test.pem'));
    expect(both.ok, `${both.client}\n--- server ---\n${both.server}`).toBe(true);
    // the client was shown the a.test SVID, and the server's status page the b.test SVID it verified
    const shown = splitPem(both.client).map((d) => new X509Certificate(d).subjectAltName);
    expect(shown[0]).toBe('URI:spiffe://a.test/workload');
    expect(shown.at(-1)).toBe('URI:spiffe://b.test/workload');
    // without the federated bundle, each side refuses the other: the client (its own bundle only) …
    const clientOwn = await handshake(join(outA, 'federated', 'b.test.pem'), join(outB, 'bundle.pem'));
    expect(clientOwn.ok).toBe(false);
    expect(clientOwn.client).toMatch(/unable to get local issuer certificate|self.signed|verify error/i);
    // … and the server (its own bundle only)
    const serverOwn = await handshake(join(outA, 'bundle.pem'), join(outB, 'federated', 'a.test.pem'));
    expect(serverOwn.ok).toBe(false);
    expect(`${serverOwn.server}\n${serverOwn.client}`).toMatch(/unable to get local issuer certificate|unknown ca|certificate verify failed|verify error/i);
  });

  it('a JWT-SVID of b.test validates through a.test\'s agent (ValidateJWTSVID), and one of a.test through b.test\'s', { timeout: 60_000 }, async () => {
    const [fromB] = await b.ours!.fetchJwtSvids(['a-gateway']);
    expect(fromB!.spiffeId).toBe('spiffe://b.test/workload');
    const validated = await a.ours!.validateJwtSvid(fromB!.token, 'a-gateway');
    expect(validated.spiffeId).toBe('spiffe://b.test/workload');
    // grpc-js too (not our client)
    const viaGrpc = await unary<{ spiffe_id: string }>(a.grpc!, 'ValidateJWTSVID', { svid: fromB!.token, audience: 'a-gateway' });
    expect(viaGrpc.spiffe_id).toBe('spiffe://b.test/workload');
    await expect(a.ours!.validateJwtSvid(fromB!.token, 'someone-else')).rejects.toThrow(/audience/i);
    const [fromA] = await a.ours!.fetchJwtSvids(['b-gateway']);
    expect((await b.ours!.validateJwtSvid(fromA!.token, 'b-gateway')).spiffeId).toBe('spiffe://a.test/workload');
  });

  it('b.test\'s CA down: a.test keeps the last good bundle and federation show says why; back up, the refresh recovers', { timeout: 180_000 }, async () => {
    const before = await show(a);
    const held = await publishedPem(b);
    await b.ca.stop();
    const stoppedAt = new Date();
    const failing = await waitFor('the endpoint away in a.test\'s status', async () => {
      const s = await show(a);
      return s.failures > 0 && s.lastError && /cannot fetch the bundle: .*ECONNREFUSED/.test(s.lastError) ? s : undefined;
    }, 60_000);
    expect(failing.sequence).toBe(before.sequence);
    // the last refresh is the last success, from before the endpoint went away
    expect(new Date(failing.lastRefreshAt!).getTime()).toBeLessThanOrEqual(stoppedAt.getTime());
    expect(new Date(failing.lastAttemptAt!).getTime()).toBeGreaterThan(new Date(failing.lastRefreshAt!).getTime());
    const text = (await ok(a, 'federation', 'show', '--trust-domain', 'a.test', '--foreign', 'b.test')).stdout;
    expect(text).toMatch(/^last error: +cannot fetch the bundle: .*ECONNREFUSED.*keeping the last good bundle\)$/m);
    expect(text).toMatch(new RegExp(`^last refresh: +${failing.lastRefreshAt!.replace(/[.]/g, '\\.')}$`, 'm'));
    // the workload still holds b.test's bundle (new calls too, not only the open stream)
    const x509 = await firstMessage<BundlesMessage>(a.grpc!, 'FetchX509Bundles');
    expect(pemOf(x509.bundles['spiffe://b.test'])).toBe(held);
    expect(pemOf(a.svidMessages.at(-1)!.federated_bundles['spiffe://b.test'])).toBe(held);

    // an operator's refresh now: it fails the same way, says so and exits non-zero
    const refused = await cairn(a, 'federation', 'refresh', '--trust-domain', 'a.test', '--foreign', 'b.test');
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/^error: refresh_failed: the bundle of b\.test could not be refreshed \(keeping the last good one\): cannot fetch the bundle: .*ECONNREFUSED/m);
    expect(refused.stdout).toMatch(/^sequence: +1$/m);
    const none = await cairn(a, 'federation', 'refresh', '--trust-domain', 'a.test', '--foreign', 'c.test');
    expect(none.stderr).toMatch(/^error: not_found: trust domain a\.test has no federation relationship with c\.test/m);

    await b.ca.start();
    const recovered = await waitFor('a.test\'s relationship recovered', async () => {
      const s = await show(a);
      return s.lastError === null && s.failures === 0 && new Date(s.lastRefreshAt!) > stoppedAt ? s : undefined;
    }, 90_000);
    expect(recovered.sequence).toBe(before.sequence);
    // refreshed on demand: at once, not at the next due time
    const refreshed = await cairn(a, 'federation', 'refresh', '--trust-domain', 'a.test', '--foreign', 'b.test', '--json');
    expect(refreshed.status, refreshed.stderr).toBe(0);
    const after = JSON.parse(refreshed.stdout) as Relationship;
    expect(after.lastError).toBeNull();
    expect(new Date(after.lastRefreshAt!).getTime()).toBeGreaterThan(new Date(recovered.lastRefreshAt!).getTime());
  });

  it('a key rotation at b.test (authority prepare, then activate) reaches a.test\'s workload on its open streams', { timeout: 180_000 }, async () => {
    const seenSvid = a.svidMessages.length;
    const seenBundles = a.bundleMessages.length;
    const oldPem = await publishedPem(b);
    const prepared = JSON.parse((await ok(b, 'authority', 'prepare', '--trust-domain', 'b.test', '--kind', 'x509', '--json')).stdout) as { id: string };
    expect(prepared.id).toBeTruthy();
    const rotatedPem = await publishedPem(b);
    expect(certsOf(Buffer.concat(splitPem(rotatedPem))).length).toBe(2);
    const onStream = await waitFor('b.test\'s new CA on a.test\'s FetchX509SVID stream', () => a.svidMessages.slice(seenSvid).find((m) => pemOf(m.federated_bundles['spiffe://b.test']) === rotatedPem), 60_000);
    expect(onStream.svids[0]!.spiffe_id).toBe('spiffe://a.test/workload');
    await waitFor('b.test\'s new CA on a.test\'s FetchX509Bundles stream', () => a.bundleMessages.slice(seenBundles).find((m) => pemOf(m.bundles['spiffe://b.test']) === rotatedPem), 30_000);
    expect(rotatedPem.startsWith(oldPem) || rotatedPem.endsWith(oldPem)).toBe(true);

    // activate: b.test now signs with the new key; what a.test's workload holds verifies those SVIDs
    await ok(b, 'authority', 'activate', '--trust-domain', 'b.test', '--kind', 'x509');
    const minted = join(b.dir, 'minted');
    await ok(b, 'x509', 'mint', '--spiffe-id', 'spiffe://b.test/after-rotation', '--write', minted);
    const newLeaf = readFileSync(join(minted, 'svid.pem'), 'utf8');
    const federated = pemOf(a.svidMessages.at(-1)!.federated_bundles['spiffe://b.test']);
    expect(opensslVerify(newLeaf, federated)).toMatch(/OK/);
    // and the bundle a.test held before the rotation would not have
    expect(() => opensslVerify(newLeaf, oldPem)).toThrow();
    expect([...a.errors, ...b.errors]).toEqual([]);
  });

  it('a relationship may point at a trust domain the same CA hosts: no bootstrap bundle is needed, the CA knows it', { timeout: 120_000 }, async () => {
    const port = await freePort();
    await ok(a, 'trust-domain', 'create', 'a2.test', '--bundle-endpoint-listen', `127.0.0.1:${port}`, '--bundle-refresh-hint', '5s');
    // before, this was refused: "https_spiffe needs a bootstrap bundle of a2.test"
    const created = await cairn(a, 'federation', 'create', '--trust-domain', 'a.test', '--foreign', 'a2.test', '--bundle-endpoint', `https://127.0.0.1:${port}`, '--profile', 'https_spiffe');
    expect(created.status, created.stderr).toBe(0);
    const st = await waitFor('the hosted trust domain refreshed from its own endpoint', async () => {
      const r = JSON.parse((await ok(a, 'federation', 'show', '--trust-domain', 'a.test', '--foreign', 'a2.test', '--json')).stdout) as Relationship;
      return r.lastRefreshAt !== null ? r : undefined;
    }, 60_000);
    expect([st.lastError, st.sequence]).toEqual([null, 1]);
    expect((await ok(a, 'bundle', 'show', '--trust-domain', 'a.test', '--foreign', 'a2.test')).stdout).toBe(await (await fetch(`${a.ca.httpUrl}/td/a2.test/bundle.pem`)).text());
    // a trust domain that is neither hosted nor bootstrapped is still refused
    const unknown = await cairn(a, 'federation', 'create', '--trust-domain', 'a.test', '--foreign', 'nowhere.test', '--bundle-endpoint', `https://127.0.0.1:${port}`, '--profile', 'https_spiffe');
    expect(unknown.stderr).toMatch(/^error: invalid_request: https_spiffe needs a bootstrap bundle of nowhere\.test/m);
  });
});

/** GET / of an https_spiffe bundle endpoint, authenticated by the trust domain's bundle and the endpoint's SPIFFE ID. */
function fetchEndpoint(port: number, bundleJson: string, spiffeId: string): Promise<{ spiffe_refresh_hint: number; spiffe_sequence: number }> {
  const cas = (JSON.parse(bundleJson) as { keys: { use: string; x5c?: string[] }[] }).keys.filter((k) => k.use === 'x509-svid').map((k) => derToPem(Buffer.from(k.x5c![0]!, 'base64')));
  return new Promise((resolve, reject) => {
    const req = httpsRequest({
      host: '127.0.0.1', port, path: '/', method: 'GET', agent: false, ca: cas, rejectUnauthorized: true,
      checkServerIdentity: (_h, cert) => (cert.subjectaltname === `URI:${spiffeId}` ? undefined : new Error(`endpoint presented ${cert.subjectaltname}`)),
    }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(body)) : reject(new Error(`HTTP ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The CERTIFICATE blocks of a text (a PEM file, openssl's output), as DER. */
function splitPem(pem: string): Buffer[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)].map((m) => Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64'));
}
