import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createPgDatabase, storeKind } from '../support/db.js';
import { runCairnAsync, spawnCairn, type Spawned } from '../support/processes.js';

const isRoot = process.getuid?.() === 0;
const KEK = Buffer.alloc(32, 5).toString('base64');
/** No database from the environment: a refused start must not need one (and must not touch one). */
const NO_DB = { DATABASE_URL: undefined, CAIRN_DATABASE_URL: undefined, CAIRN_KEK_FILE: undefined, CAIRN_ADMIN_TOKEN: undefined };
const LISTEN = ['--listen', '127.0.0.1:0', '--tls-listen', '127.0.0.1:0'];

describe(`cairn ca start: the KEK file rule and the listener flags (${storeKind()} store)`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-ca-config-'));
  const running: Spawned[] = [];
  afterAll(async () => {
    for (const p of running) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const kekFile = (name: string, mode: number): string => {
    const path = join(dir, name);
    writeFileSync(path, KEK);
    chmodSync(path, mode);
    return path;
  };
  const start = (dataDir: string, args: string[], env: Record<string, string | undefined> = {}) =>
    runCairnAsync(['ca', 'start', '--data-dir', dataDir, ...LISTEN, ...args], { ...NO_DB, ...env });

  it('a world-readable KEK file is refused: one error line naming the setting, with the chmod to run, exit 2, the store untouched', async () => {
    const kek = kekFile('kek-world', 0o644);
    const data = join(dir, 'data-world');
    const r = await start(data, ['--kek-file', kek]);
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual([`error: --kek-file: the KEK file ${kek} is accessible to other users (mode 0644); it must be readable by the CA alone: run chmod 600 ${kek}`]);
    expect(r.stdout).toBe('');
    expect(existsSync(join(data, 'pgdata'))).toBe(false);
    // the same through CAIRN_KEK_FILE
    const env = await start(join(dir, 'data-world-env'), [], { CAIRN_KEK_FILE: kek });
    expect(env.status).toBe(2);
    expect(env.stderr).toContain(`error: CAIRN_KEK_FILE: the KEK file ${kek}`);
    expect(env.stderr).toContain(`run chmod 600 ${kek}`);
  }, 120_000);

  it('a group-readable KEK file owned by anyone but root is refused', async () => {
    const kek = kekFile('kek-group', 0o640);
    if (isRoot) chownSync(kek, 65534, 65534); // root-owned group-readable files are allowed (below)
    const r = await start(join(dir, 'data-group'), ['--kek-file', kek]);
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual([`error: --kek-file: the KEK file ${kek} is accessible to its group (mode 0640); it must be readable by the CA alone: run chmod 600 ${kek}`]);
    // group-writable is refused even for root
    const writable = kekFile('kek-group-writable', 0o660);
    const w = await start(join(dir, 'data-group-writable'), ['--kek-file', writable]);
    expect(w.status).toBe(2);
    expect(w.stderr).toContain(`(mode 0660)`);
  }, 120_000);

  it('the KEK generated beside pgdata is held to the same rule on the next start', async () => {
    const data = join(dir, 'data-generated');
    mkdirSync(data, { recursive: true, mode: 0o700 });
    writeFileSync(join(data, 'kek'), KEK);
    chmodSync(join(data, 'kek'), 0o604);
    const r = await start(data, []);
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual([`error: the KEK file ${join(data, 'kek')} is accessible to other users (mode 0604); it must be readable by the CA alone: run chmod 600 ${join(data, 'kek')}`]);
  }, 120_000);

  it('bad listener settings are one error line naming the flag or variable as given, exit 2', async () => {
    for (const [flag, value] of [['--request-timeout', '0s'], ['--request-timeout', 'soon'], ['--keep-alive-timeout', '-1'], ['--max-connections', 'many'], ['--ca-name-constraints', 'maybe']] as const) {
      const r = await start(join(dir, 'data-flags'), ['--kek-file', kekFile('kek-flags', 0o600), `${flag}=${value}`]);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
      expect(r.stderr).toMatch(new RegExp(`^error: ${flag}`));
      expect(existsSync(join(dir, 'data-flags', 'pgdata'))).toBe(false);
    }
    // the variable is named when the value came from it
    const env = await start(join(dir, 'data-flags'), ['--kek-file', kekFile('kek-flags', 0o600)], { CAIRN_REQUEST_TIMEOUT: 'soon' });
    expect(env.status, env.stderr).toBe(2);
    expect(env.stderr.trim()).toBe('error: CAIRN_REQUEST_TIMEOUT must be a duration like 30s, 5m or 1h, got "soon"');
  }, 120_000);

  it.runIf(isRoot)('a root-owned KEK its group may read starts (as a Kubernetes fsGroup mounts a Secret), and --request-timeout is applied', async () => {
    const kek = kekFile('kek-root-group', 0o440);
    const pg = storeKind() === 'postgres' ? await createPgDatabase() : undefined;
    try {
      const ca = spawnCairn(['ca', 'start', '--data-dir', join(dir, 'data-ok'), ...LISTEN, '--kek-file', kek, '--request-timeout', '2s', '--max-connections', '50'], { ...NO_DB, DATABASE_URL: pg?.url });
      running.push(ca);
      await ca.waitFor(/listening on/, 120_000);
      const url = /listening on (http:\/\/[^ ]+) and/.exec(ca.stdout() + ca.stderr())![1]!;
      // a request whose body stalls is answered 408 and closed, well before Node's defaults would
      const answer = await new Promise<{ closed: boolean; text: string }>((resolve) => {
        const socket = connect(Number(new URL(url).port), '127.0.0.1', () => socket.write('POST /agent/v1/attest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{'));
        let text = '';
        const timer = setTimeout(() => (socket.destroy(), resolve({ closed: false, text })), 20_000);
        socket.on('data', (d: Buffer) => (text += d.toString()));
        socket.on('error', () => undefined);
        socket.once('close', () => (clearTimeout(timer), resolve({ closed: true, text })));
      });
      expect(answer.closed).toBe(true);
      expect(answer.text).toMatch(/^HTTP\/1\.1 408 /);
      await ca.stop();
    } finally {
      await pg?.drop();
    }
  }, 240_000);
});
