import { X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeWriteError, probeWritable, writeFileAtomic } from '../../lib/fs.js';
import { startAgent, type AgentHandle } from '../../node-agent/main.js';
import { FakeClock } from '../support/clock.js';
import { derToPem } from '../../spiffe/bundle/bundle.js';
import { splitDerCertificates } from '../../spiffe/svid/x509.js';
import { createPgDatabase, storeKind } from '../support/db.js';
import { fetchAsUid, firstMessage, grpc, grpcWorkloadClient, type X509SvidWire } from '../support/grpc-workload.js';
import { capturingLogger } from '../support/logs.js';
import { privateTmpfs, type PrivateTmpfs } from '../support/mount-namespace.js';
import { opensslVerify } from '../support/openssl.js';
import { freePort, spawnCairn, type Spawned } from '../support/processes.js';
import { slowScenario } from '../support/slow.js';

const TD = 'disk.test';
const isRoot = process.getuid?.() === 0;
/** The agent's own log line (stdout, after its bootstrap lines); stderr's banner may arrive before them. */
const SERVING = /"msg":"agent serving the Workload API"/;

interface Persisted {
  readonly bytes: Buffer;
  readonly serial: string;
  readonly notAfter: string;
}

/** agent-svid.json as bytes, after checking it parses and holds a certificate (a torn file would not). */
function readPersisted(path: string): Persisted {
  const bytes = readFileSync(path);
  const state = JSON.parse(bytes.toString('utf8')) as { spiffeId: string; chainPem: string; keyPem: string };
  expect(state.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
  const leaf = new X509Certificate(state.chainPem);
  return { bytes, serial: leaf.serialNumber.toLowerCase(), notAfter: new Date(leaf.validTo).toISOString() };
}

/** The JSON log lines of an agent process (pino on stderr) with this event or message. */
function logLines(p: Spawned, match: (line: Record<string, unknown>) => boolean): Record<string, unknown>[] {
  return p
    .stderr()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter(match);
}

/** What a process printed on stderr besides its JSON log lines (its `error:` line). */
const messages = (p: Spawned): string =>
  p
    .stderr()
    .split('\n')
    .filter((l) => !l.startsWith('{'))
    .join('\n');

async function until<T>(what: string, f: () => T | undefined | Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * A directory's entries, except the temp file of a write in flight at that instant: the agent retries
 * every second in another process, and a sample can catch a retry between its open and its unlink. A
 * leaked temp file is still there 200 ms later (names are random, never reused), so it stays listed.
 */
async function settledEntries(dir: string): Promise<string[]> {
  const first = readdirSync(dir);
  if (!first.some((n) => n.endsWith('.tmp'))) return first.sort();
  await new Promise((r) => setTimeout(r, 200));
  const again = new Set(readdirSync(dir));
  return first.filter((n) => !n.endsWith('.tmp') || again.has(n)).sort();
}

/** The exit code, or 'still running' when the process outlives `ms`. */
function exitWithin(p: Spawned, ms: number): Promise<number | null | string> {
  return Promise.race([p.exited, new Promise<string>((r) => setTimeout(() => r(`still running after ${ms} ms`), ms))]);
}

/** What `socket` serves once the agent is ready (it answers Unavailable until its first sync is in). */
function servedOnce(socket: string, count: number): Promise<string[]> {
  return until(`${socket} to serve ${count} SVIDs`, async () => {
    const ids = await served(socket).catch(() => undefined);
    return ids?.length === count ? ids : undefined;
  }, 10_000);
}

/** The SPIFFE IDs a FetchX509SVID caller (this process, uid 0) gets from `socket`, each chain verified by openssl. */
async function served(socket: string): Promise<string[]> {
  const client = grpcWorkloadClient(socket);
  try {
    const msg = await firstMessage<{ svids: X509SvidWire[] }>(client, 'FetchX509SVID');
    for (const s of msg.svids) {
      const chain = splitDerCertificates(s.x509_svid).map((d) => derToPem(d)).join('');
      expect(opensslVerify(chain, splitDerCertificates(s.bundle).map((d) => derToPem(d)).join(''))).toContain('OK');
    }
    return msg.svids.map((s) => s.spiffe_id).sort();
  } finally {
    client.close();
  }
}

/**
 * Fault: the agent's data dir is full (ENOSPC) or read-only (EROFS), from real kernel errors: each
 * agent runs in a private mount namespace over a 256 KiB tmpfs. A join token is never spent on an SVID
 * the agent could not keep; a running agent never writes a torn or half-renewed state file, keeps
 * serving on its current SVID, says clearly what is wrong, and persists again once the disk is fixed.
 */
describe.runIf(isRoot && slowScenario())(`fault: the agent's data dir full or read-only (${storeKind()} store)`, () => {
  let dir: string;
  let dataA: string; // tmpfs: full disk
  let dataB: string; // tmpfs: read-only
  let sockA: string;
  let sockB: string;
  let ca: Spawned | undefined;
  let drop: (() => Promise<void>) | undefined;
  let admin: (path: string, body?: unknown) => Promise<{ status: number; body: any }>;
  const tokens = {} as Record<'a' | 'b' | 'c' | 'd', { token: string; spiffeId: string }>;
  const mounts: PrivateTmpfs[] = [];
  const processes: Spawned[] = [];
  let mntA: PrivateTmpfs;
  let mntB: PrivateTmpfs;
  let agentA: Spawned;
  let agentB: Spawned;

  const startAgentProcess = (data: string, socket: string | undefined, mnt: PrivateTmpfs | undefined, token: string | undefined, wrapper?: readonly string[]): Spawned => {
    const args = ['agent', 'start', '--data-dir', data, ...(socket ? ['--socket', socket] : [])];
    const p = spawnCairn(args, { CAIRN_JOIN_TOKEN: token, CAIRN_DATA_DIR: undefined, CAIRN_AGENT_SOCKET: undefined, CAIRN_LOG_LEVEL: 'info' }, [], {
      wrapper: wrapper ?? mnt?.wrapper,
    });
    processes.push(p);
    return p;
  };
  /** The CA's current serial for an agent: the one it accepts (a just-renewed one counts once presented). */
  const caSerial = async (spiffeId: string): Promise<string | undefined> => {
    const { body } = await admin(`/v1/agents?trustDomain=${TD}`);
    return (body.agents as { spiffeId: string; serial: string }[]).find((a) => a.spiffeId === spiffeId)?.serial;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-disk-'));
    chmodSync(dir, 0o755); // the non-root agent of the first scenario must reach its directory
    [dataA, dataB, sockA, sockB] = [join(dir, 'a'), join(dir, 'b'), join(dir, 'a.sock'), join(dir, 'b.sock')];
    let databaseUrl: string | undefined;
    if (storeKind() === 'postgres') ({ url: databaseUrl, drop } = await createPgDatabase());
    const [http, tls] = [await freePort(), await freePort()];
    const env = { CAIRN_DATA_DIR: join(dir, 'ca'), DATABASE_URL: databaseUrl, CAIRN_ADMIN_TOKEN: undefined, CAIRN_SERVER: undefined, CAIRN_LOG_LEVEL: 'warn' };
    ca = spawnCairn(['ca', 'start', '--listen', `127.0.0.1:${http}`, '--tls-listen', `127.0.0.1:${tls}`], env);
    await ca.waitFor(/listening on/, 60_000);
    admin = async (path, body) => {
      const res = await fetch(`http://127.0.0.1:${http}${path}`, {
        method: body === undefined ? 'GET' : 'POST',
        headers: { authorization: `Bearer ${readFileSync(join(dir, 'ca', 'admin-token'), 'utf8').trim()}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.status, body: await res.json() };
    };
    // 60 s is the shortest SVID TTL a trust domain takes; agent SVIDs get it too, so agents renew
    // their own ~25 s after attesting (half of notBefore−10 s … notAfter).
    expect((await admin('/v1/trust-domains', { name: TD, x509SvidTtlSeconds: 60 })).status).toBe(201);
    for (const name of ['a', 'b', 'c', 'd'] as const) {
      const { body } = await admin('/v1/tokens', { trustDomain: TD });
      tokens[name] = { token: body.token, spiffeId: body.spiffeId };
      const entry = await admin('/v1/entries', { spiffeId: `spiffe://${TD}/w-${name}`, parentId: body.spiffeId, selectors: [`unix:uid:${process.getuid!()}`] });
      expect(entry.status).toBe(201);
    }
    mntA = await privateTmpfs(dataA);
    mntB = await privateTmpfs(dataB);
    mounts.push(mntA, mntB);
  });

  afterAll(async () => {
    await Promise.all(processes.map((p) => p.stop()));
    await Promise.all(mounts.map((m) => m.close())); // the namespaces and their tmpfs go with them
    await ca?.stop();
    await drop?.();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('writeFileAtomic on a real full or read-only tmpfs: throws the errno, leaves no temp file, the target byte-identical', { timeout: 15_000 }, async () => {
    const dataC = join(dir, 'c0');
    const mnt = await privateTmpfs(dataC, 64);
    mounts.push(mnt);
    const target = mnt.outside(join(dataC, 'state.json'));
    const before = Buffer.from(`${JSON.stringify({ v: 'before', pad: 'x'.repeat(900) })}\n`);
    writeFileAtomic(target, before);
    const bigger = Buffer.alloc(3 * 4096 + 100, 0x61);
    // One page free: write(2) stores a page and returns a short count instead of failing; only the
    // next write says ENOSPC. A single writeSync would have renamed a truncated file over the target.
    mnt.fill(join(dataC, 'filler'), 4096);
    expect(() => writeFileAtomic(target, bigger)).toThrow(expect.objectContaining({ code: 'ENOSPC' }));
    expect(readFileSync(target).equals(before)).toBe(true);
    expect(readdirSync(mnt.outside(dataC)).sort()).toEqual(['filler', 'state.json']);
    // Nothing free at all: the first write fails.
    mnt.fill(join(dataC, 'filler'));
    let full: unknown;
    try {
      writeFileAtomic(target, before.subarray(0, 10));
    } catch (err) {
      full = err;
    }
    expect(describeWriteError(full)).toBe('no space left on the device (ENOSPC)');
    expect(readFileSync(target).equals(before)).toBe(true);
    expect(() => probeWritable(mnt.outside(dataC))).toThrow(expect.objectContaining({ code: 'ENOSPC' }));
    expect(readdirSync(mnt.outside(dataC)).sort()).toEqual(['filler', 'state.json']);
    // Read-only: the temp file cannot even be created.
    rmSync(mnt.outside(join(dataC, 'filler')));
    mnt.remount('ro');
    let ro: unknown;
    try {
      writeFileAtomic(target, bigger);
    } catch (err) {
      ro = err;
    }
    expect(describeWriteError(ro)).toBe('the file system is mounted read-only (EROFS)');
    expect(readFileSync(target).equals(before)).toBe(true);
    // …also where a directory is missing (Node's recursive mkdir alone would say ENOENT).
    expect(() => writeFileAtomic(mnt.outside(join(dataC, 'new', 'deeper', 'state.json')), before)).toThrow(expect.objectContaining({ code: 'EROFS' }));
    expect(() => probeWritable(mnt.outside(join(dataC, 'agent')))).toThrow(expect.objectContaining({ code: 'EROFS' }));
    expect(readdirSync(mnt.outside(dataC))).toEqual(['state.json']);
  });

  it('an unwritable data dir at start: the agent exits non-zero with a clear message and the join token stays unused', { timeout: 45_000 }, async () => {
    // A: the tmpfs is full. B: read-only, its agent dir already there (so nothing fails before the
    // attestation would have). N: a non-root agent under a root-owned 0755 dir (EACCES).
    mntA.fill(join(dataA, 'filler'));
    mkdirSync(mntB.outside(join(dataB, 'agent')));
    mntB.remount('ro');
    const dataN = join(dir, 'root-owned');
    mkdirSync(join(dataN, 'agent'), { recursive: true, mode: 0o755 });
    chmodSync(dataN, 0o755);
    chmodSync(join(dataN, 'agent'), 0o755);
    // One after the other, so a token spent by one attempt cannot be what the next one reports.
    const failing = [
      { start: () => startAgentProcess(dataA, sockA, mntA, tokens.a.token), why: 'no space left on the device \\(ENOSPC\\)', agentDir: join(dataA, 'agent') },
      { start: () => startAgentProcess(dataB, sockB, mntB, tokens.b.token), why: 'the file system is mounted read-only \\(EROFS\\)', agentDir: join(dataB, 'agent') },
      {
        start: () => startAgentProcess(dataN, join(dir, 'n.sock'), undefined, tokens.a.token, ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--']),
        why: "permission denied: this process's user may not write there \\(EACCES\\)",
        agentDir: join(dataN, 'agent'),
      },
    ];
    for (const { start, why, agentDir } of failing) {
      const p = start();
      expect(await exitWithin(p, 15_000)).toBe(1);
      const escaped = agentDir.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
      expect(messages(p)).toMatch(
        new RegExp(`^error: the agent's data dir ${escaped} is not writable: ${why}\\. The agent keeps its SVID there to restart without a new token, so it stopped before attesting \\(the join token was not used\\); make the directory writable \\(or choose another with --data-dir\\) and start the agent again\\n$`),
      );
    }
    // Nothing attested, nothing left behind (no probe, no temp file).
    expect((await admin(`/v1/agents?trustDomain=${TD}`)).body.agents).toEqual([]);
    expect(readdirSync(mntA.outside(join(dataA, 'agent')))).toEqual([]);
    expect(readdirSync(mntB.outside(join(dataB, 'agent')))).toEqual([]);
    expect(readdirSync(join(dataN, 'agent'))).toEqual([]);

    // Fixed: both tokens still redeem, and the agents serve.
    rmSync(mntA.outside(join(dataA, 'filler')));
    mntB.remount('rw');
    agentA = startAgentProcess(dataA, sockA, mntA, tokens.a.token);
    agentB = startAgentProcess(dataB, sockB, mntB, tokens.b.token);
    await Promise.all([agentA.waitFor(SERVING), agentB.waitFor(SERVING)]);
    expect(logLines(agentA, (l) => l.msg === 'agent attested')).toHaveLength(1);
    expect(logLines(agentB, (l) => l.msg === 'agent attested')).toHaveLength(1);
    expect(await servedOnce(sockA, 1)).toEqual([`spiffe://${TD}/w-a`]);
    expect(await servedOnce(sockB, 1)).toEqual([`spiffe://${TD}/w-b`]);
    expect(readdirSync(mntA.outside(join(dataA, 'agent')))).toEqual(['agent-svid.json']);
  });

  it("full (A) and read-only (B) at the agents' own SVID renewal: clear error, state file untouched, still serving; persisted once fixed", { timeout: 60_000 }, async () => {
    const fileA = mntA.outside(join(dataA, 'agent', 'agent-svid.json'));
    const fileB = mntB.outside(join(dataB, 'agent', 'agent-svid.json'));
    const beforeA = readPersisted(fileA);
    const beforeB = readPersisted(fileB);
    expect(await caSerial(tokens.a.spiffeId)).toBe(beforeA.serial);
    mntA.fill(join(dataA, 'filler'));
    mntB.remount('ro');

    const failure = (p: Spawned) => () => logLines(p, (l) => l.event === 'agent_svid.persist_failed')[0];
    const [failedA, failedB] = await Promise.all([until('A to fail its renewal write', failure(agentA), 40_000), until('B to fail its renewal write', failure(agentB), 40_000)]);
    for (const [failed, data, code, before] of [[failedA, dataA, 'ENOSPC', beforeA], [failedB, dataB, 'EROFS', beforeB]] as const) {
      expect(failed).toMatchObject({
        level: 50,
        event: 'agent_svid.persist_failed',
        dataDir: join(data, 'agent'),
        code,
        reason: code === 'ENOSPC' ? 'no space left on the device (ENOSPC)' : 'the file system is mounted read-only (EROFS)',
        currentExpiresAt: before.notAfter,
        msg: 'could not write the renewed agent SVID to the data dir: still using the current one, which the CA accepts until the new one is presented; retrying',
      });
    }
    await new Promise((r) => setTimeout(r, 2500)); // a few more retries, each failing
    for (const [p, file, before, mnt, data] of [[agentA, fileA, beforeA, mntA, dataA], [agentB, fileB, beforeB, mntB, dataB]] as const) {
      expect(p.child.exitCode).toBe(null);
      expect(readPersisted(file).bytes.equals(before.bytes)).toBe(true);
      expect(await settledEntries(mnt.outside(join(data, 'agent')))).toEqual(['agent-svid.json']);
      // logged once, not once per retry
      expect(logLines(p, (l) => l.event === 'agent_svid.persist_failed')).toHaveLength(1);
      expect(logLines(p, (l) => l.msg === 'agent SVID renewed')).toHaveLength(0);
    }
    // The CA issued a new serial, but the one the agent presents is still its current one…
    expect(await caSerial(tokens.a.spiffeId)).toBe(beforeA.serial);
    // …and accepted: workloads are served and changes still arrive over sync.
    expect(await served(sockA)).toEqual([`spiffe://${TD}/w-a`]);
    expect(await served(sockB)).toEqual([`spiffe://${TD}/w-b`]);
    expect((await admin('/v1/entries', { spiffeId: `spiffe://${TD}/late-a`, parentId: tokens.a.spiffeId, selectors: [`unix:uid:${process.getuid!()}`] })).status).toBe(201);
    await until('late-a to reach the workload', async () => ((await served(sockA)).includes(`spiffe://${TD}/late-a`) ? true : undefined), 15_000);
    // A caller with no entry still gets PermissionDenied (not an internal error) although discovery cannot write.
    expect(await fetchAsUid(sockA, 3131)).toBe(`ERR ${grpc.status.PERMISSION_DENIED}`);
    expect(logLines(agentA, (l) => l.event === 'discovery.persist_failed')[0]).toMatchObject({ level: 40, code: 'ENOSPC', file: join(dataA, 'agent', 'unregistered.json') });
    expect(await settledEntries(mntA.outside(join(dataA, 'agent')))).toEqual(['agent-svid.json']);

    // Fixed: the next retry writes the renewed SVID, then the agent switches to it.
    rmSync(mntA.outside(join(dataA, 'filler')));
    mntB.remount('rw');
    await Promise.all([agentA, agentB].map((p) => until('the renewed SVID to be persisted', () => logLines(p, (l) => l.msg === 'agent SVID renewed')[0], 10_000)));
    for (const [file, before, spiffeId] of [[fileA, beforeA, tokens.a.spiffeId], [fileB, beforeB, tokens.b.spiffeId]] as const) {
      const after = readPersisted(file);
      expect(readdirSync(dirname(file))).toEqual(['agent-svid.json']);
      expect(after.bytes.equals(before.bytes)).toBe(false);
      expect(after.serial).not.toBe(before.serial);
      expect(Date.parse(after.notAfter)).toBeGreaterThan(Date.parse(before.notAfter));
      // the CA takes the new serial as current once the agent presents it
      await until(`the CA to see ${spiffeId} present its new SVID`, async () => ((await caSerial(spiffeId)) === after.serial ? true : undefined), 10_000);
    }
    expect(await served(sockA)).toEqual([`spiffe://${TD}/late-a`, `spiffe://${TD}/w-a`]);
    expect(await served(sockB)).toEqual([`spiffe://${TD}/w-b`]);
  });

  it('restarted on the same data dir (B read-only again): reuses the persisted SVID without a token and serves', { timeout: 30_000 }, async () => {
    const fileA = mntA.outside(join(dataA, 'agent', 'agent-svid.json'));
    const fileB = mntB.outside(join(dataB, 'agent', 'agent-svid.json'));
    const [persistedA, persistedB] = [readPersisted(fileA), readPersisted(fileB)];
    expect(await Promise.all([agentA.stop(), agentB.stop()])).toEqual([0, 0]);
    mntB.remount('ro');
    // With its socket where it is by default, in the read-only data dir, B cannot serve: a clear error.
    const defaultSocket = startAgentProcess(dataB, undefined, mntB, undefined);
    expect(await exitWithin(defaultSocket, 15_000)).toBe(1);
    expect(messages(defaultSocket)).toBe(
      `error: cannot create the Workload API socket ${join(dataB, 'agent', 'sockets', 'workload.sock')}: the file system is mounted read-only (EROFS); the agent SVID is persisted: fix this and start the agent again, no new token needed\n`,
    );
    agentA = startAgentProcess(dataA, sockA, mntA, undefined);
    agentB = startAgentProcess(dataB, sockB, mntB, undefined);
    await Promise.all([agentA.waitFor(SERVING), agentB.waitFor(SERVING)]);
    for (const p of [agentA, agentB]) {
      expect(logLines(p, (l) => l.msg === 'reusing the persisted agent SVID')).toHaveLength(1);
      expect(logLines(p, (l) => l.msg === 'agent attested')).toHaveLength(0);
    }
    expect(logLines(agentA, (l) => l.event === 'agent.data_dir_unwritable')).toHaveLength(0);
    expect(logLines(agentB, (l) => l.event === 'agent.data_dir_unwritable')[0]).toMatchObject({ level: 40, code: 'EROFS', dataDir: join(dataB, 'agent') });
    expect(await servedOnce(sockA, 2)).toEqual([`spiffe://${TD}/late-a`, `spiffe://${TD}/w-a`]);
    expect(await servedOnce(sockB, 1)).toEqual([`spiffe://${TD}/w-b`]);
    expect(await caSerial(tokens.a.spiffeId)).toBe(persistedA.serial);
    expect(await caSerial(tokens.b.spiffeId)).toBe(persistedB.serial);
    expect(readPersisted(fileB).bytes.equals(persistedB.bytes)).toBe(true);
  });

  it('the disk fills between the probe and the first write: the agent keeps the SVID its token bought, serves, and writes it once it can', { timeout: 30_000 }, async () => {
    // In-process, so the fault can strike at the exact moment: when the agent reads its token (after
    // the probe, before attesting). The data dir is a private tmpfs reached through /proc/<pid>/root.
    const dataC = join(dir, 'c');
    const mnt = await privateTmpfs(dataC);
    mounts.push(mnt);
    const agentDir = mnt.outside(join(dataC, 'agent'));
    const log = capturingLogger();
    let agent: AgentHandle | undefined;
    try {
      agent = await startAgent(
        {
          dataDir: agentDir,
          socketPath: join(dir, 'c.sock'),
          joinToken: async () => {
            mnt.fill(join(dataC, 'filler'));
            return tokens.c.token;
          },
        },
        { logger: log.logger },
      );
      await agent.whenReady();
      const failed = log.lines().map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.event === 'agent_svid.persist_failed');
      expect(failed).toMatchObject({ level: 50, dataDir: agentDir, code: 'ENOSPC', msg: 'could not write the new agent SVID to the data dir: serving with it, retrying the write; a restart before it succeeds can fetch it again with the same token only while the token is unexpired' });
      // the key it attested with was written before the token was sent: a restart now could fetch the same SVID
      expect(readdirSync(agentDir)).toEqual(['attestation-key.pem']);
      expect(await served(agent.socketPath)).toEqual([`spiffe://${TD}/w-c`]);
      rmSync(mnt.outside(join(dataC, 'filler')));
      await until('the SVID in use to be written', () => (existsSync(join(agentDir, 'agent-svid.json')) ? true : undefined), 5_000);
      const written = readPersisted(join(agentDir, 'agent-svid.json'));
      expect(written.serial).toBe(await caSerial(tokens.c.spiffeId));
      expect(log.lines().some((l) => (JSON.parse(l) as { event?: string }).event === 'agent_svid.persisted')).toBe(true);
      expect(readdirSync(agentDir)).toEqual(['agent-svid.json']);
    } finally {
      await agent?.close();
    }
  });

  it('the disk stays full until the current agent SVID nearly expires: the agent switches to the renewed one it could not write, says so, and writes it later', { timeout: 30_000 }, async () => {
    // In-process with a clock of its own, so the agent can be ~55 s into its 60 s SVID at once; the
    // certificates themselves are real and really valid, the CA keeps the real time.
    const dataD = join(dir, 'd');
    const mnt = await privateTmpfs(dataD);
    mounts.push(mnt);
    const agentDir = mnt.outside(join(dataD, 'agent'));
    const log = capturingLogger();
    const lines = () => log.lines().map((l) => JSON.parse(l) as Record<string, unknown>);
    const clock = new FakeClock(new Date());
    let agent: AgentHandle | undefined;
    try {
      agent = await startAgent({ dataDir: agentDir, socketPath: join(dir, 'd.sock'), joinToken: tokens.d.token }, { logger: log.logger, clock });
      await agent.whenReady();
      const first = readPersisted(join(agentDir, 'agent-svid.json'));
      mnt.fill(join(dataD, 'filler'));
      clock.advance(55); // past half-life, and within the last tenth (7 s) of its 70 s validity
      const switched = await until('the switch to the unpersisted SVID', () => lines().find((l) => l.event === 'agent_svid.persist_failed'), 5_000);
      expect(switched).toMatchObject({
        level: 50,
        dataDir: agentDir,
        code: 'ENOSPC',
        msg: 'could not write the agent SVID in use to the data dir: a restart before the write succeeds needs a new join token; retrying',
      });
      // Back to the CA's time: the SVID just issued is young again, so no further renewals.
      clock.set(new Date());
      // The CA sees the new serial presented (the old one is now superseded) and the agent still serves.
      const presented = await until('the CA to see a new serial', async () => {
        const serial = await caSerial(tokens.d.spiffeId);
        return serial !== undefined && serial !== first.serial ? serial : undefined;
      }, 10_000);
      await new Promise((r) => setTimeout(r, 1500));
      expect(await caSerial(tokens.d.spiffeId)).toBe(presented);
      expect(readPersisted(join(agentDir, 'agent-svid.json')).bytes.equals(first.bytes)).toBe(true);
      expect(await served(agent.socketPath)).toEqual([`spiffe://${TD}/w-d`]);
      rmSync(mnt.outside(join(dataD, 'filler')));
      await until('the SVID in use to be written', () => lines().find((l) => l.event === 'agent_svid.persisted'), 5_000);
      expect(readPersisted(join(agentDir, 'agent-svid.json')).serial).toBe(presented);
      expect(readdirSync(agentDir)).toEqual(['agent-svid.json']);
    } finally {
      await agent?.close();
    }
  });
});
