import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type AgentHandle } from '../../../node-agent/main.js';
import { startTestCa, type TestCa } from '../../support/ca.js';
import { storeKind } from '../../support/db.js';
import { capturingLogger } from '../../support/logs.js';
import { asUid, buildAttackTools, haveCompiler, run, type AttackTools } from '../../support/workload-attacks.js';
import { waitFor } from '../../support/wait.js';

/**
 * Issue 11 item 1: local identity theft through the Unix workload attestor, with real processes,
 * real uids (`setpriv` to nobody) and the agent's real socket. And the systemd attestor on a real
 * cgroup.
 */
const TD = 'attacks.test';
const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;
const canRun = isRoot && haveCompiler();
if (!canRun) console.warn(`caller-attacks: skipped (${isRoot ? 'no C compiler (cc)' : 'needs root to run processes as other uids'})`);

describe.runIf(canRun)(`stealing an SVID through the Unix attestor (${storeKind()} store)`, () => {
  let ca: TestCa;
  let agent: AgentHandle | undefined;
  let dir: string;
  let tools: AttackTools;
  let agentId: string;
  let sha: string;
  const entry = async (name: string, selectors: string[]): Promise<Response> =>
    ca.admin('/v1/entries', { body: { spiffeId: `spiffe://${TD}/${name}`, parentId: agentId, selectors } });
  /** The agent holds an SVID for every entry created so far (so "no SVID" below is a refusal, not a race with sync). */
  const synced = (names: string[]): Promise<true> =>
    waitFor('the agent to hold the SVIDs', async () => {
      await agent!.agent.rotate();
      const held = (agent!.agent as unknown as { svids: Map<string, { identity: { spiffeId: string } }> }).svids;
      const ids = new Set([...held.values()].map((h) => h.identity.spiffeId));
      return names.every((n) => ids.has(`spiffe://${TD}/${n}`)) ? (true as const) : undefined;
    });
  /** The trusted binary run with the LD_PRELOAD library: the code that calls the Workload API runs inside it. */
  const preloaded = (uid: number) =>
    run([...asUid(uid), '/usr/bin/env', `LD_PRELOAD=${tools.preload}`, `CAIRN_ATTACK_SOCKET=${agent!.socketPath}`, `CAIRN_ATTACK_NODE=${process.execPath}`, `CAIRN_ATTACK_CLIENT=${tools.client}`, tools.trusted, '0']);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-attacks-'));
    tools = buildAttackTools(dir);
    sha = createHash('sha256').update(readFileSync(tools.trusted)).digest('hex');
    ca = await startTestCa();
    await ca.admin('/v1/trust-domains', { body: { name: TD } });
    const { token, spiffeId } = await (await ca.admin('/v1/tokens', { body: { trustDomain: TD } })).json();
    agentId = spiffeId;
    mkdirSync(join(dir, 'sock'), { mode: 0o755 });
    agent = await startAgent({ dataDir: join(dir, 'agent'), joinToken: token, socketPath: join(dir, 'sock', 'api.sock'), systemd: true }, { logger: capturingLogger().logger });
    await agent.whenReady();
  });
  afterAll(async () => {
    await agent?.close();
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('an entry that only the binary (path + hash) selects cannot be created: any local user could run it', async () => {
    const res = await entry('path-only', [`unix:path:${tools.trusted}`, `unix:sha256:${sha}`]);
    expect(res.status).toBe(400);
    expect((await res.json()).code).toBe('weak_selectors');
  });

  it('another uid gets no SVID: neither by connect-then-exec of the trusted binary nor by LD_PRELOAD inside it', async () => {
    // The trusted service runs as root; its entry binds uid 0 as well as the binary.
    expect((await entry('trusted-root', ['unix:uid:0', `unix:path:${tools.trusted}`, `unix:sha256:${sha}`])).status).toBe(201);
    await synced(['trusted-root']);
    // The real service (here: the trusted binary, with code inside it) gets its SVID…
    const legit = preloaded(0);
    expect(await legit.line(/^(DATA|ERR)/)).toMatch(new RegExp(`^DATA (.*,)?spiffe://${TD}/trusted-root(,|$)`));
    // …nobody running the same binary with the same code inside does not,
    const inside = preloaded(NOBODY);
    expect(await inside.line(/^(DATA|ERR)/)).toMatch(/^ERR 7 /);
    // …nor nobody connecting and exec'ing the binary at once, racing the agent's accept.
    const racer = run([...asUid(NOBODY), tools.connectExec, agent!.socketPath, '0', tools.trusted, '30', '--', process.execPath, tools.client, '--once']);
    expect(await racer.line(/^(DATA|ERR)/)).toMatch(/^ERR 7 /);
    racer.child.kill();
  });

  it('the same uid exec\'ing the trusted binary after connecting is refused: the agent attested the binary at accept and sees the exec', async () => {
    expect((await entry('trusted-nobody', [`unix:uid:${NOBODY}`, `unix:path:${tools.trusted}`, `unix:sha256:${sha}`])).status).toBe(201);
    await synced(['trusted-nobody']);
    // the trusted binary itself, as nobody, is served (the entry works)
    expect(await preloaded(NOBODY).line(/^(DATA|ERR)/)).toMatch(new RegExp(`^DATA (.*,)?spiffe://${TD}/trusted-nobody(,|$)`));

    // nobody connects from its own program and hands the connection to a child…
    const attacker = run([...asUid(NOBODY), tools.connectExec, agent!.socketPath, '1', tools.trusted, '30', '--', process.execPath, tools.client], { extraFds: 2 });
    try {
      await attacker.line(/^READY$/);
      const stdin = attacker.child.stdin!;
      stdin.write('fetch\n');
      // …which is refused while the connecting process runs the attacker's binary (the agent has accepted and attested it)
      expect(await attacker.line(/^(DATA|ERR)/)).toMatch(/^ERR 7 /);
      // then the connecting process execs the trusted binary, keeping its pid, pidfd and start time
      (attacker.child.stdio[4] as Writable).write('x');
      const pid = attacker.child.pid!;
      await waitFor('the exec', () => (readlinkSync(`/proc/${pid}/exe`) === tools.trusted ? true : undefined));
      stdin.write('fetch\n');
      const answer = await attacker.line(/^(DATA|ERR)/);
      expect(answer).toMatch(/^ERR 7 .*another executable than when it connected/);
      stdin.end();
    } finally {
      attacker.child.kill();
    }
  });

  describe('the systemd attestor on a real cgroup', () => {
    const unit = `cairn-test-${process.pid}.service`;
    const made: string[] = [];
    let hierarchy: string | undefined;
    let unitFile: string | undefined;

    /** mkdir -p that remembers what it created, to remove exactly that afterwards. */
    const mkdirs = (root: string, parts: string[]): string => {
      let path = root;
      for (const part of parts) {
        path = join(path, part);
        if (existsSync(path)) continue;
        mkdirSync(path);
        made.push(path);
      }
      return path;
    };

    beforeAll(() => {
      // a writable cgroup v2 hierarchy: the host's (pure v2) or the unified one of a hybrid host
      for (const root of ['/sys/fs/cgroup', '/sys/fs/cgroup/unified']) {
        if (!existsSync(join(root, 'cgroup.controllers'))) continue;
        try {
          mkdirs(root, ['system.slice', unit]);
          hierarchy = root;
          break;
        } catch (err) {
          console.warn(`systemd attestor test: cannot create a cgroup under ${root}: ${(err as Error).message}`);
        }
      }
      if (!hierarchy) {
        console.warn('systemd attestor test: skipped (no writable cgroup v2 hierarchy)');
        return;
      }
      mkdirs(hierarchy, ['user.slice', `user-${NOBODY}.slice`, `user@${NOBODY}.service`, 'app.slice', unit]);
      if (existsSync('/etc/systemd/system')) {
        unitFile = `/etc/systemd/system/${unit}`;
        writeFileSync(unitFile, '[Service]\nExecStart=/usr/bin/sleep infinity\n', { mode: 0o644 });
      }
    });
    afterAll(async () => {
      if (unitFile) rmSync(unitFile, { force: true });
      for (const d of made.reverse()) {
        // a cgroup stays busy for a moment after its last process exited
        await waitFor(`${d} to be removable`, () => {
          try {
            rmdirSync(d);
            return true;
          } catch (err) {
            return (err as NodeJS.ErrnoException).code === 'ENOENT' ? true : undefined;
          }
        }, 10_000).catch((err: Error) => console.warn(err.message));
      }
    });

    /** Runs the Workload API client as `uid` from inside the cgroup `cg` (the shell moves itself there, then execs). */
    const fromCgroup = (cg: string, uid: number) =>
      run(['sh', '-c', `echo $$ > "$0/cgroup.procs" && exec "$@"`, cg, ...asUid(uid), process.execPath, tools.client, '--socket', agent!.socketPath, '--once']);

    it('names the service a real process runs in, and an entry on systemd:id gives it its SVID', async (ctx) => {
      if (!hierarchy) return ctx.skip();
      const first = await fromCgroup(join(hierarchy, 'system.slice', unit), NOBODY).line(/^(DATA|ERR)/);
      expect(first).toMatch(/^ERR 7 /);
      const seen = agent!.agent.discovery.list().find((c) => c.selectors.includes(`systemd:id:${unit}`));
      expect(seen?.selectors).toContain(`unix:uid:${NOBODY}`);
      if (unitFile) expect(seen?.selectors).toContain(`systemd:fragment_path:${unitFile}`);
      expect((await entry('by-unit', [`systemd:id:${unit}`])).status).toBe(201);
      await synced(['by-unit']);
      expect(await fromCgroup(join(hierarchy, 'system.slice', unit), NOBODY).line(/^(DATA|ERR)/)).toBe(`DATA spiffe://${TD}/by-unit`);
    });

    it('a process in a user manager\'s (delegated) subtree gets user@<uid>.service, not the unit it named its cgroup after', async (ctx) => {
      if (!hierarchy) return ctx.skip();
      await synced(['by-unit']);
      const nested = join(hierarchy, 'user.slice', `user-${NOBODY}.slice`, `user@${NOBODY}.service`, 'app.slice', unit);
      expect(await fromCgroup(nested, NOBODY).line(/^(DATA|ERR)/)).toMatch(/^ERR 7 /);
      const seen = agent!.agent.discovery.list().find((c) => c.selectors.includes(`systemd:id:user@${NOBODY}.service`));
      expect(seen).toBeDefined();
      expect(seen!.selectors).not.toContain(`systemd:id:${unit}`);
    });
  });
});
