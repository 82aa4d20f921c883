import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgDatabase, storeKind } from '../support/db.js';
import { opensslVerify } from '../support/openssl.js';
import { packageRoot } from '../../lib/paths.js';
import { cairnVersion } from '../../lib/version.js';
import { CLI, freePort, runCairn, spawnCairn, type Spawned } from '../support/processes.js';

describe(`the cairn CLI against a real CA process (${storeKind()} store)`, () => {
  let dataDir: string;
  let up: Spawned;
  let env: Record<string, string | undefined>;
  let drop: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'cairn-e2e-'));
    const port = await freePort();
    let databaseUrl: string | undefined;
    if (storeKind() === 'postgres') ({ url: databaseUrl, drop } = await createPgDatabase());
    env = { CAIRN_DATA_DIR: dataDir, DATABASE_URL: databaseUrl, CAIRN_SERVER: undefined, CAIRN_ADMIN_TOKEN: undefined };
    up = spawnCairn(['up', '--listen', `127.0.0.1:${port}`, '--tls-listen', '127.0.0.1:0'], env);
    await up.waitFor(/Press Ctrl-C to stop/, 180_000);
  }, 240_000);

  afterAll(async () => {
    await up?.stop();
    await drop?.();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('`cairn up` writes endpoints.json and serves the trust domain it created', async () => {
    const endpoints = JSON.parse(readFileSync(join(dataDir, 'endpoints.json'), 'utf8'));
    expect(endpoints).toMatchObject({ trustDomain: 'example.org', store: storeKind() });
    for (const key of ['caUrl', 'caTlsUrl', 'caPin', 'bundleUrl', 'jwksUrl', 'oidcDiscoveryUrl', 'adminTokenFile']) expect(typeof endpoints[key]).toBe('string');
    expect(endpoints.caPin).toMatch(/^sha256:[A-Za-z0-9_-]{43}$/); // admin verbs below use caTlsUrl with it
    expect(endpoints.socket).toMatch(/workload\.sock$/);
    expect(endpoints.workloadSpiffeId).toMatch(/^spiffe:\/\/example\.org\/user\//);
    // the agent answers on the socket with this user's SVID (an independent gRPC client)
    const grpc = await import('@grpc/grpc-js');
    const loader = await import('@grpc/proto-loader');
    const pkg = grpc.loadPackageDefinition(loader.loadSync(join(packageRoot(), 'workload-api/proto/workload.proto'), { keepCase: true })) as unknown as {
      SpiffeWorkloadAPI: new (a: string, c: unknown) => { FetchX509SVID(req: object, md: unknown): NodeJS.EventEmitter & { cancel(): void }; close(): void };
    };
    const client = new pkg.SpiffeWorkloadAPI(`unix://${endpoints.socket}`, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.set('workload.spiffe.io', 'true');
    const ids = await new Promise<string[]>((resolve, reject) => {
      const call = client.FetchX509SVID({}, md);
      call.once('data', (m: { svids: { spiffe_id: string }[] }) => {
        resolve(m.svids.map((x) => x.spiffe_id));
        call.cancel();
      });
      call.once('error', (e: { code: number }) => (e.code === grpc.status.CANCELLED ? undefined : reject(e)));
    });
    client.close();
    expect(ids).toEqual([endpoints.workloadSpiffeId]);
    const discovery = await (await fetch(endpoints.oidcDiscoveryUrl)).json();
    expect(discovery.jwks_uri).toBe(endpoints.jwksUrl);
    expect(statSync(endpoints.adminTokenFile).mode & 0o777).toBe(0o600);
  });

  it('`cairn up` prints its banner once it is up, alone on stdout; its logs go to stderr, without per-request lines at info', () => {
    const endpoints = JSON.parse(readFileSync(join(dataDir, 'endpoints.json'), 'utf8'));
    expect(up.stdout()).toBe(
      [
        `Cairn ${cairnVersion()} is up: trust domain example.org, CA at ${endpoints.caUrl}, agents and devices at ${endpoints.caTlsUrl} (${storeKind()} store)`,
        `  agent:          ${endpoints.agentSpiffeId}; your uid gets ${endpoints.workloadSpiffeId}`,
        `  export SPIFFE_ENDPOINT_SOCKET=unix://${endpoints.socket}`,
        `  bundle:         ${endpoints.bundleUrl}`,
        `  JWKS:           ${endpoints.jwksUrl}`,
        `  OIDC discovery: ${endpoints.oidcDiscoveryUrl}`,
        `  admin token:    ${endpoints.adminTokenFile} (admin verbs use ${endpoints.caTlsUrl}, pin ${endpoints.caPin})`,
        `  endpoints:      ${join(dataDir, 'endpoints.json')}`,
        'Press Ctrl-C to stop.',
        '',
      ].join('\n'),
    );
    // stderr is not a terminal here: JSON lines, every one of them
    const logs = up.stderr().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level: number; msg: string });
    expect(logs.map((l) => l.msg)).toContain('CA listening');
    expect(logs.filter((l) => l.msg === 'incoming request' || l.msg === 'request completed')).toEqual([]);
    // it restarted itself in place with a small young generation (see cli/logging.ts)
    expect(readFileSync(`/proc/${up.child.pid}/cmdline`, 'utf8').split('\0')).toContain('--max-semi-space-size=1');
  });

  it.runIf(process.getuid?.() === 0)('a workload of another user reaches the socket (its directories are searchable): no identity, but no EACCES', () => {
    const socket = JSON.parse(readFileSync(join(dataDir, 'endpoints.json'), 'utf8')).socket as string;
    const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', process.execPath, CLI, 'svid', 'fetch', '--socket', socket], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toMatch(/^error: permission_denied: /);
    expect(r.status).toBe(1);
    // the data dir itself stays unlistable, and its secrets keep their modes
    expect(statSync(dataDir).mode & 0o777).toBe(0o711);
    expect(statSync(join(dataDir, 'admin-token')).mode & 0o777).toBe(0o600);
  });

  it('admin verbs print only the result on stdout, and --json gives JSON', () => {
    const created = runCairn(['trust-domain', 'create', 'cli.test', '--x509-svid-ttl', '30m', '--jwt-issuer', 'https://cli.test'], env);
    expect(created.stderr).toBe('');
    expect(created.status).toBe(0);
    expect(created.stdout).toBe('cli.test\n');
    const shown = runCairn(['trust-domain', 'show', 'cli.test', '--json'], env);
    expect(JSON.parse(shown.stdout)).toMatchObject({ name: 'cli.test', x509SvidTtlSeconds: 1800, jwtIssuer: 'https://cli.test' });
    const listed = runCairn(['trust-domain', 'list'], env);
    expect(listed.stdout).toMatch(/cli\.test\s+ec-p256\s+30m\s+5m\s+https:\/\/cli\.test/);
    const dup = runCairn(['trust-domain', 'create', 'cli.test'], env);
    expect(dup.status).toBe(1);
    expect(dup.stdout).toBe('');
    expect(dup.stderr).toMatch(/trust_domain_exists/);
  });

  it('`cairn x509 mint --write` leaves files openssl verifies, with the key kept 0600', () => {
    const out = join(dataDir, 'minted');
    const r = runCairn(['x509', 'mint', '--spiffe-id', 'spiffe://example.org/ns/a/sa/b', '--ttl', '10m', '--dns', 'b.example.org', '--write', out], env);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^spiffe:\/\/example\.org\/ns\/a\/sa\/b [0-9a-f]{32} \S+\n$/);
    const svid = readFileSync(join(out, 'svid.pem'), 'utf8');
    expect(opensslVerify(svid, readFileSync(join(out, 'bundle.pem'), 'utf8'))).toContain('OK');
    expect(statSync(join(out, 'svid.key')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(out, 'svid.key'), 'utf8')).toContain('BEGIN PRIVATE KEY');
    const inv = runCairn(['svid', 'list', '--spiffe-id-prefix', 'spiffe://example.org/ns/a/', '--json'], env);
    expect(JSON.parse(inv.stdout).svids).toHaveLength(1);
  });

  it('`cairn jwt mint` prints the token alone', () => {
    const r = runCairn(['jwt', 'mint', '--spiffe-id', 'spiffe://example.org/api', '--audience', 'a', '--audience', 'b'], env);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    const claims = JSON.parse(Buffer.from(r.stdout.split('.')[1]!, 'base64url').toString());
    expect(claims.aud).toEqual(['a', 'b']);
  });

  it('`cairn svid fetch --write` and `cairn jwt fetch | validate` work through the socket cairn up announced', () => {
    const out = join(dataDir, 'fetched');
    const r = runCairn(['svid', 'fetch', '--write', out], env);
    expect(r.stderr).toMatch(/wrote svid\.pem, svid\.key and bundle\.pem/);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^spiffe:\/\/example\.org\/user\/\S+\n$/);
    expect(opensslVerify(readFileSync(join(out, 'svid.pem'), 'utf8'), readFileSync(join(out, 'bundle.pem'), 'utf8'))).toContain('OK');
    expect(statSync(join(out, 'svid.key')).mode & 0o777).toBe(0o600);
    const jwt = runCairn(['jwt', 'fetch', '--audience', 'orders'], env);
    expect(jwt.status).toBe(0);
    const token = jwt.stdout.trim();
    expect(token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    const ok = runCairn(['jwt', 'validate', '--audience', 'orders', token, '--json'], env);
    expect(ok.status).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ spiffeId: r.stdout.trim(), claims: { aud: ['orders'] } });
    const wrong = runCairn(['jwt', 'validate', '--audience', 'billing', token], env);
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toMatch(/^error: invalid_argument: /);
    const nowhere = runCairn(['svid', 'fetch', '--socket', join(dataDir, 'no.sock')], env);
    expect(nowhere.status).toBe(1);
    expect(nowhere.stderr).toMatch(/^error: unavailable: /);
    const badAddress = runCairn(['svid', 'fetch', '--socket', 'tcp://127.0.0.1:1'], env);
    expect(badAddress.stderr).toMatch(/invalid_argument: .*unix scheme/);
  }, 120_000);

  it('the Workload API client is importable as cairn/workload-api/client, with types', async () => {
    const { execFileSync } = await import('node:child_process');
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', "const m = await import('cairn/workload-api/client'); console.log(typeof m.WorkloadApiClient, typeof m.socketPathOf)"], { cwd: packageRoot(), encoding: 'utf8' });
    expect(out.trim()).toBe('function function');
    expect(existsSync(join(packageRoot(), 'dist/workload-api/client.d.ts'))).toBe(true);
  });

  it('reports a clear error when the admin token is wrong or the CA is unreachable', () => {
    const bad = runCairn(['trust-domain', 'list'], { ...env, CAIRN_ADMIN_TOKEN: 'cairn-admin.nope' });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/unauthenticated/);
    const gone = runCairn(['trust-domain', 'list', '--server', 'http://127.0.0.1:1'], env);
    expect(gone.status).toBe(1);
    expect(gone.stderr).toMatch(/unreachable/);
    const usage = runCairn(['trust-domain', 'frobnicate'], env);
    expect(usage.status).toBe(2);
  });

  it('stops cleanly on SIGTERM and starts again on the same data; `svid watch` rides through it', async () => {
    const socket = JSON.parse(readFileSync(join(dataDir, 'endpoints.json'), 'utf8')).socket as string;
    const out = join(dataDir, 'watched');
    const watch = spawnCairn(['svid', 'watch', '--write', out, '--exec', `echo reloaded >> ${join(dataDir, 'reloads')}`], env);
    try {
      await watch.waitFor(/wrote spiffe:/);
      const first = readFileSync(join(out, 'svid.pem'), 'utf8');
      expect(await up.stop('SIGTERM')).toBe(0);
      expect(existsSync(socket)).toBe(false);
      await watch.waitFor(/unavailable: the workload API is shutting down; retrying/);
      const port = await freePort();
      up = spawnCairn(['up', '--listen', `127.0.0.1:${port}`, '--tls-listen', '127.0.0.1:0'], env);
      await up.waitFor(/Press Ctrl-C to stop/, 180_000);
      const r = runCairn(['trust-domain', 'show', 'cli.test', '--json'], env);
      expect(JSON.parse(r.stdout).name).toBe('cli.test');
      // the restarted agent issues fresh SVIDs (keys live in memory); the watcher rewrites the files
      await watch.waitFor(/wrote spiffe:[\s\S]*wrote spiffe:/, 60_000);
      expect(readFileSync(join(out, 'svid.pem'), 'utf8')).not.toBe(first);
      expect(opensslVerify(readFileSync(join(out, 'svid.pem'), 'utf8'), readFileSync(join(out, 'bundle.pem'), 'utf8'))).toContain('OK');
      expect(readFileSync(join(dataDir, 'reloads'), 'utf8')).toBe('reloaded\nreloaded\n');
    } finally {
      expect(await watch.stop('SIGTERM')).toBe(0);
    }
  }, 300_000);
});

