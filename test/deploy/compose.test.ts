import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { Ajv } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDocument } from 'yaml';
import { undocumentedFlags } from '../../cli/registry.js';
import { packageRoot } from '../../lib/paths.js';
import { storeKind } from '../support/db.js';
import { CLI, freePort, spawnCairn, type Spawned } from '../support/processes.js';

const ROOT = packageRoot();
const BOOTSTRAP = join(ROOT, 'deploy', 'compose', 'bootstrap.sh');
const INIT_SECRETS = join(ROOT, 'deploy', 'compose', 'init-secrets.sh');

type Json = any;

function loadCompose(src = readFileSync(join(ROOT, 'compose.yaml'), 'utf8')): Json {
  // Compose resolves YAML merge keys (<<: *anchor); so does this parse.
  const doc = parseDocument(src, { merge: true });
  if (doc.errors.length > 0) throw new Error(doc.errors.map((e) => e.message).join('; '));
  return doc.toJS();
}

/** The Compose Specification schema as vendored by dclint, compiled once. */
const validateSchema = (() => {
  const file = join(dirname(createRequire(import.meta.url).resolve('dclint/package.json')), 'schemas/compose.schema.json');
  const schema = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  delete schema.$schema; // draft-07 by URL, which ajv 8 does not preload; the schema itself compiles fine
  const ajv = new Ajv({ allErrors: true, allowUnionTypes: true, strictTypes: false, strict: false });
  return ajv.compile(schema);
})();

