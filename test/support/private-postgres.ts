import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './processes.js';

/**
 * A PostgreSQL cluster of a test's own, for faults that stop the server: the suite's shared server
 * (scripts/postgres.sh) must stay up for every other file. Same binaries, same settings; the
 * cluster keeps its data dir and port across stop()/start(), as a restarted database server does.
 */
export interface PrivatePostgres {
  readonly url: string;
  /** `fast` ends sessions cleanly; `immediate` is a crash (no checkpoint, recovery on start). */
  stop(mode?: 'fast' | 'immediate'): void;
  start(): void;
  /** SIGSTOP (or SIGCONT) the server and all its backends: a database that hangs rather than refuses. */
  freeze(frozen: boolean): void;
  destroy(): void;
}

function pgBin(): string {
  const candidates = [process.env.PG_BIN, ...(existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql').sort().reverse().map((v) => `/usr/lib/postgresql/${v}/bin`) : [])];
  const bin = candidates.find((d): d is string => !!d && existsSync(join(d, 'initdb')) && existsSync(join(d, 'pg_ctl')));
  if (!bin) throw new Error('no PostgreSQL server binaries (initdb, pg_ctl); scripts/test.sh installs them');
  return bin;
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const bin = pgBin();
  const dir = mkdtempSync(join(tmpdir(), 'cairn-pg-fault-'));
  chmodSync(dir, 0o755);
  const port = await freePort();
  // PostgreSQL refuses to run as root: as root, run it as the `postgres` user scripts/postgres.sh creates.
  const asRoot = process.getuid?.() === 0;
  const wrap = (cmd: string, args: string[]): [string, string[]] => {
    if (!asRoot) return [cmd, args];
    const pgUid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const pgGid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    chownSync(dir, pgUid, pgGid);
    return ['setpriv', [`--reuid=${pgUid}`, `--regid=${pgGid}`, '--init-groups', '--', cmd, ...args]];
  };
  const run = (tool: string, args: string[]): void => {
    const [cmd, argv] = wrap(join(bin, tool), args);
    const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) throw new Error(`${tool} ${args[0]} failed (${r.status}): ${r.stderr}${r.stdout}`);
  };
  const data = join(dir, 'data');
  run('initdb', ['-D', data, '-U', 'cairn', '--auth=trust', '-E', 'UTF8', '--no-locale']);
  const start = (): void =>
    run('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-w', '-t', '60', 'start', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=100 -c fsync=off`]);
  let running = false;
  const freeze = (frozen: boolean): void => {
    const postmaster = readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]!.trim();
    const children = spawnSync('pgrep', ['-P', postmaster], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
    for (const pid of [postmaster, ...children]) process.kill(Number(pid), frozen ? 'SIGSTOP' : 'SIGCONT');
  };
  start();
  running = true;
  return {
    url: `postgres://cairn@127.0.0.1:${port}/postgres`,
    stop(mode = 'fast') {
      run('pg_ctl', ['-D', data, '-m', mode, '-w', 'stop']);
      running = false;
    },
    start() {
      start();
      running = true;
    },
    freeze,
    destroy() {
      if (running) freeze(false);
      if (running) spawnSync(...wrap(join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']));
      running = false;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