describe.runIf(storeKind() === 'postgres')('two CA processes started at once on one PostgreSQL', () => {
  it('both migrate safely, share the bootstrap admin, and serve the same trust domains', async () => {
    const { url, drop } = await createPgDatabase();
    const dirA = mkdtempSync(join(tmpdir(), 'cairn-a-'));
    const dirB = mkdtempSync(join(tmpdir(), 'cairn-b-'));
    const kekFile = join(dirA, 'shared-kek');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(kekFile, Buffer.alloc(32, 7).toString('base64'), { mode: 0o600 });
    const token = 'cairn-admin.' + 'x'.repeat(43);
    const common = { DATABASE_URL: url, CAIRN_KEK_FILE: kekFile, CAIRN_ADMIN_TOKEN: token };
    const [pa, pb] = [await freePort(), await freePort()];
    const a = spawnCairn(['ca', 'start', '--listen', `127.0.0.1:${pa}`, '--tls-listen', '127.0.0.1:0'], { ...common, CAIRN_DATA_DIR: dirA });
    const b = spawnCairn(['ca', 'start', '--listen', `127.0.0.1:${pb}`, '--tls-listen', '127.0.0.1:0'], { ...common, CAIRN_DATA_DIR: dirB });
    try {
      await Promise.all([a.waitFor(/listening/, 180_000), b.waitFor(/listening/, 180_000)]);
      const created = runCairn(['trust-domain', 'create', 'replicas.test'], { CAIRN_SERVER: `http://127.0.0.1:${pa}`, CAIRN_ADMIN_TOKEN: token });
      expect(created.status).toBe(0);
      const viaB = await fetch(`http://127.0.0.1:${pb}/td/replicas.test/bundle`);
      expect(viaB.status).toBe(200);
      const minted = runCairn(['jwt', 'mint', '--spiffe-id', 'spiffe://replicas.test/w', '--audience', 'x'], { CAIRN_SERVER: `http://127.0.0.1:${pb}`, CAIRN_ADMIN_TOKEN: token });
      expect(minted.status).toBe(0);
      expect(a.stderr() + b.stderr()).not.toMatch(/"level":(50|60)|^error/im);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
      await drop();
      rmSync(dirA, { recursive: true, force: true });
      rmSync(dirB, { recursive: true, force: true });
    }
  }, 240_000);
});