function schemaErrors(compose: Json): string[] {
  return validateSchema(compose) ? [] : (validateSchema.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''} ${JSON.stringify(e.params)}`);
}

/** `${VAR:-default}` as Compose would resolve it with VAR unset. */
const interpolate = (value: string): string => value.replace(/\$\{(\w+)(?::?-([^}]*))?\}/g, (_, _name: string, def?: string) => def ?? '');

/** depends_on in either form, as name → condition. */
function dependsOn(service: Json): Record<string, string> {
  const d = service.depends_on ?? {};
  if (Array.isArray(d)) return Object.fromEntries(d.map((n: string) => [n, 'service_started']));
  return Object.fromEntries(Object.entries(d).map(([n, v]) => [n, (v as { condition?: string }).condition ?? 'service_started']));
}

interface Mount {
  source: string | undefined;
  target: string;
  readOnly: boolean;
  type: 'volume' | 'bind' | 'tmpfs' | string;
}

/** A service's volumes, short or long syntax. */
function mountsOf(service: Json): Mount[] {
  return (service.volumes ?? []).map((v: Json): Mount => {
    if (typeof v === 'string') {
      const [source, target, mode] = v.split(':');
      if (target === undefined) return { source: undefined, target: source!, readOnly: false, type: 'volume' };
      return { source, target, readOnly: (mode ?? '').split(',').includes('ro'), type: /^[./~]/.test(source!) ? 'bind' : 'volume' };
    }
    return { source: v.source, target: v.target, readOnly: v.read_only === true, type: v.type };
  });
}

const envOf = (service: Json): Record<string, string> => {
  const env = service.environment ?? {};
  if (Array.isArray(env)) return Object.fromEntries(env.map((kv: string) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, interpolate(String(v))]));
};

/** The volume the secrets service generates the KEK and admin token into, as it mounts it. */
function secretsVolume(compose: Json = loadCompose()): Mount {
  const init = compose.services.secrets;
  const m = mountsOf(init).find((x) => x.target === envOf(init).SECRETS_DIR);
  if (!m || m.type !== 'volume' || m.source === undefined) throw new Error('the secrets service mounts no named volume at its SECRETS_DIR');
  return m;
}

/** Services named by depends_on that do not exist, and named volumes or secrets that are not declared. */
function referenceProblems(compose: Json): string[] {
  const problems: string[] = [];
  const services = compose.services ?? {};
  const volumes = new Set(Object.keys(compose.volumes ?? {}));
  const secrets = new Set(Object.keys(compose.secrets ?? {}));
  for (const [name, service] of Object.entries<Json>(services)) {
    for (const dep of Object.keys(dependsOn(service))) if (!(dep in services)) problems.push(`${name}: depends_on ${dep}, which is not a service`);
    for (const m of mountsOf(service)) if (m.type === 'volume' && m.source !== undefined && !volumes.has(m.source)) problems.push(`${name}: volume ${m.source} is not declared`);
    for (const s of service.secrets ?? []) {
      const secret = typeof s === 'string' ? s : s.source;
      if (!secrets.has(secret)) problems.push(`${name}: secret ${secret} is not declared`);
    }
  }
  for (const [name, secret] of Object.entries<Json>(compose.secrets ?? {})) {
    if (secret.file && !existsSync(join(ROOT, secret.file))) problems.push(`secret ${name}: ${secret.file} does not exist`);
  }
  return problems;
}

/** The value following `flag` in a command line. */
function flag(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

/** The cairn invocations in bootstrap.sh, as words after `"${cairn[@]}"`. */
function bootstrapInvocations(): string[][] {
  return readFileSync(BOOTSTRAP, 'utf8').split('\n')
    .filter((l) => l.includes('"${cairn[@]}" '))
    .map((l) => l.slice(l.indexOf('"${cairn[@]}" ') + '"${cairn[@]}" '.length)
      .replace(/\)\s*$/, '') // the end of a $( … )
      .split(/\s+(?:\d?>|\||&&|;)/)[0]! // redirections and what follows
      .trim().split(/\s+/));
}

describe('compose.yaml', () => {
  const compose = loadCompose();
  const services = compose.services as Record<string, Json>;

  it('validates against the Compose Specification schema', () => {
    expect(schemaErrors(compose)).toEqual([]);
  });

  it('has postgres, the first-start secrets, two CA replicas, bootstrap, agent and workload, with no dangling references', () => {
    expect(Object.keys(services).sort()).toEqual(['agent', 'bootstrap', 'ca1', 'ca2', 'postgres', 'secrets', 'workload']);
    expect(referenceProblems(compose)).toEqual([]);
  });

  it('postgres is healthy only once pg_isready says so; the CAs wait for that and for the first-start secrets', () => {
    expect(services.postgres.image).toBe('postgres:16');
    expect(JSON.stringify(services.postgres.healthcheck.test)).toContain('pg_isready');
    for (const ca of ['ca1', 'ca2']) expect(dependsOn(services[ca])).toEqual({ postgres: 'service_healthy', secrets: 'service_completed_successfully' });
  });

  it('the CA replicas share one database, admin token and KEK, run ca start, and are healthy once /readyz answers', () => {
    const [a, b] = [envOf(services.ca1), envOf(services.ca2)];
    for (const key of ['DATABASE_URL', 'CAIRN_ADMIN_TOKEN_FILE', 'CAIRN_KEK_FILE']) {
      expect(a[key], key).toBeTruthy();
      expect(b[key], key).toBe(a[key]);
    }
    expect(a.CAIRN_ADMIN_TOKEN).toBeUndefined();
    const db = new URL(a.DATABASE_URL!);
    expect(db.hostname).toBe('postgres');
    expect(decodeURIComponent(db.password)).toBe(envOf(services.postgres).POSTGRES_PASSWORD);
    expect(db.pathname).toBe(`/${envOf(services.postgres).POSTGRES_DB}`);
    // the KEK and the admin token are files the secrets service generated into one volume, mounted read-only
    const secrets = secretsVolume();
    for (const ca of ['ca1', 'ca2']) {
      expect(services[ca].build).toBe('.');
      expect(services[ca].secrets).toBeUndefined();
      for (const file of [a.CAIRN_KEK_FILE!, a.CAIRN_ADMIN_TOKEN_FILE!]) {
        const m = mountsOf(services[ca]).find((x) => file.startsWith(x.target + '/'));
        expect(m, `${ca} ${file}`).toMatchObject({ source: secrets.source, target: secrets.target, readOnly: true, type: 'volume' });
      }
      const cmd: string[] = services[ca].command;
      expect(cmd.slice(0, 2)).toEqual(['ca', 'start']);
      expect(flag(cmd, '--listen')).toBe('0.0.0.0:8080');
      // the plain listener (public documents for the other containers) serves admin routes to loopback only
      expect(flag(cmd, '--plain-admin')).toBe('loopback');
      expect(flag(cmd, '--tls-listen')).toBe('0.0.0.0:8443');
      expect(JSON.stringify(services[ca].healthcheck.test)).toMatch(/node.*fetch\('http:\/\/127\.0\.0\.1:8080\/readyz'\)/);
      expect(undocumentedFlags(cmd)).toEqual([]);
      // join tokens carry --tls-public-url: a name both replicas answer to and their certificates carry
      const tlsHost = new URL(flag(cmd, '--tls-public-url')!).hostname;
      expect(services[ca].networks.default.aliases).toContain(tlsHost);
      expect(cmd.filter((_, i) => cmd[i - 1] === '--tls-san')).toContain(tlsHost);
    }
  });

  it('ships no usable KEK or admin token: the secrets service generates them into a volume on first start', () => {
    // nothing secret in the repository's compose files
    expect(compose.secrets).toBeUndefined();
    for (const file of ['compose.yaml', ...readdirSync(join(ROOT, 'deploy', 'compose')).map((f) => `deploy/compose/${f}`)]) {
      const text = readFileSync(join(ROOT, file), 'utf8');
      expect(text, file).not.toMatch(/cairn-admin\.[A-Za-z0-9]{20,}/);
      for (const word of text.split(/[\s"'=:]+/)) {
        if (/^[A-Za-z0-9+/]{43}=$/.test(word) || /^[0-9a-f]{64}$/i.test(word)) expect.fail(`${file} holds what looks like a 32-byte key: ${word}`);
      }
    }
    expect(readdirSync(join(ROOT, 'deploy', 'compose')).filter((f) => /kek|token|secret/i.test(f) && f !== 'init-secrets.sh')).toEqual([]);
    // the generator: a one-shot run of init-secrets.sh with the volume mounted read-write, no network,
    // root with only CHOWN (to hand the files to the CAs' uid), and the files where the CAs read them
    const init = services.secrets;
    const workdir = /^WORKDIR\s+(\S+)/m.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))![1]!;
    expect(init.entrypoint).toEqual(['bash', posix.join(workdir, 'deploy/compose/init-secrets.sh')]);
    expect(init.restart).toBe('no');
    expect(init.network_mode).toBe('none');
    expect(init.cap_drop).toEqual(['ALL']);
    expect(init.cap_add).toEqual(['CHOWN']);
    const secrets = secretsVolume();
    expect(secrets.readOnly).toBe(false);
    const env = envOf(init);
    expect(env.SECRETS_DIR).toBe(secrets.target);
    const caEnv = envOf(services.ca1);
    const caSecrets = mountsOf(services.ca1).find((m) => m.source === secrets.source)!;
    expect(posix.relative(caSecrets.target, caEnv.CAIRN_KEK_FILE!)).toBe('kek');
    expect(posix.relative(caSecrets.target, caEnv.CAIRN_ADMIN_TOKEN_FILE!)).toBe('admin-token');
    const caUser = String(/^USER\s+(\S+)/m.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))![1]);
    expect(env.SECRETS_OWNER).toBe(caUser);
    // only the CAs (read-only), the bootstrap (read-only) and the generator see the volume
    const holders = Object.entries(services).filter(([, svc]) => mountsOf(svc).some((m) => m.source === secrets.source)).map(([n]) => n).sort();
    expect(holders).toEqual(['bootstrap', 'ca1', 'ca2', 'secrets']);
    for (const n of ['bootstrap', 'ca1', 'ca2']) expect(mountsOf(services[n]).find((m) => m.source === secrets.source)?.readOnly, n).toBe(true);
  });

  it('bootstrap runs deploy/compose/bootstrap.sh once ca1 is healthy, in ca1\'s network namespace: the admin token goes over loopback only', () => {
    const bs = services.bootstrap;
    const workdir = /^WORKDIR\s+(\S+)/m.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))![1]!;
    expect(bs.entrypoint).toEqual(['bash', posix.join(workdir, 'deploy/compose/bootstrap.sh')]);
    expect(dependsOn(bs)).toEqual({ ca1: 'service_healthy' });
    expect(bs.restart).toBe('no');
    expect(bs.network_mode).toBe('service:ca1');
    expect(String(bs.user)).toBe('1000:1000');
    const env = envOf(bs);
    expect(env.CAIRN_ADMIN_TOKEN).toBeUndefined();
    expect(env.CAIRN_ADMIN_TOKEN_FILE).toBe(envOf(services.ca1).CAIRN_ADMIN_TOKEN_FILE);
    const server = new URL(env.CAIRN_SERVER!);
    expect(server.protocol).toBe('http:');
    expect(server.hostname).toBe('127.0.0.1');
    expect(`0.0.0.0:${server.port}`).toBe(flag(services.ca1.command, '--listen'));
    // no other service talks to the admin API at all
    for (const [name, svc] of Object.entries(services)) {
      if (name === 'bootstrap' || name === 'ca1' || name === 'ca2') continue;
      expect(JSON.stringify(envOf(svc)), name).not.toMatch(/CAIRN_ADMIN_TOKEN|CAIRN_SERVER/);
    }
  });

  it('bootstrap.sh passes bash -n and calls cairn only with documented flags', () => {
    expect(() => execFileSync('bash', ['-n', BOOTSTRAP], { stdio: 'pipe' })).not.toThrow();
    const calls = bootstrapInvocations();
    expect(calls.map((c) => c.slice(0, 2).join(' '))).toEqual(expect.arrayContaining(['trust-domain create', 'token create', 'entry create', 'entry list']));
    for (const call of calls) expect(undocumentedFlags(call), call.join(' ')).toEqual([]);
    const script = readFileSync(BOOTSTRAP, 'utf8');
    expect(script).toContain('--agent-id "$agent_id"');
    expect(script).toContain('--selector "unix:uid:$workload_uid"');
    expect(script).toMatch(/agent_id="\$\{AGENT_ID:-spiffe:\/\/\$trust_domain\/agent\/compose\}"/);
    expect(script).toMatch(/trust_domain="\$\{TRUST_DOMAIN:-example\.org\}"/);
    expect(script).toMatch(/workload_id="\$\{WORKLOAD_ID:-spiffe:\/\/\$trust_domain\/workload\/example\}"/);
  });

  it('the agent: host PID namespace, the join token from the bootstrap volume, the socket on a named volume', () => {
    const agent = services.agent;
    expect(agent.pid).toBe('host');
    const cmd: string[] = agent.command;
    expect(cmd.slice(0, 2)).toEqual(['agent', 'start']);
    expect(undocumentedFlags(cmd)).toEqual([]);
    expect(dependsOn(agent).bootstrap).toBe('service_completed_successfully');
    expect(envOf(agent).NODE_OPTIONS).toBe('--max-semi-space-size=1');
    // the token file the agent reads is the one bootstrap writes, through the same volume
    const tokenFile = flag(cmd, '--join-token-file')!;
    const bsEnv = envOf(services.bootstrap);
    expect(bsEnv.JOIN_TOKEN_FILE).toBe(tokenFile);
    const onVolume = (service: Json, path: string) => mountsOf(service).find((m) => m.type === 'volume' && path.startsWith(m.target + '/'));
    const agentSide = onVolume(agent, tokenFile);
    const bootstrapSide = onVolume(services.bootstrap, tokenFile);
    expect(agentSide?.source).toBeDefined();
    expect(agentSide?.source).toBe(bootstrapSide?.source);
    expect(agentSide?.target).toBe(bootstrapSide?.target);
    expect(agentSide?.readOnly).toBe(true);
    expect(bootstrapSide?.readOnly).toBe(false);
    expect(onVolume(agent, flag(cmd, '--data-dir')! + '/')?.source).toBeDefined(); // state survives container restarts
  });

  it('the workload shares the agent\'s socket volume read-only, runs svid watch as the uid its entry selects', () => {
    const agentCmd: string[] = services.agent.command;
    const socket = flag(agentCmd, '--socket')!;
    const socketVolume = (service: Json) => mountsOf(service).find((m) => m.type === 'volume' && socket.startsWith(m.target + '/'));
    const [agentSide, workloadSide] = [socketVolume(services.agent), socketVolume(services.workload)];
    expect(agentSide?.source).toBeDefined();
    expect(workloadSide?.source).toBe(agentSide?.source);
    expect(workloadSide?.target).toBe(agentSide?.target);
    expect(workloadSide?.readOnly).toBe(true);
    expect(agentSide?.readOnly).toBe(false);
    const wl = services.workload;
    expect(envOf(wl).SPIFFE_ENDPOINT_SOCKET).toBe(`unix://${socket}`);
    const cmd: string[] = wl.command;
    expect(cmd.slice(0, 2)).toEqual(['svid', 'watch']);
    expect(flag(cmd, '--write')).toBeDefined();
    expect(undocumentedFlags(cmd)).toEqual([]);
    const uid = String(wl.user).split(':')[0];
    expect(uid).toBe('1000');
    expect(readFileSync(BOOTSTRAP, 'utf8')).toContain(`workload_uid="\${WORKLOAD_UID:-${uid}}"`);
    expect(dependsOn(wl).agent).toBeDefined();
  });

  it('rejects an unknown top-level key, an unknown service key and a bad depends_on', () => {
    const withBogusKey = { ...structuredClone(compose), servicez: {} };
    expect(schemaErrors(withBogusKey).join('\n')).toMatch(/additional properties.*servicez/);

    const withBogusServiceKey = structuredClone(compose);
    withBogusServiceKey.services.agent.pidd = 'host';
    expect(schemaErrors(withBogusServiceKey).join('\n')).toMatch(/\/services\/agent .*pidd/);

    const badCondition = structuredClone(compose);
    badCondition.services.agent.depends_on.bootstrap.condition = 'service_finished';
    expect(schemaErrors(badCondition).length).toBeGreaterThan(0);

    const badType = structuredClone(compose);
    badType.services.workload.depends_on = 'agent';
    expect(schemaErrors(badType).length).toBeGreaterThan(0);

    const missingService = structuredClone(compose);
    missingService.services.agent.depends_on.boostrap = { condition: 'service_completed_successfully' };
    expect(schemaErrors(missingService)).toEqual([]); // the schema cannot tell
    expect(referenceProblems(missingService)).toEqual(['agent: depends_on boostrap, which is not a service']);

    const undeclared = structuredClone(compose);
    undeclared.services.workload.volumes = ['socket:/run/cairn/sockets:ro'];
    undeclared.services.ca2.secrets = ['kek2'];
    expect(referenceProblems(undeclared)).toEqual(['ca2: secret kek2 is not declared', 'workload: volume socket is not declared']);
  });

  it('a YAML syntax error is reported', () => {
    expect(() => loadCompose('services:\n  a: [\n')).toThrow();
  });
});

