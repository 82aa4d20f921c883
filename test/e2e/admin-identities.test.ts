import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redeem } from '../support/agent-client.js';
import { startCaProcess, type CaProcess } from '../support/ca-process.js';
import { createPgDatabase, storeKind } from '../support/db.js';
import { runCairnAsync, spawnCairn, type Spawned } from '../support/processes.js';

const A = 'a.admins.test';
const B = 'b.admins.test';
const SECRET = /^cairn-admin\.[A-Za-z0-9]{43}\n$/;

/**
 * Named admin credentials and admin SVIDs with real processes: `cairn ca start` (on PostgreSQL two
 * replicas sharing the database; the embedded store has one owner), `cairn agent start`, and the CLI
 * over TLS with the CA's pin. Every wait is on a condition, with deadlines for a loaded host.
 */
describe(`admin identities with real processes (${storeKind()} store)`, { timeout: 600_000 }, () => {
  let dir: string;
  let drop: (() => Promise<void>) | undefined;
  let databaseUrl: string | undefined;
  const replicas: CaProcess[] = [];
  const pins: string[] = [];
  let agent: Spawned | undefined;
  const T1 = 'cairn-admin.' + 'Tone'.repeat(10) + 'abc';
  const T2 = 'cairn-admin.' + 'Ttwo'.repeat(10) + 'abc';
  let shortCreatedAt = 0;
  const secrets: Record<string, string> = {};

  const pinOf = (p: CaProcess): string => /TLS pin (sha256:[A-Za-z0-9_-]{43})/.exec(p.process.stderr() + p.process.stdout())![1]!;
  /** The CLI against replica `i` over TLS with its pin; `auth` is a secret, or extra env (an SVID flag needs none). */
  const cli = (i: number, args: string[], auth: string | undefined, extra: Record<string, string | undefined> = {}) =>
    runCairnAsync(args, {
      CAIRN_DATA_DIR: join(dir, 'cli'),
      CAIRN_SERVER: replicas[i]!.tlsUrl,
      CAIRN_CA_PIN: pins[i],
      CAIRN_CA_FILE: undefined,
      CAIRN_ADMIN_TOKEN: auth,
      CAIRN_ADMIN_TOKEN_FILE: undefined,
      SPIFFE_ENDPOINT_SOCKET: undefined,
      ...extra,
    });
  const ok = async (i: number, args: string[], auth: string | undefined, extra?: Record<string, string | undefined>) => {
    const r = await cli(i, args, auth, extra);
    expect(r.status, `cairn ${args.join(' ')}: ${r.stderr}`).toBe(0);
    return r;
  };
  const fails = async (i: number, args: string[], auth: string | undefined, code: string, extra?: Record<string, string | undefined>) => {
    const r = await cli(i, args, auth, extra);
    expect([r.status, r.stderr.split('\n').find((l) => l.startsWith('error:'))?.split(':')[1]?.trim()], `cairn ${args.join(' ')}: ${r.stderr}`).toEqual([1, code]);
    return r;
  };
  const startReplica = async (i: number, token: string): Promise<void> => {
    const kekFile = join(dir, 'kek');
    replicas[i] = await startCaProcess({ dataDir: join(dir, `ca${i}`), databaseUrl, env: { CAIRN_ADMIN_TOKEN: token, CAIRN_KEK_FILE: kekFile, CAIRN_LOG_LEVEL: 'info' } });
    pins[i] = pinOf(replicas[i]!);
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-admin-ids-'));
    writeFileSync(join(dir, 'kek'), Buffer.alloc(32, 9).toString('base64'), { mode: 0o600 });
    if (storeKind() === 'postgres') ({ url: databaseUrl, drop } = await createPgDatabase());
    await startReplica(0, T1);
    if (storeKind() === 'postgres') await startReplica(1, T1);
    for (const td of [A, B]) await ok(0, ['trust-domain', 'create', td], T1);
  }, 600_000);

  afterAll(async () => {
    await agent?.stop();
    for (const r of replicas) await r?.stop();
    await drop?.();
    rmSync(dir, { recursive: true, force: true });
  });

  const last = (): number => replicas.length - 1;

  it('cairn admin create prints the secret alone; list shows name, role, scope, times and never a secret', async () => {
    const short = await ok(0, ['admin', 'create', '--name', 'short', '--role', 'viewer', '--ttl', '60s'], T1);
    shortCreatedAt = Date.now();
    expect(short.stdout).toMatch(SECRET);
    secrets.short = short.stdout.trim();
    for (const [name, role, scope] of [['viewer', 'viewer', []], ['ops-a', 'operator', [A]], ['root', 'admin', []]] as const) {
      const r = await ok(0, ['admin', 'create', '--name', name, '--role', role, ...scope.flatMap((td) => ['--trust-domain', td])], T1);
      expect(r.stdout).toMatch(SECRET);
      expect(r.stderr).toContain('shown only this once');
      secrets[name] = r.stdout.trim();
    }
    await ok(last(), ['trust-domain', 'list'], secrets.viewer);
    const list = await ok(last(), ['admin', 'list'], secrets.root);
    const rows = list.stdout.trim().split('\n').map((l) => l.split(/\s{2,}/));
    expect(rows[0]).toEqual(['NAME', 'ROLE', 'SCOPE', 'CREATED', 'EXPIRES', 'LAST USED']);
    expect(rows.slice(1).map((r) => r.slice(0, 3))).toEqual([['configured', 'admin', 'all'], ['ops-a', 'operator', A], ['root', 'admin', 'all'], ['short', 'viewer', 'all'], ['viewer', 'viewer', 'all']]);
    expect(rows.find((r) => r[0] === 'viewer')![5]).not.toBe('never'); // used just now, on the other replica
    expect(rows.find((r) => r[0] === 'ops-a')![5]).toBe('never');
    for (const s of Object.values(secrets)) expect(list.stdout).not.toContain(s);
    const usage = await cli(0, ['admin', 'create', '--name', 'x', '--role', 'root'], T1);
    expect(usage.status).toBe(2);
    expect(usage.stderr).toMatch(/^error: --role must be one of admin, operator, viewer \(got "root"\)\nRun 'cairn admin create --help' for usage\.\n$/);
  });

  it('a viewer cannot write; an operator cannot change a trust domain, an attestor or an admin', async () => {
    await ok(last(), ['entry', 'list'], secrets.viewer);
    await fails(last(), ['token', 'create', '--trust-domain', A], secrets.viewer, 'permission_denied');
    await fails(0, ['trust-domain', 'create', 'c.admins.test'], secrets.viewer, 'permission_denied');
    await fails(0, ['admin', 'create', '--name', 'v2', '--role', 'viewer'], secrets.viewer, 'permission_denied');
    await fails(0, ['trust-domain', 'update', A, '--jwt-svid-ttl', '10m'], secrets['ops-a'], 'permission_denied');
    await fails(0, ['trust-domain', 'delete', A, '--force'], secrets['ops-a'], 'permission_denied');
    writeFileSync(join(dir, 'manufacturer.pem'), 'not looked at: the role is checked first\n');
    await fails(last(), ['attestor', 'x509pop', 'add', '--trust-domain', A, '--name', 'acme', '--ca-file', join(dir, 'manufacturer.pem')], secrets['ops-a'], 'permission_denied');
    await fails(last(), ['attestor', 'remove', '--trust-domain', A, 'x509pop', 'acme'], secrets['ops-a'], 'permission_denied');
    await fails(last(), ['admin', 'create', '--name', 'mine', '--role', 'admin'], secrets['ops-a'], 'permission_denied');
    await fails(last(), ['admin', 'revoke', 'root'], secrets['ops-a'], 'permission_denied');
  });

  it('a scoped credential cannot touch another trust domain: entries, tokens, agents, SVIDs', async () => {
    const nodes: Record<string, string> = {};
    const entries: Record<string, string> = {};
    for (const td of [A, B]) {
      const token = (await ok(0, ['token', 'create', '--trust-domain', td], secrets.root)).stdout.trim();
      nodes[td] = (await redeem(token)).node!.spiffeId;
      entries[td] = (await ok(0, ['entry', 'create', '--spiffe-id', `spiffe://${td}/web`, '--parent-id', nodes[td]!, '--selector', 'unix:uid:1000'], secrets.root)).stdout.trim();
      await ok(0, ['x509', 'mint', '--spiffe-id', `spiffe://${td}/minted`, '--write', join(dir, `minted-${td}`)], secrets.root);
    }
    const i = last();
    const ops = secrets['ops-a'];
    // lists show A only
    expect((await ok(i, ['entry', 'list', '--json'], ops)).stdout).not.toContain(B);
    expect((await ok(i, ['agent', 'list', '--json'], ops)).stdout).not.toContain(B);
    expect((await ok(i, ['svid', 'list', '--json'], ops)).stdout).not.toContain(B);
    expect((await ok(i, ['trust-domain', 'list', '--json'], ops)).stdout).not.toContain(B);
    expect((await ok(i, ['entry', 'list', '--json'], secrets.root)).stdout).toContain(B);
    // every way into B is closed
    await fails(i, ['entry', 'list', '--trust-domain', B], ops, 'permission_denied');
    await fails(i, ['entry', 'show', entries[B]!], ops, 'permission_denied');
    await fails(i, ['entry', 'update', entries[B]!, '--selector', 'unix:uid:1'], ops, 'permission_denied');
    await fails(i, ['entry', 'delete', entries[B]!], ops, 'permission_denied');
    await fails(i, ['entry', 'create', '--spiffe-id', `spiffe://${B}/x`, '--parent-id', nodes[B]!, '--selector', 'unix:uid:1'], ops, 'permission_denied');
    await fails(i, ['token', 'create', '--trust-domain', B], ops, 'permission_denied');
    await fails(i, ['agent', 'list', '--trust-domain', B], ops, 'permission_denied');
    await fails(i, ['agent', 'ban', nodes[B]!], ops, 'permission_denied');
    await fails(i, ['agent', 'evict', nodes[B]!], ops, 'permission_denied');
    await fails(i, ['x509', 'mint', '--spiffe-id', `spiffe://${B}/x`, '--print-key'], ops, 'permission_denied');
    await fails(i, ['jwt', 'mint', '--spiffe-id', `spiffe://${B}/x`, '--audience', 'a'], ops, 'permission_denied');
    await fails(i, ['svid', 'list', '--trust-domain', B], ops, 'permission_denied');
    expect(JSON.parse((await ok(i, ['svid', 'list', '--spiffe-id-prefix', `spiffe://${B}/`, '--json'], ops)).stdout).svids).toEqual([]);
    // and A is the operator's
    await ok(i, ['entry', 'update', entries[A]!, '--selector', 'unix:uid:1001'], ops);
    await ok(i, ['agent', 'ban', nodes[A]!], ops);
    expect((await ok(0, ['entry', 'show', entries[B]!, '--json'], secrets.root)).stdout).toContain('unix:uid:1000');
  });

  it('a revoked admin gets 401 on every replica at once', async () => {
    await ok(0, ['entry', 'list'], secrets.viewer);
    if (replicas.length > 1) await ok(1, ['entry', 'list'], secrets.viewer);
    const revoked = await ok(last(), ['admin', 'revoke', 'viewer'], secrets.root);
    expect(revoked.stdout.trim()).toBe('viewer');
    for (let i = 0; i < replicas.length; i++) await fails(i, ['entry', 'list'], secrets.viewer, 'unauthenticated');
    expect((await ok(0, ['admin', 'list'], secrets.root)).stdout).not.toMatch(/^viewer /m);
  });

  it('an expired credential gets 401 on every replica', async () => {
    // created with --ttl 60s in the first test; wait out whatever is left of the minute
    const left = shortCreatedAt + 61_000 - Date.now();
    if (left > 0) await sleep(left);
    for (let i = 0; i < replicas.length; i++) {
      const r = await fails(i, ['trust-domain', 'list'], secrets.short, 'unauthenticated');
      expect(r.stderr).toContain('expired');
    }
  });

  it('an SVID of an --admin entry is an admin credential (no token sent) while the entry keeps the flag', async () => {
    const uid = process.getuid!();
    const socket = join(dir, 'agent', 'workload.sock');
    const joinToken = (await ok(0, ['token', 'create', '--trust-domain', A, '--agent-id', `spiffe://${A}/admin-host`], secrets.root)).stdout.trim();
    agent = spawnCairn(['agent', 'start', '--data-dir', join(dir, 'agent'), '--socket', socket, '--join-token', joinToken], { CAIRN_SERVER: undefined });
    await agent.waitFor(/serving the Workload API/, 180_000);
    const id = (await ok(0, ['entry', 'create', '--spiffe-id', `spiffe://${A}/ops-tool`, '--parent-id', `spiffe://${A}/admin-host`, '--selector', `unix:uid:${uid}`, '--admin', '--admin-role', 'operator'], secrets.root)).stdout.trim();
    expect((await ok(0, ['entry', 'show', id], secrets.root)).stdout).toMatch(/admin\s+yes, role operator/);
    const svidDir = join(dir, 'svid');
    const workload = { SPIFFE_ENDPOINT_SOCKET: `unix://${socket}` };
    // the agent picks the new entry up at its next sync
    const deadline = Date.now() + 120_000;
    for (;;) {
      const r = await cli(0, ['svid', 'fetch', '--write', svidDir], undefined, workload);
      if (r.status === 0 && r.stdout.includes(`spiffe://${A}/ops-tool`)) break;
      if (Date.now() > deadline) throw new Error(`no SVID for the admin entry: ${r.stderr}`);
      await sleep(1000);
    }
    // no admin token anywhere: the SVID alone, on every replica
    for (let i = 0; i < replicas.length; i++) {
      const listed = await ok(i, ['entry', 'list', '--svid-dir', svidDir, '--json'], undefined);
      expect(JSON.parse(listed.stdout).entries.map((e: { id: string }) => e.id)).toContain(id);
      await ok(i, ['entry', 'list', '--svid-from-socket'], undefined, workload);
    }
    await ok(0, ['token', 'create', '--trust-domain', A, '--svid-dir', svidDir], undefined);
    await fails(0, ['trust-domain', 'update', A, '--jwt-svid-ttl', '10m', '--svid-dir', svidDir], undefined, 'permission_denied');
    await fails(0, ['token', 'create', '--trust-domain', B, '--svid-dir', svidDir], undefined, 'permission_denied');
    // over plain HTTP an SVID cannot authenticate: a usage error, nothing sent
    const plain = await cli(0, ['entry', 'list', '--svid-dir', svidDir, '--server', replicas[0]!.httpUrl], undefined, { CAIRN_CA_PIN: undefined });
    expect(plain.status).toBe(2);
    expect(plain.stderr).toContain('only over TLS');
    // the flag taken away: refused at once; given back: accepted; the entry deleted: refused
    await ok(0, ['entry', 'update', id, '--no-admin'], secrets.root);
    for (let i = 0; i < replicas.length; i++) await fails(i, ['entry', 'list', '--svid-dir', svidDir], undefined, 'unauthenticated');
    await ok(0, ['entry', 'update', id, '--admin-role', 'viewer'], secrets.root);
    await ok(last(), ['entry', 'list', '--svid-dir', svidDir], undefined);
    await fails(last(), ['token', 'create', '--trust-domain', A, '--svid-dir', svidDir], undefined, 'permission_denied');
    await ok(0, ['entry', 'delete', id], secrets.root);
    await fails(last(), ['entry', 'list', '--svid-dir', svidDir], undefined, 'unauthenticated');
    // an operator cannot make itself an admin entry
    await fails(0, ['entry', 'create', '--spiffe-id', `spiffe://${A}/mine`, '--parent-id', `spiffe://${A}/admin-host`, '--selector', 'unix:uid:1', '--admin'], secrets['ops-a'], 'permission_denied');
    // the record names the SVID's SPIFFE ID as the actor
    expect(replicas.map((r) => r.process.stdout() + r.process.stderr()).join('\n')).toMatch(new RegExp(`"event":"admin.action"[^\\n]*"actor":"spiffe://${A.replace(/\./g, '\\.')}/ops-tool"`));
  });

  it('CAIRN_ADMIN_TOKEN at start replaces the configured credential (the old one stops working) and makes no bootstrap credential', async () => {
    for (const r of replicas) await r.stop();
    await startReplica(0, T2);
    await ok(0, ['trust-domain', 'list'], T2);
    await fails(0, ['trust-domain', 'list'], T1, 'unauthenticated');
    if (storeKind() === 'postgres') {
      // the other replica still has T1 in its environment, but the store no longer accepts it
      replicas[1] = await startCaProcess({ dataDir: join(dir, 'ca1'), databaseUrl, env: { CAIRN_ADMIN_TOKEN: T2, CAIRN_KEK_FILE: join(dir, 'kek'), CAIRN_LOG_LEVEL: 'info' } });
      pins[1] = pinOf(replicas[1]!);
      await fails(1, ['trust-domain', 'list'], T1, 'unauthenticated');
      await ok(1, ['trust-domain', 'list'], T2);
    }
    const names = (await ok(0, ['admin', 'list', '--json'], T2)).stdout;
    expect(JSON.parse(names).admins.map((a: { name: string }) => a.name)).toEqual(['configured', 'ops-a', 'root', 'short']);
    for (let i = 0; i < replicas.length; i++) expect(existsSync(join(dir, `ca${i}`, 'admin-token'))).toBe(false);
    expect(readFileSync(join(dir, 'kek'), 'utf8')).not.toContain(T2);
  });
});
