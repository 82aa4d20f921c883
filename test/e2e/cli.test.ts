import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgDatabase, storeKind } from '../support/db.js';
import { opensslVerify } from '../support/openssl.js';
import { packageRoot } from '../../lib/paths.js';
import { cairnVersion } from '../../lib/version.js';
import { CLI, freePort, runCairn, runCairnAsync, spawnCairn, type Spawned } from '../support/processes.js';

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
    expect(usage.stderr).toMatch(/^error: unknown trust-domain command "frobnicate" \(trust-domain has create, list, show, update, delete\)/);
  });

  it('`cairn svid fetch` prints a summary, never the key unless --print-key asks for it', () => {
    const summary = runCairn(['svid', 'fetch'], env);
    expect(summary.status, summary.stderr).toBe(0);
    expect(summary.stdout).not.toMatch(/PRIVATE KEY|BEGIN/);
    const [header, row] = summary.stdout.trim().split('\n');
    expect(header).toMatch(/^SPIFFE ID\s+SERIAL\s+EXPIRES\s+HINT$/);
    const [id, serial, expires] = row!.split(/\s+/);
    expect(id).toMatch(/^spiffe:\/\/example\.org\/user\//);
    expect(serial).toMatch(/^[0-9a-f]{32}$/);
    expect(Date.parse(expires!)).toBeGreaterThan(Date.now());
    expect(summary.stderr).toMatch(/--print-key/);
    const json = JSON.parse(runCairn(['svid', 'fetch', '--json'], env).stdout);
    expect(json).toEqual({ svids: [expect.objectContaining({ spiffeId: id, serial, expiresAt: expires })] });
    const pem = runCairn(['svid', 'fetch', '--print-key'], env);
    expect(pem.status).toBe(0);
    expect(pem.stdout).toMatch(/BEGIN CERTIFICATE[\s\S]*BEGIN PRIVATE KEY/);
    // the agent's SVIDs are in the CA's inventory under the same serial, found in either case
    const listed = runCairn(['svid', 'list', '--serial', serial!.toUpperCase(), '--json'], env);
    expect(listed.status, listed.stderr).toBe(0);
    expect(JSON.parse(listed.stdout).svids).toEqual([expect.objectContaining({ serial, spiffeId: id })]);
  });

  it('serial numbers are lowercase hex everywhere and match the certificate', () => {
    const out = join(dataDir, 'serials');
    const minted = runCairn(['x509', 'mint', '--spiffe-id', 'spiffe://example.org/serials', '--write', out], env);
    expect(minted.status, minted.stderr).toBe(0);
    const serial = minted.stdout.split(' ')[1]!;
    expect(serial).toMatch(/^[0-9a-f]{32}$/);
    const openssl = execFileSync('openssl', ['x509', '-noout', '-serial', '-in', join(out, 'svid.pem')], { encoding: 'utf8' }).trim();
    expect(openssl.replace(/^serial=/, '').toLowerCase()).toBe(serial);
    for (const query of [serial, serial.toUpperCase()]) {
      const r = runCairn(['svid', 'list', '--serial', query], env);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain(`${serial}  spiffe://example.org/serials`);
    }
    const bad = runCairn(['svid', 'list', '--serial', 'xyz'], env);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^error: --serial must be a hexadecimal serial number/);
    // minting never puts a key on stdout by default
    const noWhere = runCairn(['x509', 'mint', '--spiffe-id', 'spiffe://example.org/serials'], env);
    expect(noWhere.status).toBe(2);
    expect(noWhere.stderr).toMatch(/^error: x509 mint needs --write DIR .* or --print-key/);
  });

  it('`trust-domain update` refuses --ca-key-type, saying why, and changes nothing', () => {
    const r = runCairn(['trust-domain', 'update', 'cli.test', '--ca-key-type', 'rsa-2048', '--x509-svid-ttl', '20m'], env);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^error: --ca-key-type cannot be changed by update: the key type is fixed when the trust domain is created/);
    expect(JSON.parse(runCairn(['trust-domain', 'show', 'cli.test', '--json'], env).stdout)).toMatchObject({ caKeyType: 'ec-p256', x509SvidTtlSeconds: 1800 });
    const misplaced = runCairn(['trust-domain', 'update', 'cli.test', '--force'], env);
    expect(misplaced.stderr).toMatch(/^error: unknown flag --force for trust-domain update \(it is a flag of trust-domain delete\)/);
    const ok = runCairn(['trust-domain', 'update', 'cli.test', '--x509-svid-ttl', '20m', '--json'], env);
    expect(ok.status, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ caKeyType: 'ec-p256', x509SvidTtlSeconds: 1200 });
  });

  it('a duplicate entry names the entry that exists; 400s name the flag, not the API field', () => {
    const args = ['entry', 'create', '--spiffe-id', 'spiffe://example.org/dup', '--parent-id', 'spiffe://example.org/cairn/agent/local', '--selector', 'unix:uid:4242'];
    const first = runCairn(args, env);
    expect(first.status, first.stderr).toBe(0);
    const id = first.stdout.trim();
    const again = runCairn([...args.slice(0, -1), 'unix:uid:4242', '--selector', 'unix:uid:4242'], env);
    expect(again.status).toBe(1);
    expect(again.stderr).toBe(`error: entry_exists: registration entry ${id} already has this SPIFFE ID, parent ID and selectors\n`);
    const ttl = runCairn(['token', 'create', '--trust-domain', 'example.org', '--ttl', '5s'], env);
    expect(ttl.status).toBe(1);
    expect(ttl.stderr).toBe('error: invalid_ttl: --ttl must be between 30 and 86400 seconds\n');
    const own = runCairn([...args, '--federates-with', 'example.org'], env);
    expect(own.stderr).toBe("error: invalid_trust_domain: --federates-with cannot name the entry's own trust domain\n");
  });

  it('`entry create --file` creates a file of entries in one request: a line per entry, an error line per item not created, exit 1 if any', () => {
    const parent = 'spiffe://example.org/cairn/agent/local';
    const item = (name: string, uid: number, more: Record<string, unknown> = {}) => ({ spiffeId: `spiffe://example.org/batch/${name}`, parentId: parent, selectors: [`unix:uid:${uid}`], ...more });
    const file = join(dataDir, 'entries.json');
    writeFileSync(file, JSON.stringify({ entries: [item('a', 5001), item('b', 5002, { x509SvidTtl: 600 })] }));
    const created = runCairn(['entry', 'create', '--file', file], env);
    expect(created.status, created.stderr).toBe(0);
    const rows = created.stdout.trimEnd().split('\n');
    expect(rows).toHaveLength(3);
    expect(rows[0]).toMatch(/^ITEM\s+ID\s+SPIFFE ID$/);
    expect(rows[1]).toMatch(/^0\s+[A-Za-z0-9]{24}\s+spiffe:\/\/example\.org\/batch\/a$/);
    expect(rows[2]).toMatch(/^1\s+[A-Za-z0-9]{24}\s+spiffe:\/\/example\.org\/batch\/b$/);
    expect(created.stderr).toBe('created 2 entries\n');

    // a bare array on stdin with --json; the bad items fail alone, each named, and the exit status says so
    const mixed = spawnSync(process.execPath, [CLI, 'entry', 'create', '--file', '-', '--json'], {
      env: { ...process.env, ...env },
      input: JSON.stringify([item('a', 5001), item('c', 5003), { ...item('d', 5004), spiffeId: 'example.org/d' }]),
      encoding: 'utf8',
    });
    expect(mixed.status, mixed.stderr).toBe(1);
    const results = JSON.parse(mixed.stdout).results as { entry?: { id: string; spiffeId: string }; error?: { code: string } }[];
    expect(results.map((r) => r.error?.code ?? r.entry!.spiffeId)).toEqual(['entry_exists', 'spiffe://example.org/batch/c', 'invalid_spiffe_id']);
    const first = rows[1]!.split(/\s+/)[1];
    expect(mixed.stderr).toContain(`error: --file -: entries[0]: entry_exists: registration entry ${first} already has this SPIFFE ID, parent ID and selectors\n`);
    expect(mixed.stderr).toMatch(/^error: --file -: entries\[2\]: invalid_spiffe_id: spiffeId: /m);
    expect(mixed.stderr).toMatch(/^error: entries_not_created: 2 of 3 entries in - were not created \(the others were\)$/m);
    const listed = runCairn(['entry', 'list', '--spiffe-id', 'spiffe://example.org/batch/c', '--json'], env);
    expect(JSON.parse(listed.stdout).entries.map((e: { id: string }) => e.id)).toEqual([results[1]!.entry!.id]);

    // mistakes in the command or the file: usage errors naming the flag, exit 2, nothing sent
    const usage: [string[], RegExp][] = [
      [['--file', file, '--spiffe-id', 'spiffe://example.org/x'], /^error: --file and --spiffe-id cannot be used together/],
      [['--file', join(dataDir, 'missing.json')], /^error: cannot read --file \S+missing\.json: ENOENT/],
      [['--file', join(dataDir, 'endpoints.json')], /^error: --file \S+endpoints\.json must hold \{"entries": \[\.\.\.\]\} or a JSON array of entries/],
    ];
    writeFileSync(join(dataDir, 'broken.json'), '{"entries": [');
    usage.push([['--file', join(dataDir, 'broken.json')], /^error: --file \S+broken\.json is not JSON: /]);
    for (const [args, message] of usage) {
      const r = runCairn(['entry', 'create', ...args], env);
      expect(r.stderr, args.join(' ')).toMatch(message);
      expect(r.status, args.join(' ')).toBe(2);
    }
  });

  it('`agent start --config` reads a YAML file with ${ENV} expansion; flags win over the file', { timeout: 120_000 }, async () => {
    const token = runCairn(['token', 'create', '--trust-domain', 'example.org', '--agent-id', 'spiffe://example.org/agent/from-config'], env);
    expect(token.status, token.stderr).toBe(0);
    const dir = mkdtempSync(join(tmpdir(), 'cairn-agent-config-'));
    const file = join(dir, 'agent.yaml');
    writeFileSync(file, [
      '# agent settings; keys are the flags of cairn agent start',
      'data-dir: ${AGENT_HOME}/state',
      'socket: ${AGENT_HOME}/from-file.sock',
      'join-token: ${JOIN_TOKEN}',
      'attestor: ${ATTESTOR:-join_token}',
      'workload-idle-timeout: 45s',
      'workload-max-connections-per-uid: ${MAX_CONNECTIONS:-16}',
      '',
    ].join('\n'));
    const socket = join(dir, 'from-flag.sock');
    const agent = spawnCairn(['agent', 'start', '--config', file, '--socket', socket], { AGENT_HOME: dir, JOIN_TOKEN: token.stdout.trim(), CAIRN_DATA_DIR: undefined, CAIRN_AGENT_SOCKET: join(dir, 'from-env.sock') });
    try {
      // the banner (stdout), printed once it serves; the log line of the same name comes first on stderr
      await agent.waitFor(/serving the Workload API; export SPIFFE_ENDPOINT_SOCKET=/, 90_000);
      expect(agent.stdout()).toContain(`spiffe://example.org/agent/from-config serving the Workload API; export SPIFFE_ENDPOINT_SOCKET=unix://${socket}`);
      expect(existsSync(socket)).toBe(true);
      expect(existsSync(join(dir, 'state', 'agent', 'agent-svid.json'))).toBe(true);
      // the agent the file configured is healthy by `cairn agent healthcheck` (the flag's socket)
      const health = await runCairnAsync(['agent', 'healthcheck', '--socket', socket, '--wait', '60s']);
      expect(health.stderr).toBe('');
      expect(health.stdout).toBe(`the agent on ${socket} is healthy: synced with the CA, holding a valid agent SVID, serving the Workload API\n`);
      expect(health.status).toBe(0);
      expect(await agent.stop('SIGTERM'), agent.stderr()).toBe(0);
    } finally {
      await agent.stop('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
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

describe('the cairn CLI teaches itself: help, errors, completion, version, config files', () => {
  // Parsing and help do not touch a store: run them once, on the embedded pass.
  const onceIt = it.runIf(storeKind() === 'embedded');
  const noServer = { CAIRN_SERVER: 'http://127.0.0.1:1', CAIRN_ADMIN_TOKEN: 'cairn-admin.unused' };

  onceIt('`cairn --help` is a short overview; `cairn <command> --help` and `cairn help <command>` describe every flag', async () => {
    const overview = runCairn(['--help']);
    expect(overview.status).toBe(0);
    // one line per command group: short enough to read at a glance
    expect(overview.stdout.split('\n').length).toBeLessThan(32);
    for (const name of ['up', 'ca', 'migrate', 'agent', 'trust-domain', 'entry', 'token', 'x509', 'jwt', 'svid', 'attestor', 'bundle', 'federation', 'admin', 'bootstrap', 'renew', 'completion', 'version']) {
      expect(overview.stdout).toMatch(new RegExp(`^  ${name}\\s+\\S`, 'm'));
    }
    expect(runCairn(['help']).stdout).toBe(overview.stdout);
    // every group's page and one command of each (the unit tests render every command in-process)
    const { COMMANDS } = await import('../../cli/registry.js');
    const pages = COMMANDS.map((spec) => ('commands' in spec ? [spec.name, spec.commands[0]!.name] : [spec.name]));
    pages.push(['trust-domain'], ['ca', 'healthcheck'], ['agent', 'healthcheck'], ['attestor', 'k8s-psat', 'add']);
    const results = await Promise.all(pages.map((path) => runCairnAsync([...path, '--help'])));
    for (const [i, path] of pages.entries()) {
      const r = results[i]!;
      expect(r.status, path.join(' ')).toBe(0);
      expect(r.stdout, path.join(' ')).toMatch(new RegExp(`^Usage: cairn ${path.join(' ')} `));
    }
    const entryCreate = results[pages.findIndex((p) => p.join(' ') === 'entry create')]!.stdout;
    expect(entryCreate).toMatch(/^  --selector TYPE:VALUE\s+a selector the caller must have, e\.g\. unix:uid:1000 or k8s:ns:shop \(required unless --file; repeatable\)$/m);
    expect(entryCreate).toMatch(/^  --file FILE\s+create many entries from a JSON file/m);
    expect(entryCreate).toMatch(/^  --x509-svid-ttl DURATION\s+X\.509-SVID lifetime/m);
    expect(runCairn(['help', 'entry', 'create']).stdout).toBe(entryCreate);
    expect(runCairn(['help', 'attestor', 'k8s-psat', 'add']).stdout).toBe(results[pages.length - 1]!.stdout);
    // --help wins over everything else on the line: it never starts a CA
    const ca = runCairn(['ca', 'start', '--listen', 'nonsense', '--help']);
    expect(ca.status).toBe(0);
    expect(ca.stdout).toMatch(/--tls-listen HOST:PORT\s+TLS listener for agents and devices/);
    const group = runCairn(['trust-domain', '--help']);
    expect(group.stdout).toMatch(/^  update\s+change a trust domain's lifetimes, JWT issuer, JWT key type, pre-publication window or bundle endpoint$/m);
    // the verbs and flags of the production work: health checks, migrations, Workload API limits
    const page = (path: string[]): string => results[pages.findIndex((p) => p.join(' ') === path.join(' '))]!.stdout;
    expect(page(['agent', 'healthcheck'])).toMatch(/^  --wait DURATION\s+keep asking until healthy/m);
    expect(page(['ca', 'healthcheck'])).toMatch(/^  --server URL\s+the CA's plain HTTP URL.*\(env CAIRN_SERVER\)$/m);
    expect(page(['migrate'])).toMatch(/^  --database-url URL\s+PostgreSQL connection URL/m);
    expect(ca.stdout).toMatch(/^  --no-migrate\s+do not apply schema migrations at start .*\(env CAIRN_NO_MIGRATE\)$/m);
    for (const [flag, env] of [['--request-timeout DURATION', 'CAIRN_REQUEST_TIMEOUT'], ['--keep-alive-timeout DURATION', 'CAIRN_KEEP_ALIVE_TIMEOUT'], ['--max-connections N', 'CAIRN_MAX_CONNECTIONS'], ['--ca-name-constraints on|off', 'CAIRN_CA_NAME_CONSTRAINTS']] as const) {
      expect(ca.stdout).toMatch(new RegExp(`^  ${flag.replace('|', '\\|')}\\s+\\S.*\\(env ${env}\\)$`, 'm'));
    }
    for (const server of [ca.stdout, page(['agent', 'start']), page(['up'])]) {
      expect(server).toMatch(/^  --log-level fatal\|error\|warn\|info\|debug\|trace\|silent\s+what the logs hold/m);
      expect(server).toMatch(/^  --log-format json\|pretty\s+logs on stderr as text or JSON lines/m);
    }
    const agentStart = page(['agent', 'start']);
    for (const flag of ['--workload-attestor unix|k8s|systemd', '--workload-idle-timeout DURATION', '--workload-max-connections-per-uid N']) expect(agentStart).toContain(`  ${flag}`);
    expect(runCairn(['entry', 'create', '--help']).stdout).toMatch(/^  --allow-unknown-selector-type\s+store selectors of a type Cairn does not know/m);
    // admin identities: the admin group, the SVID credential flags of every admin verb, admin entries
    expect(page(['admin', 'create'])).toMatch(/^  --role admin\|operator\|viewer\s+admin: everything.*\(required\)$/m);
    expect(entryCreate).toMatch(/^  --svid-dir DIR\s+authenticate with an admin SVID instead of the token/m);
    expect(entryCreate).toMatch(/^  --admin-role admin\|operator\|viewer\s+the role an admin entry's SVIDs get/m);
    const noAdmin = runCairn(['entry', 'create', '--no-admin'], noServer);
    expect(noAdmin.stderr).toMatch(/^error: unknown flag --no-admin for entry create \(it is a flag of entry update\)\n/);
    expect(noAdmin.status).toBe(2);
    const both = runCairn(['entry', 'update', 'some-id', '--admin', '--no-admin'], noServer);
    expect(both.stderr).toMatch(/^error: --admin and --no-admin contradict each other\n/);
    expect(both.status).toBe(2);
  });

  onceIt('every error starts with error:, names the flag as typed, suggests the closest one, and exits 2', () => {
    const cases: [string[], RegExp][] = [
      [['entry', 'create', '--selecter', 'unix:uid:1'], /^error: unknown flag --selecter \(did you mean --selector\?\)\n/],
      [['entry', 'create', '--spiffe-id', 'spiffe://example.org/a', '--parent-id', 'spiffe://example.org/b'], /^error: entry create needs --selector TYPE:VALUE/],
      [['entry', 'create', '--spiffe-id', 'example.org/a', '--parent-id', 'spiffe://example.org/b', '--selector', 'unix:uid:1'], /^error: --spiffe-id must be a SPIFFE ID like spiffe:\/\/example\.org\/web/],
      [['entry', 'create', '--spiffe-id', 'spiffe://example.org/a', '--parent-id', 'spiffe://example.org/b', '--selector', 'uid'], /^error: --selector must be type:value/],
      [['svid', 'list', '--expiring-before', 'tomorrow'], /^error: --expiring-before must be an RFC 3339 timestamp/],
      [['x509', 'mint', '--spiffe-id', 'spiffe://example.org/a', '--ttl', '10x', '--write', '/nonexistent'], /^error: --ttl must be a duration like 90s/],
      [['trust-domain', 'create', 'td.test', '--x509-svid-ttl', '10s'], /^error: --x509-svid-ttl must be between 1m and 90d \(got "10s"\)/],
      [['token', 'create', '--trust-domain'], /^error: --trust-domain needs a value \(TD\)/],
      [['entry', 'create', '--hint', '--admin'], /^error: --hint needs a value \(TEXT\) before --admin/],
      [['agent', 'start', '--attestor', 'k8s'], /^error: --attestor must be one of join_token, k8s_psat, x509pop \(got "k8s"\) \(did you mean k8s_psat\?\)/],
      [['entry', 'create', '-json'], /^error: unknown flag -json \(did you mean --json\?\)/],
      [['trust-domian', 'list'], /^error: unknown command "trust-domian" \(did you mean trust-domain\?\)/],
      [['entry', 'craete'], /^error: unknown entry command "craete" \(did you mean create\?\)/],
      [['entry', 'show'], /^error: entry show needs ID/],
      [['entry'], /^error: entry needs a command: create, list, show, update, delete/],
      [['completion', 'fish'], /^error: SHELL must be bash or zsh \(got "fish"\)/],
    ];
    for (const [args, re] of cases) {
      const r = runCairn(args, noServer);
      expect(r.stderr, args.join(' ')).toMatch(re);
      expect(r.stderr, args.join(' ')).toMatch(/\nRun 'cairn [a-z0-9 -]*--help' for /);
      expect(r.stderr, args.join(' ')).not.toMatch(/To specify a positional argument|must have required property|must match format/);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stdout).toBe('');
    }
    // A server setting that cannot work is one error line naming it as given, before anything opens.
    for (const [args, env, re] of [
      [['ca', 'start', '--data-dir', '/nonexistent/cairn', '--listen', '8080'], {}, /^error: --listen must be HOST:PORT \(e\.g\. 127\.0\.0\.1:8080 or \[::1\]:8080\), got "8080"\n$/],
      [['ca', 'start', '--data-dir', '/nonexistent/cairn', '--listen', '127.0.0.1:0', '--tls-listen', '127.0.0.1:0'], { CAIRN_NO_MIGRATE: 'maybe' }, /^error: CAIRN_NO_MIGRATE must be 1 or 0 \(true\/false\), got "maybe"\n$/],
      [['agent', 'start', '--workload-max-connections-per-uid', '0'], {}, /^error: --workload-max-connections-per-uid must be a whole number from 1 to 9999999 \(got "0"\)\n/],
      [['agent', 'healthcheck', '--wait', 'forever'], {}, /^error: --wait must be a duration like 90s/],
    ] as const) {
      const r = runCairn([...args], { ...noServer, CAIRN_LISTEN: undefined, DATABASE_URL: undefined, ...env });
      expect(r.stderr, args.join(' ')).toMatch(re);
      expect(r.status, args.join(' ')).toBe(2);
    }
  });

  onceIt('`cairn --version` and `cairn version` print the package version, the one /healthz and the banners show', () => {
    const { version } = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string };
    expect(cairnVersion()).toBe(version);
    expect(runCairn(['--version']).stdout).toBe(`cairn ${version}\n`);
    expect(runCairn(['version']).stdout).toBe(`cairn ${version}\n`);
    expect(JSON.parse(runCairn(['version', '--json']).stdout)).toEqual({ version });
  });

  onceIt('`cairn completion bash`, sourced in a real bash, completes commands, subcommands, flags and values', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cairn-completion-'));
    try {
      const script = join(dir, 'cairn.bash');
      const out = runCairn(['completion', 'bash']);
      expect(out.status).toBe(0);
      writeFileSync(script, out.stdout);
      const complete = (words: string[]): string[] => {
        const r = spawnSync('bash', ['--norc', '--noprofile', '-c', `source ${script} || exit 9
COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _cairn; printf '%s\\n' "\${COMPREPLY[@]}"`], { encoding: 'utf8', cwd: dir });
        expect(r.status, r.stderr).toBe(0);
        return r.stdout.split('\n').filter(Boolean);
      };
      const registered = spawnSync('bash', ['--norc', '--noprofile', '-c', `source ${script} && complete -p cairn`], { encoding: 'utf8' });
      expect(registered.stdout.trim()).toBe('complete -F _cairn cairn');
      expect(complete(['cairn', 'trust-d'])).toEqual(['trust-domain']);
      expect(complete(['cairn', 'trust-domain', 'up'])).toEqual(['update']);
      expect(complete(['cairn', 'entry', 'create', '--sel'])).toEqual(['--selector']);
      expect(complete(['cairn', 'attestor', 'k8s-psat', 'add', '--token'])).toEqual(['--token-review']);
      expect(complete(['cairn', 'x509', 'mint', '--key-type', ''])).toEqual(['ec-p256', 'ec-p384', 'rsa-2048']);
      expect(complete(['cairn', 'help', 'trust-domain', 'de'])).toEqual(['delete']);
      expect(complete(['cairn', 'completion', ''])).toEqual(['bash', 'zsh']);
      expect(complete(['cairn', 'agent', 'he'])).toEqual(['healthcheck']);
      expect(complete(['cairn', 'mig'])).toEqual(['migrate']);
      expect(complete(['cairn', 'ca', 'start', '--no-m'])).toEqual(['--no-migrate']);
      expect(complete(['cairn', 'ca', 'start', '--ca-name-constraints', ''])).toEqual(['on', 'off']);
      expect(complete(['cairn', 'agent', 'start', '--workload-attestor', 's'])).toEqual(['systemd']);
      expect(complete(['cairn', 'ca', 'start', '--config', 'cairn.b'])).toEqual(['cairn.bash']);
      // a value is not taken for a command word
      expect(complete(['cairn', 'entry', 'list', '--spiffe-id', 'create', '--j'])).toEqual(['--json']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  onceIt('`cairn completion zsh` registers with compinit and completes through the same tables in a real zsh', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cairn-completion-'));
    try {
      const script = join(dir, '_cairn');
      writeFileSync(script, runCairn(['completion', 'zsh']).stdout);
      const r = spawnSync('zsh', ['-f', '-c', `autoload -Uz compinit && compinit -u -D && source ${script} || exit 9
print -r -- "registered=$_comps[cairn]"
print -r -- "$(__cairn_candidates "" trust-domain)"
print -r -- "$(__cairn_candidates --sel entry create)"
print -r -- "$(__cairn_candidates "" agent start --workload-attestor)"`], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      const [registered, subs, flags, values] = r.stdout.split('\n');
      expect(registered).toBe('registered=_cairn');
      expect(subs).toBe('create list show update delete');
      expect(flags!.split(' ')).toContain('--selector');
      expect(values).toBe('unix k8s systemd');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('`--config` files: unknown keys, missing variables and bad values are errors naming the key; flags override the file', { timeout: 120_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cairn-config-'));
    try {
      const file = join(dir, 'cairn.yaml');
      writeFileSync(file, 'lisen: 127.0.0.1:1\n');
      let r = runCairn(['ca', 'start', '--config', file]);
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`^error: unknown key "lisen" in ${file} \\(did you mean listen\\?\\)\\nRun 'cairn ca start --help'`));
      writeFileSync(file, 'listen: ${CAIRN_TEST_UNSET_VAR}\n');
      r = runCairn(['ca', 'start', '--config', file], { CAIRN_TEST_UNSET_VAR: undefined });
      expect(r.stderr).toMatch(/^error: listen in .*cairn\.yaml: environment variable CAIRN_TEST_UNSET_VAR is not set/);
      writeFileSync(file, 'listen: ${ADDR}\n');
      r = runCairn(['ca', 'start', '--config', file], { ADDR: 'nowhere' });
      expect(r.stderr).toMatch(/^error: listen in .*cairn\.yaml must be HOST:PORT/);
      // settings checked before anything opens are named by their key in the file, one line, exit 2
      writeFileSync(file, 'request-timeout: 0s\n');
      r = runCairn(['ca', 'start', '--config', file]);
      expect(r.stderr).toBe(`error: request-timeout in ${file} must be at least 1s, got "0s"\n`);
      expect(r.status).toBe(2);
      const openKek = join(dir, 'kek-open');
      writeFileSync(openKek, Buffer.alloc(32, 7).toString('base64'), { mode: 0o644 });
      chmodSync(openKek, 0o644);
      writeFileSync(file, `data-dir: ${join(dir, 'never')}\nkek-file: ${openKek}\nca-name-constraints: off\nmax-connections: 50\n`);
      r = runCairn(['ca', 'start', '--config', file], { CAIRN_KEK_FILE: undefined });
      expect(r.stderr).toBe(`error: kek-file in ${file}: the KEK file ${openKek} is accessible to other users (mode 0644); it must be readable by the CA alone: run chmod 600 ${openKek}\n`);
      expect(r.status).toBe(2);
      expect(existsSync(join(dir, 'never'))).toBe(false);
      r = runCairn(['ca', 'start', '--config', join(dir, 'missing.yaml')]);
      expect(r.stderr).toMatch(/^error: cannot read the config file .*missing\.yaml: ENOENT/);
      expect(r.status).toBe(2);

      // a real CA from the file: the listen address from the environment through ${VAR}, a default
      // through ${VAR:-…}, the TLS listener given by both (the flag wins), the data dir from the file
      const port = await freePort();
      let databaseUrl: string | undefined;
      let drop: (() => Promise<void>) | undefined;
      if (storeKind() === 'postgres') ({ url: databaseUrl, drop } = await createPgDatabase());
      writeFileSync(file, [
        'data-dir: ${CONFIG_DIR}/state',
        'listen: 127.0.0.1:${HTTP_PORT}',
        'tls-listen: 127.0.0.1:${TLS_PORT:-1}',
        'tls-san:',
        '  - cairn.config.test',
        ...(databaseUrl ? ['database-url: ${DB_URL}'] : []),
        '',
      ].join('\n'));
      // a boolean setting from the file: no-migrate on a fresh database is refused, naming cairn migrate
      const noMigrate = join(dir, 'no-migrate.yaml');
      writeFileSync(noMigrate, ['data-dir: ${CONFIG_DIR}/state', 'listen: 127.0.0.1:0', 'tls-listen: 127.0.0.1:0', 'no-migrate: true', ...(databaseUrl ? ['database-url: ${DB_URL}'] : []), ''].join('\n'));
      r = await runCairnAsync(['ca', 'start', '--config', noMigrate], { CONFIG_DIR: dir, DB_URL: databaseUrl, CAIRN_DATA_DIR: undefined, CAIRN_LISTEN: undefined, DATABASE_URL: undefined, CAIRN_NO_MIGRATE: undefined, CAIRN_ADMIN_TOKEN: undefined });
      // (the CA's logs share stderr: the refusal is its one error: line)
      expect(r.stderr.split('\n').filter((l) => l.startsWith('error:'))).toEqual([expect.stringMatching(/^error: the database schema is at version 0 but this Cairn \(\S+\) needs version \d+: run `cairn migrate`/)]);
      expect(r.status).toBe(1);
      const ca = spawnCairn(['ca', 'start', '--config', file, '--tls-listen', '127.0.0.1:0'], { CONFIG_DIR: dir, HTTP_PORT: String(port), DB_URL: databaseUrl, CAIRN_DATA_DIR: undefined, CAIRN_LISTEN: '127.0.0.1:2', DATABASE_URL: undefined, CAIRN_ADMIN_TOKEN: undefined });
      try {
        await ca.waitFor(/Cairn \S+ CA listening on/, 120_000); // the ready line, printed once SIGTERM is handled
        expect(ca.stderr() + ca.stdout()).toMatch(new RegExp(`listening on http://127\\.0\\.0\\.1:${port} and https://127\\.0\\.0\\.1:(?!1\\b)\\d+`));
        expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
        expect(existsSync(join(dir, 'state', 'admin-token'))).toBe(true);
      } finally {
        expect(await ca.stop('SIGTERM')).toBe(0);
        await drop?.();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
