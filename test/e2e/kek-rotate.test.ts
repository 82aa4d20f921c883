import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kekId } from '../../ca/authority/sealing.js';
import { readKekFile } from '../../ca/keys-at-rest.js';
import { startCaProcess, type CaProcess } from '../support/ca-process.js';
import { createPgDatabase, storeKind } from '../support/db.js';
import { runCairnAsync, spawnCairn } from '../support/processes.js';
import { waitFor } from '../support/wait.js';

const TOKEN = 'cairn-admin.' + 'Kek0'.repeat(10) + 'abc';

/**
 * `cairn kek rotate` against a running `cairn ca start` (on PostgreSQL a second replica sharing the
 * database takes the new KEK on SIGHUP), then restarts with the new KEK file and with the old one.
 */
describe(`cairn kek rotate with real processes (${storeKind()} store)`, { timeout: 300_000 }, () => {
  let dir: string;
  let drop: (() => Promise<void>) | undefined;
  let databaseUrl: string | undefined;
  const replicas: CaProcess[] = [];
  const kekOf = (i: number): string => join(dir, `kek${i}`);
  const cli = (i: number, args: string[], token = TOKEN) =>
    runCairnAsync(args, { CAIRN_DATA_DIR: join(dir, 'cli'), CAIRN_SERVER: replicas[i]!.httpUrl, CAIRN_ADMIN_TOKEN: token, CAIRN_ADMIN_TOKEN_FILE: undefined, CAIRN_KEK_FILE: undefined });
  const startReplica = async (i: number, kekFile = kekOf(i)): Promise<CaProcess> =>
    startCaProcess({ dataDir: join(dir, `ca${i}`), databaseUrl, env: { CAIRN_ADMIN_TOKEN: TOKEN, CAIRN_KEK_FILE: kekFile, CAIRN_LOG_LEVEL: 'info' } });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-kek-rotate-'));
    for (const f of [kekOf(0), kekOf(1), join(dir, 'kek.old')]) writeFileSync(f, Buffer.alloc(32, 7).toString('base64'), { mode: 0o600 });
    writeFileSync(join(dir, 'kek.new'), Buffer.alloc(32, 8), { mode: 0o600 });
    if (storeKind() === 'postgres') ({ url: databaseUrl, drop } = await createPgDatabase());
    replicas[0] = await startReplica(0);
    if (storeKind() === 'postgres') replicas[1] = await startReplica(1);
    const td = await cli(0, ['trust-domain', 'create', 'kek.e2e.test']);
    expect(td.status, td.stderr).toBe(0);
  }, 300_000);

  afterAll(async () => {
    for (const r of replicas) await r?.stop();
    await drop?.();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a missing or reused new KEK, and a caller who is not an installation admin, leaving nothing behind', async () => {
    let r = await cli(0, ['kek', 'rotate', '--new-kek-file', join(dir, 'nope'), '--kek-file', kekOf(0)]);
    expect([r.status, r.stderr.trim()]).toEqual([2, `error: --new-kek-file: cannot read ${join(dir, 'nope')} (no such file)`]);
    r = await cli(0, ['kek', 'rotate', '--new-kek-file', join(dir, 'kek.old'), '--kek-file', kekOf(0)]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^error: --new-kek-file: it holds the KEK already in /);
    const viewer = await cli(0, ['admin', 'create', '--name', 'viewer', '--role', 'viewer']);
    r = await cli(0, ['kek', 'rotate', '--new-kek-file', join(dir, 'kek.new'), '--kek-file', kekOf(0)], viewer.stdout.trim());
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^error: permission_denied/m);
    expect(existsSync(`${kekOf(0)}.next`)).toBe(false);
    expect(readFileSync(kekOf(0), 'utf8')).toBe(readFileSync(join(dir, 'kek.old'), 'utf8'));
  });

  it('rotates on the live CA: the new KEK id alone on stdout, every value re-sealed, the KEK file replaced', async () => {
    const newId = kekId(Buffer.alloc(32, 8));
    const r = await cli(0, ['kek', 'rotate', '--new-kek-file', join(dir, 'kek.new'), '--kek-file', kekOf(0)]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${newId}\n`);
    expect(r.stderr).toMatch(/re-sealed under KEK [0-9a-f]{16} \(was [0-9a-f]{16}\)/);
    expect(readKekFile(kekOf(0)).equals(Buffer.alloc(32, 8))).toBe(true);
    const status = await cli(0, ['kek', 'status', '--json']);
    expect(status.status, status.stderr).toBe(0);
    const view = JSON.parse(status.stdout);
    expect(view.kekId).toBe(newId);
    expect(Object.keys(view.sealedUnder)).toEqual([newId]);
    // the CA keeps serving
    expect((await cli(0, ['trust-domain', 'create', 'after.kek.e2e.test'])).status).toBe(0);
  });

  it.runIf(storeKind() === 'postgres')('another replica takes the new KEK file on SIGHUP and keeps running', async () => {
    const newId = kekId(Buffer.alloc(32, 8));
    expect(JSON.parse((await cli(1, ['kek', 'status', '--json'])).stdout).kekId).not.toBe(newId);
    copyFileSync(join(dir, 'kek.new'), kekOf(1));
    replicas[1]!.process.child.kill('SIGHUP');
    await waitFor('replica 1 to take the new KEK', async () => (JSON.parse((await cli(1, ['kek', 'status', '--json'])).stdout).kekId === newId ? true : undefined), 60_000);
    expect(replicas[1]!.process.child.exitCode).toBe(null);
    expect((await cli(1, ['trust-domain', 'create', 'replica.kek.e2e.test'])).status).toBe(0);
  });

  it('restarts with the new KEK file; with the old one the CA exits with one clear line', async () => {
    await replicas[0]!.stop();
    const stale = spawnCairn(['ca', 'start', '--listen', '127.0.0.1:0', '--tls-listen', '127.0.0.1:0'], { CAIRN_DATA_DIR: join(dir, 'ca0'), DATABASE_URL: databaseUrl, CAIRN_ADMIN_TOKEN: TOKEN, CAIRN_KEK_FILE: join(dir, 'kek.old') });
    expect(await stale.exited).not.toBe(0);
    expect(stale.stderr()).toMatch(/error: the key-encryption key in .*kek\.old does not open the keys stored in this database: every replica of a database needs the KEK file it was created with, or after cairn kek rotate the new one/);
    await replicas[0]!.start();
    expect((await cli(0, ['trust-domain', 'create', 'restart.kek.e2e.test'])).status).toBe(0);
  });
});