// The Compose wiring, run outside Docker: init-secrets.sh twice (the first start generates, the next
// keeps), the CA with ca1's command line and environment on those files (embedded store instead of
// PostgreSQL), bootstrap.sh twice over the CA's loopback, the agent with the token bootstrap wrote, and
// the workload's `svid watch` with its SPIFFE_ENDPOINT_SOCKET.
describe.runIf(storeKind() === 'embedded')('the compose services\' command lines, run as written', () => {
  const compose = loadCompose();
  const services = compose.services as Record<string, Json>;
  // made in beforeAll: a skipped describe's body still runs at collection, its hooks do not
  let dir: string;
  const running: Spawned[] = [];
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-compose-'));
  });
  afterAll(async () => {
    for (const p of running.reverse()) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const mapArgs = (args: string[], paths: Record<string, string>) => args.map((a) => Object.entries(paths).reduce((s, [from, to]) => s.split(from).join(to), a));
  const bash = (script: string, env: Record<string, string | undefined>): Promise<{ status: number | null; stderr: string }> =>
    new Promise((resolve) => {
      const child = spawn('bash', [script], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.once('close', (status) => resolve({ status, stderr }));
    });

  it('first start generates the KEK and admin token (0600, the CAs\' uid) once; the CA uses them; bootstrap is idempotent; the agent attests; the workload gets its SVID', async () => {
    const secretsDir = join(dir, 'secrets');
    const bootstrapDir = join(dir, 'bootstrap');
    const owner = `${process.getuid!()}:${process.getgid!()}`;
    const initEnv = { ...envOf(services.secrets), SECRETS_DIR: secretsDir, SECRETS_OWNER: owner, BOOTSTRAP_DIR: bootstrapDir };
    const first = await bash(INIT_SECRETS, initEnv);
    expect(first.status, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/generated kek[\s\S]*generated admin-token/);
    const kek = readFileSync(join(secretsDir, 'kek'), 'utf8');
    const adminToken = readFileSync(join(secretsDir, 'admin-token'), 'utf8').trim();
    expect(Buffer.from(kek.trim(), 'base64').length).toBe(32);
    expect(adminToken).toMatch(/^cairn-admin\.[A-Za-z0-9]{43}$/);
    for (const f of ['kek', 'admin-token']) {
      const st = statSync(join(secretsDir, f));
      expect(st.mode & 0o777, f).toBe(0o600);
      expect(`${st.uid}:${st.gid}`, f).toBe(owner);
    }
    expect(statSync(bootstrapDir).mode & 0o777).toBe(0o700);
    expect(readdirSync(secretsDir).sort()).toEqual(['admin-token', 'kek']); // no temp file left
    // a restart keeps them: a new KEK would orphan every key already sealed in the database
    const again = await bash(INIT_SECRETS, initEnv);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/kek exists; kept[\s\S]*admin-token exists; kept/);
    expect(readFileSync(join(secretsDir, 'kek'), 'utf8')).toBe(kek);
    expect(readFileSync(join(secretsDir, 'admin-token'), 'utf8').trim()).toBe(adminToken);
    // another install generates others
    const other = join(dir, 'other-secrets');
    expect((await bash(INIT_SECRETS, { ...initEnv, SECRETS_DIR: other, BOOTSTRAP_DIR: undefined })).status).toBe(0);
    expect(readFileSync(join(other, 'kek'), 'utf8')).not.toBe(kek);
    expect(readFileSync(join(other, 'admin-token'), 'utf8').trim()).not.toBe(adminToken);

    const [http, tls] = [await freePort(), await freePort()];
    const caSecrets = mountsOf(services.ca1).find((m) => m.source === secretsVolume(compose).source)!.target;
    const caEnv = envOf(services.ca1);
    const ca = spawnCairn(mapArgs(services.ca1.command, {
      '0.0.0.0:8080': `127.0.0.1:${http}`, '0.0.0.0:8443': `127.0.0.1:${tls}`, 'https://ca:8443': `https://127.0.0.1:${tls}`, '/var/lib/cairn': join(dir, 'ca'),
    }), { ...caEnv, DATABASE_URL: undefined, CAIRN_KEK_FILE: caEnv.CAIRN_KEK_FILE!.replace(caSecrets, secretsDir), CAIRN_ADMIN_TOKEN_FILE: caEnv.CAIRN_ADMIN_TOKEN_FILE!.replace(caSecrets, secretsDir), CAIRN_ADMIN_TOKEN: undefined, CAIRN_SERVER: undefined });
    running.push(ca);
    await ca.waitFor(/"plainAdmin":"loopback"/, 120_000);
    expect(ca.stderr()).not.toMatch(/generated a new key-encryption key/); // it took the generated one (logs are on stderr)

    const tokenFile = join(bootstrapDir, 'join-token');
    const bsEnv: Record<string, string | undefined> = {
      ...envOf(services.bootstrap),
      // bootstrap shares ca1's network namespace: ca1's plain listener is on its loopback
      CAIRN_SERVER: envOf(services.bootstrap).CAIRN_SERVER!.replace(/:8080$/, `:${http}`),
      CAIRN_ADMIN_TOKEN_FILE: envOf(services.bootstrap).CAIRN_ADMIN_TOKEN_FILE!.replace(caSecrets, secretsDir),
      CAIRN_ADMIN_TOKEN: undefined,
      JOIN_TOKEN_FILE: tokenFile,
      CAIRN_CLI: `${process.execPath} ${CLI}`,
      WORKLOAD_UID: String(process.getuid!()),
    };
    expect(bsEnv.CAIRN_SERVER).toBe(`http://127.0.0.1:${http}`);
    const first1 = await bash(BOOTSTRAP, bsEnv);
    expect(first1.status, first1.stderr).toBe(0);
    expect(first1.stderr).toMatch(/created trust domain example\.org/);
    expect(first1.stderr).toMatch(/registered spiffe:\/\/example\.org\/workload\/example/);
    const firstToken = readFileSync(tokenFile, 'utf8').trim();
    expect(firstToken).toMatch(/^cairn1\./);
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    const second = await bash(BOOTSTRAP, bsEnv);
    expect(second.status, second.stderr).toBe(0);
    expect(second.stderr).toMatch(/trust domain example\.org exists/);
    expect(second.stderr).toMatch(/entry spiffe:\/\/example\.org\/workload\/example .* exists/);
    const entries = await fetch(`http://127.0.0.1:${http}/v1/entries?trustDomain=example.org`, { headers: { authorization: `Bearer ${adminToken}` } }).then((r) => r.json()) as { entries: { spiffeId: string; parentId: string; selectors: string[] }[] };
    expect(entries.entries).toEqual([expect.objectContaining({ spiffeId: 'spiffe://example.org/workload/example', parentId: 'spiffe://example.org/agent/compose', selectors: [`unix:uid:${process.getuid!()}`] })]);
    // without a token setting it says what is missing
    const noToken = await bash(BOOTSTRAP, { ...bsEnv, CAIRN_ADMIN_TOKEN_FILE: undefined });
    expect(noToken.status).toBe(1);
    expect(noToken.stderr).toMatch(/set CAIRN_ADMIN_TOKEN_FILE/);

    const socket = join(dir, 'sockets', 'agent.sock');
    const agent = spawnCairn(mapArgs(services.agent.command, { '/var/lib/cairn-agent': join(dir, 'agent'), '/run/cairn/sockets/agent.sock': socket, '/bootstrap/join-token': tokenFile }), envOf(services.agent));
    running.push(agent);
    await agent.waitFor(/serving the Workload API/, 120_000);
    expect(agent.stderr() + agent.stdout()).toContain('spiffe://example.org/agent/compose');

    const svidDir = join(dir, 'svid');
    const wlEnv = envOf(services.workload);
    const workload = spawnCairn(mapArgs(services.workload.command, { '/var/run/svid': svidDir }), { ...wlEnv, SPIFFE_ENDPOINT_SOCKET: wlEnv.SPIFFE_ENDPOINT_SOCKET!.replace('/run/cairn/sockets/agent.sock', socket) });
    running.push(workload);
    await workload.waitFor(/spiffe:\/\/example\.org\/workload\/example/, 120_000);
    for (const f of ['svid.pem', 'svid.key', 'bundle.pem']) expect(existsSync(join(svidDir, f)), f).toBe(true);
  }, 300_000);
});
