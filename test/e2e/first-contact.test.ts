import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, runCairn, spawnCairn } from '../support/processes.js';
import { registerLogSource } from '../support/logs.js';

const isRoot = process.getuid?.() === 0;
const dirs: string[] = [];
const tempDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'cairn-first-'));
  dirs.push(d);
  return d;
};

describe('first contact: log flags, the lean restart, connection errors', () => {
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('--log-level and --log-format (and their variables) are checked before anything starts', () => {
    const level = runCairn(['ca', 'start', '--log-level', 'loud']);
    expect(level.status).toBe(2);
    expect(level.stderr).toMatch(/^error: --log-level must be one of fatal, error, warn, info, debug, trace, silent \(got "loud"\)/);
    const format = runCairn(['agent', 'start', '--log-format', 'xml']);
    expect(format.status).toBe(2);
    expect(format.stderr).toMatch(/^error: --log-format must be one of json, pretty \(got "xml"\)/);
    const env = runCairn(['up', '--data-dir', tempDir()], { CAIRN_LOG_FORMAT: 'yaml' });
    expect(env.status).toBe(2);
    expect(env.stderr).toMatch(/CAIRN_LOG_FORMAT must be one of json, pretty, got "yaml"/);
  });

  /** `cairn agent start` with nothing to attest with: it restarts itself, logs its node flags at debug, then stops with a clear error. */
  async function agentFlags(env: Record<string, string | undefined>): Promise<{ pid: number; line: { pid: number; execArgv: string[] } }> {
    const p = spawnCairn(['agent', 'start', '--data-dir', tempDir()], { CAIRN_LOG_LEVEL: 'debug', CAIRN_JOIN_TOKEN: undefined, ...env });
    expect(await p.exited).toBe(1);
    expect(p.stderr()).toMatch(/^error: no valid agent SVID in the data dir and no way to attest/m);
    const line = p.stderr().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg: string; pid: number; execArgv: string[] }).find((l) => l.msg === 'node flags');
    expect(line).toBeDefined();
    return { pid: p.child.pid!, line: line! };
  }

  it('`cairn agent start` restarts itself in place (same pid) with a 1 MB semi-space, unless NODE_OPTIONS sets one', async () => {
    const lean = await agentFlags({ NODE_OPTIONS: undefined });
    expect(lean.line.execArgv).toContain('--max-semi-space-size=1');
    expect(lean.line.pid).toBe(lean.pid);
    const chosen = await agentFlags({ NODE_OPTIONS: '--max-semi-space-size=4' });
    expect(chosen.line.execArgv).not.toContain('--max-semi-space-size=1');
  });

  it.runIf(isRoot)('a socket another user cannot reach: the client names the directory that refused, not `internal`', async () => {
    const dir = tempDir(); // mkdtemp: 0700, root's
    const socket = join(dir, 'workload.sock');
    const server: Server = createServer((c) => c.destroy());
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    chmodSync(socket, 0o777);
    try {
      const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', process.execPath, CLI, 'svid', 'fetch', '--socket', socket], { encoding: 'utf8', timeout: 60_000 });
      registerLogSource(() => r.stderr);
      expect(r.stderr).toBe(`error: unavailable: cannot connect to the Workload API at unix://${socket}: permission denied (EACCES) on the directory ${dir} (mode 0700, owner uid 0)\n`);
      expect(r.status).toBe(1);
    } finally {
      server.close();
    }
  });

  it('no socket at all: unavailable, with the cause', () => {
    const socket = join(tempDir(), 'none.sock');
    const r = runCairn(['svid', 'fetch', '--socket', socket]);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`error: unavailable: cannot connect to the Workload API at unix://${socket}: no such socket (ENOENT)\n`);
  });
});
