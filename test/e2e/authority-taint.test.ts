import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { splitDerCertificates } from '../../spiffe/svid/x509.js';
import { startCaOnTestStore } from '../support/ca-process.js';
import { storeKind } from '../support/db.js';
import { grpc, grpcWorkloadClient, securityHeader, unary, type GrpcWorkloadClient, type X509SvidWire } from '../support/grpc-workload.js';
import { runCairnAsync, spawnCairn, type Spawned } from '../support/processes.js';
import { waitFor } from '../support/wait.js';

const TD = 'taint.test';

/**
 * Issue 13's proof for authorities, with real processes: `cairn ca start`, `cairn agent start` serving
 * the Workload API on a Unix socket, a grpc-js client holding a FetchX509SVID stream, and the admin
 * verbs run as `cairn authority …`. After `authority taint` the open stream carries an SVID signed by
 * the new key within 10 s; after `authority revoke` the old key leaves the bundle (sequence bumped)
 * and the stream carries the new bundle.
 */
describe(`authority taint and revoke reach an open Workload API stream (${storeKind()} store)`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-taint-'));
  chmodSync(dir, 0o755);
  let ca: Awaited<ReturnType<typeof startCaOnTestStore>>;
  let agent: Spawned | undefined;
  let client: GrpcWorkloadClient | undefined;
  let call: grpc.ClientReadableStream<{ svids: X509SvidWire[] }> | undefined;
  const messages: { at: number; svids: X509SvidWire[] }[] = [];
  const errors: grpc.ServiceError[] = [];
  let cliEnv: Record<string, string | undefined>;
  const cairn = (...args: string[]) => runCairnAsync(args, cliEnv);

  beforeAll(async () => {
    ca = await startCaOnTestStore(join(dir, 'ca'));
    cliEnv = { CAIRN_SERVER: ca.httpUrl, CAIRN_ADMIN_TOKEN: readFileSync(join(dir, 'ca', 'admin-token'), 'utf8').trim(), CAIRN_DATA_DIR: join(dir, 'cli') };
    // short SVIDs would renew on their own; an hour keeps every re-issue below the taint's doing
    expect((await ca.admin('/v1/trust-domains', { name: TD, x509SvidTtlSeconds: 3600 })).status).toBe(201);
    const { body: tok } = await ca.admin<{ token: string; spiffeId: string }>('/v1/tokens', { trustDomain: TD });
    expect((await ca.admin('/v1/entries', { spiffeId: `spiffe://${TD}/web`, parentId: tok.spiffeId, selectors: [`unix:uid:${process.getuid!()}`] })).status).toBe(201);
    agent = spawnCairn(['agent', 'start', '--data-dir', join(dir, 'agent'), '--socket', join(dir, 'agent.sock'), '--join-token', tok.token], {
      CAIRN_DATA_DIR: undefined,
      CAIRN_LOG_LEVEL: 'info',
    });
    await agent.waitFor(/serving the Workload API/, 60_000);
    const healthy = await runCairnAsync(['agent', 'healthcheck', '--socket', join(dir, 'agent.sock'), '--wait', '60s']);
    expect(healthy.status, healthy.stderr).toBe(0);
    client = grpcWorkloadClient(join(dir, 'agent.sock'));
    call = client.FetchX509SVID!({}, securityHeader()) as grpc.ClientReadableStream<{ svids: X509SvidWire[] }>;
    call.on('data', (m: { svids: X509SvidWire[] }) => messages.push({ at: Date.now(), svids: m.svids }));
    call.on('error', (e: grpc.ServiceError) => errors.push(e));
    await waitFor('the first X.509-SVID on the stream', () => messages[0], 30_000).catch((err: Error) => {
      throw new Error(`${err.message}; stream errors: ${errors.map((e) => e.message).join('; ')}; agent: ${agent?.stderr().slice(-3000)}`);
    });
  }, 120_000);

  afterAll(async () => {
    call?.cancel();
    client?.close();
    await agent?.stop();
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const leafOf = (m: { svids: X509SvidWire[] }): X509Certificate => new X509Certificate(splitDerCertificates(m.svids[0]!.x509_svid)[0]!);
  const bundleOf = (m: { svids: X509SvidWire[] }): X509Certificate[] => splitDerCertificates(m.svids[0]!.bundle).map((d) => new X509Certificate(d));
  const signedBy = (leaf: X509Certificate, ca: X509Certificate): boolean => leaf.verify(ca.publicKey);
  const authorities = async (): Promise<{ kind: string; id: string; status: string; publicKeyFingerprint: string }[]> => {
    const r = await cairn('authority', 'list', '--trust-domain', TD, '--json');
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(r.stdout).authorities;
  };
  const publishedBundle = async (): Promise<{ spiffe_sequence: number; keys: { use: string; x5c?: string[] }[] }> => (await fetch(`${ca.httpUrl}/td/${TD}/bundle`)).json();

  it('taint: the open stream gets an SVID signed by the new key within 10 s; revoke: the old key leaves the bundle', { timeout: 180_000 }, async () => {
    const [oldX509] = (await authorities()).filter((a) => a.kind === 'x509');
    expect(oldX509!.status).toBe('active');
    const oldCa = bundleOf(messages[0]!)[0]!;
    expect(signedBy(leafOf(messages[0]!), oldCa)).toBe(true);
    // an admin-minted SVID signed by the old key: in use until it expires, so revoke needs --force
    const minted = await cairn('x509', 'mint', '--spiffe-id', `spiffe://${TD}/minted`, '--print-key');
    expect(minted.status, minted.stderr).toBe(0);

    // the levers refuse what makes no sense, naming the flag or the state
    const noId = await cairn('authority', 'taint', '--trust-domain', TD, '--kind', 'x509');
    expect(noId.status).toBe(2);
    expect(noId.stderr).toMatch(/^error: authority taint needs --id ID/m);
    const badKind = await cairn('authority', 'prepare', '--trust-domain', TD, '--kind', 'x5O9');
    expect(badKind.status).toBe(2);
    expect(badKind.stderr).toMatch(/^error: --kind must be one of x509, jwt \(got "x5O9"\)/m);
    const active = await cairn('authority', 'taint', '--trust-domain', TD, '--kind', 'x509', '--id', oldX509!.id);
    expect(active.status).toBe(1);
    expect(active.stderr).toMatch(/^error: authority_invalid_state: cannot taint x509 authority .* it is the active x509 authority/m);

    const prepared = await cairn('authority', 'prepare', '--trust-domain', TD, '--kind', 'x509', '--json');
    expect(prepared.status, prepared.stderr).toBe(0);
    const newId = JSON.parse(prepared.stdout).id as string;
    // prepared keys are published before they sign: the stream's bundle gets it, the SVID is unchanged
    const withSuccessor = await waitFor('the prepared CA in the stream bundle', () => messages.find((m) => bundleOf(m).length === 2), 30_000);
    const newCa = bundleOf(withSuccessor).find((c) => !c.publicKey.equals(oldCa.publicKey))!;
    expect(signedBy(leafOf(withSuccessor), oldCa)).toBe(true);

    const activated = await cairn('authority', 'activate', '--trust-domain', TD, '--kind', 'x509');
    expect(activated.status, activated.stderr).toBe(0);
    expect(activated.stderr).toMatch(/x509 authority \S+ is active; it had been published for \d+s/);
    expect(activated.stderr).toContain('note: published for less than 30m');
    const seen = messages.length;

    const t0 = Date.now();
    const tainted = await cairn('authority', 'taint', '--trust-domain', TD, '--kind', 'x509', '--id', oldX509!.id);
    expect(tainted.status, tainted.stderr).toBe(0);
    const reissued = await waitFor('an SVID signed by the new CA on the open stream', () => messages.slice(seen).find((m) => signedBy(leafOf(m), newCa)), 30_000);
    const tookMs = reissued.at - t0;
    expect(tookMs, `the re-issued SVID arrived ${tookMs} ms after the taint command started`).toBeLessThan(10_000);
    expect(errors).toEqual([]);
    // the agent reports what it replaced, and its own SVID is re-issued too
    await agent!.waitFor(/every SVID signed by a tainted authority was replaced/, 30_000);
    expect((await authorities()).find((a) => a.id === oldX509!.id)!.status).toBe('tainted');

    // revoke: refused while what it signed is in use — once the agent's SVIDs are replaced, only the minted one
    const refusal = await waitFor('a refusal naming only the minted SVID', async () => {
      const r = await cairn('authority', 'revoke', '--trust-domain', TD, '--kind', 'x509', '--id', oldX509!.id);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/^error: authority_in_use: cannot revoke x509 authority .*still in use.*pass --force to revoke anyway/m);
      return /1 unexpired SVID\(s\) it signed are still in use \(e\.g\. spiffe:\/\/taint\.test\/minted\)/.test(r.stderr) ? r : undefined;
    }, 60_000);
    expect(refusal.stderr).not.toContain('held by attested agents');
    const before = await publishedBundle();
    expect(before.keys.filter((k) => k.use === 'x509-svid')).toHaveLength(2);
    const beforeStream = messages.length;

    const revoked = await cairn('authority', 'revoke', '--trust-domain', TD, '--kind', 'x509', '--id', oldX509!.id, '--force');
    expect(revoked.status, revoked.stderr).toBe(0);
    expect(revoked.stderr).toContain('has left the bundle');
    const after = await publishedBundle();
    expect(after.spiffe_sequence).toBeGreaterThan(before.spiffe_sequence);
    const left = after.keys.filter((k) => k.use === 'x509-svid').map((k) => new X509Certificate(Buffer.from(k.x5c![0]!, 'base64')));
    expect(left).toHaveLength(1);
    expect(left[0]!.publicKey.equals(newCa.publicKey)).toBe(true);
    // the stream gets the bundle without the old CA, with the same (new-key) SVID
    const trimmed = await waitFor('the bundle without the revoked CA on the stream', () => messages.slice(beforeStream).find((m) => bundleOf(m).length === 1), 30_000);
    expect(bundleOf(trimmed)[0]!.publicKey.equals(newCa.publicKey)).toBe(true);
    expect(signedBy(leafOf(trimmed), newCa)).toBe(true);
    expect((await authorities()).find((a) => a.id === oldX509!.id)!.status).toBe('revoked');
    expect(newId).toBe((await authorities()).find((a) => a.kind === 'x509' && a.status === 'active')!.id);
    expect(errors).toEqual([]);
  });

  it('a tainted JWT key: the agent drops its cached JWT-SVIDs and no longer validates them', { timeout: 120_000 }, async () => {
    type JwtResponse = { svids: { spiffe_id: string; svid: string }[] };
    const fetchJwt = async (): Promise<string> => (await unary<JwtResponse>(client!, 'FetchJWTSVID', { audience: ['gw'] })).svids[0]!.svid;
    const kidOf = (token: string): string => JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).kid;
    const oldToken = await fetchJwt();
    expect(await fetchJwt()).toBe(oldToken); // cached
    await unary(client!, 'ValidateJWTSVID', { audience: 'gw', svid: oldToken });
    const oldKid = kidOf(oldToken);

    const prepared = await cairn('authority', 'prepare', '--trust-domain', TD, '--kind', 'jwt');
    expect(prepared.status, prepared.stderr).toBe(0);
    // --min-published makes activate wait (the CA refuses with authority_too_new and how long to wait)
    const activated = await cairn('authority', 'activate', '--trust-domain', TD, '--kind', 'jwt', '--min-published', '15s');
    expect(activated.status, activated.stderr).toBe(0);
    expect(activated.stderr).toMatch(/^waiting \d+s: jwt authority \S+ has been published for \d+s, less than the 15s asked for/m);
    expect(JSON.parse((await cairn('authority', 'list', '--trust-domain', TD, '--kind', 'jwt', '--json')).stdout).authorities.find((a: { status: string; publishedAt: string; activatedAt: string }) => a.status === 'active')).toSatisfy(
      (a: { publishedAt: string; activatedAt: string }) => Date.parse(a.activatedAt) - Date.parse(a.publishedAt) >= 15_000,
    );
    const tainted = await cairn('authority', 'taint', '--trust-domain', TD, '--kind', 'jwt', '--id', oldKid);
    expect(tainted.status, tainted.stderr).toBe(0);
    const refused = await waitFor('ValidateJWTSVID to refuse the tainted key', async () => {
      try {
        await unary(client!, 'ValidateJWTSVID', { audience: 'gw', svid: oldToken });
        return undefined;
      } catch (err) {
        return err as grpc.ServiceError;
      }
    }, 30_000);
    expect(refused.code).toBe(grpc.status.INVALID_ARGUMENT);
    const fresh = await fetchJwt();
    expect(kidOf(fresh)).not.toBe(oldKid);
    await unary(client!, 'ValidateJWTSVID', { audience: 'gw', svid: fresh });
    // the JWT key is still published for gateways until revoked; revoke waits for its tokens to expire unless forced
    const early = await cairn('authority', 'revoke', '--trust-domain', TD, '--kind', 'jwt', '--id', oldKid);
    expect(early.status).toBe(1);
    expect(early.stderr).toMatch(/^error: authority_in_use: cannot revoke jwt authority .*JWT-SVIDs it signed may be valid until/m);
  });
});
