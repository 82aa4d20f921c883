import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ExecutableHashCache, unixSelectors } from '../../../node-agent/caller/unix-attestor.js';

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

  const options = () => ({ procRoot: join(root, 'proc'), passwdFile: join(root, 'passwd'), groupFile: join(root, 'group') });

  it('yields uid, gid, names, supplementary groups, path and hash from what the kernel and /proc say', async () => {
    expect(await unixSelectors({ pid: 77, uid: 1000, gid: 1000 }, options())).toEqual(
      [
        'unix:uid:1000', 'unix:gid:1000', 'unix:user:alice', 'unix:group:alice',
        'unix:supplementary_gid:27', 'unix:supplementary_group:sudo', 'unix:supplementary_gid:100', 'unix:supplementary_group:users',
        `unix:path:${join(root, 'app')}`, `unix:sha256:${sha('binary v1')}`,
      ].sort(),
    );
  });

  it('leaves out what it cannot read instead of guessing', async () => {
    const s = await unixSelectors({ pid: 99, uid: 4242, gid: 4242 }, options());
    expect(s).toEqual(['unix:gid:4242', 'unix:uid:4242']);
    expect(await unixSelectors({ pid: 77, uid: 1000, gid: 1000 }, { ...options(), withPathAndHash: false })).not.toContainEqual(expect.stringMatching(/^unix:(path|sha256):/));
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
    expect(await unixSelectors({ pid: 77, uid: 1000, gid: 1000 }, options(), cache)).toContain(`unix:sha256:${sha('binary v2 (upgraded)')}`);
  });
});
