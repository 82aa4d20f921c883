import { createHash } from 'node:crypto';
import { appendFileSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AccountNames } from '../../../node-agent/caller/accounts.js';
import { ExecutableHashCache, exeIdentity, processFacts, stillRunsExe, unixSelectors } from '../../../node-agent/caller/unix-attestor.js';

describe('the unix workload attestor', () => {
  let root: string;
  const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'cairn-unix-'));
    mkdirSync(join(root, 'proc', '77'), { recursive: true });
    writeFileSync(join(root, 'proc', '77', 'status'), 'Name:\tapp\nUid:\t1000\t1000\t1000\t1000\nGroups:\t27 100 \nVmRSS:\t1 kB\n');
    writeFileSync(join(root, 'app'), 'binary v1');
    symlinkSync(join(root, 'app'), join(root, 'proc', '77', 'exe'));
    writeFileSync(join(root, 'passwd'), 'root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n');
    writeFileSync(join(root, 'group'), 'root:x:0:\nsudo:x:27:alice\nusers:x:100:\nalice:x:1000:\n');
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  const procRoot = (): string => join(root, 'proc');
  const names = (): AccountNames => new AccountNames({ passwdFile: join(root, 'passwd'), groupFile: join(root, 'group') });

  it('yields uid, gid, names, supplementary groups, path and hash from what the kernel and /proc say', async () => {
    const facts = processFacts(77, new ExecutableHashCache(), { procRoot: procRoot() });
    expect(await unixSelectors({ pid: 77, uid: 1000, gid: 1000 }, facts, names())).toEqual(
      [
        'unix:uid:1000', 'unix:gid:1000', 'unix:user:alice', 'unix:group:alice',
        'unix:supplementary_gid:27', 'unix:supplementary_group:sudo', 'unix:supplementary_gid:100', 'unix:supplementary_group:users',
        `unix:path:${join(root, 'app')}`, `unix:sha256:${sha('binary v1')}`,
      ].sort(),
    );
  });

  it('leaves out what it cannot read instead of guessing', async () => {
    const gone = processFacts(99, new ExecutableHashCache(), { procRoot: procRoot() });
    expect(await unixSelectors({ pid: 99, uid: 4242, gid: 4242 }, gone, names())).toEqual(['unix:gid:4242', 'unix:uid:4242']);
    const noExe = processFacts(77, new ExecutableHashCache(), { procRoot: procRoot(), withPathAndHash: false });
    expect(await unixSelectors({ pid: 77, uid: 1000, gid: 1000 }, noExe, names())).not.toContainEqual(expect.stringMatching(/^unix:(path|sha256):/));
  });

  it('hashes the executable the process ran at accept, even when it execs before the hash is read', async () => {
    const facts = processFacts(77, new ExecutableHashCache(), { procRoot: procRoot() });
    // the process execs another binary (its /proc/<pid>/exe now names another file) before the hash is awaited
    writeFileSync(join(root, 'other'), 'another binary');
    unlinkSync(join(root, 'proc', '77', 'exe'));
    symlinkSync(join(root, 'other'), join(root, 'proc', '77', 'exe'));
    const s = await unixSelectors({ pid: 77, uid: 1000, gid: 1000 }, facts, names());
    expect(s).toContain(`unix:sha256:${sha('binary v1')}`);
    expect(s).toContain(`unix:path:${join(root, 'app')}`);
    // and the per-call check sees the change
    expect(stillRunsExe(procRoot(), 77, facts.exe)).toBe(false);
  });

  it('tells the same executable from another by device, inode and path', () => {
    const a = exeIdentity(procRoot(), 77);
    expect(a).toBeDefined();
    expect(stillRunsExe(procRoot(), 77, a)).toBe(true);
    expect(stillRunsExe(procRoot(), 77, { ...a!, ino: a!.ino + 1n })).toBe(false);
    expect(stillRunsExe(procRoot(), 77, { ...a!, dev: a!.dev + 1n })).toBe(false);
    expect(stillRunsExe(procRoot(), 77, { ...a!, path: '/usr/bin/other' })).toBe(false);
    // unreadable at accept: it must stay unreadable (a process that was gone, or another user's)
    expect(stillRunsExe(procRoot(), 77, undefined)).toBe(false);
    expect(stillRunsExe(procRoot(), 99, undefined)).toBe(true);
    expect(stillRunsExe(procRoot(), 99, a)).toBe(false);
  });

  it('hashes an executable once per file identity, and again when the file is replaced', async () => {
    const cache = new ExecutableHashCache();
    const exe = join(root, 'proc', '77', 'exe');
    const first = cache.hash(exe);
    expect(cache.hash(exe)).toBe(first); // the same promise: no second read
    expect(await first).toBe(sha('binary v1'));
    rmSync(join(root, 'app'));
    writeFileSync(join(root, 'app'), 'binary v2 (upgraded)');
    expect(await cache.hash(exe)).toBe(sha('binary v2 (upgraded)'));
    const facts = processFacts(77, cache, { procRoot: procRoot() });
    expect(await unixSelectors({ pid: 77, uid: 1000, gid: 1000 }, facts, names())).toContain(`unix:sha256:${sha('binary v2 (upgraded)')}`);
  });

  it('reads /etc/passwd and /etc/group again only when the file changes (device, inode, size, mtime)', () => {
    const accounts = names();
    expect(accounts.user(1000)).toBe('alice');
    expect(accounts.group(27)).toBe('sudo');
    // a rename over the file (what useradd and vipw do): a new inode, read again
    writeFileSync(join(root, 'passwd.new'), 'root:x:0:0::/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n');
    renameSync(join(root, 'passwd.new'), join(root, 'passwd'));
    expect(accounts.user(1000)).toBe('bob');
    // an append in place: the size changes
    appendFileSync(join(root, 'group'), 'web:x:3000:\n');
    expect(accounts.group(3000)).toBe('web');
    // a same-size rewrite in place with a new mtime
    writeFileSync(join(root, 'group'), 'root:x:0:\nstaf:x:27:alice\nusers:x:100:\nalice:x:1000:\nweb:x:3000:\n');
    utimesSync(join(root, 'group'), new Date(), new Date(Date.now() + 5000));
    expect(accounts.group(27)).toBe('staf');
    rmSync(join(root, 'passwd'));
    expect(accounts.user(1000)).toBeUndefined();
  });
});
