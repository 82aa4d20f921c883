import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeWriteError, errnoCode, probeWritable, writeFileAtomic } from '../../../lib/fs.js';
import { RepeatGate } from '../../../lib/repeat-gate.js';

const errno = (code: string, message = `${code}: something, open '/x'`) => Object.assign(new Error(message), { code });

describe('describeWriteError', () => {
  it('says what the errno means, then names it', () => {
    expect(describeWriteError(errno('EACCES'))).toBe("permission denied: this process's user may not write there (EACCES)");
    expect(describeWriteError(errno('EROFS'))).toBe('the file system is mounted read-only (EROFS)');
    expect(describeWriteError(errno('ENOSPC'))).toBe('no space left on the device (ENOSPC)');
    expect(describeWriteError(errno('EDQUOT'))).toBe('the disk quota is exhausted (EDQUOT)');
  });

  it("falls back to the error's own message for other errnos and for errors without one", () => {
    expect(describeWriteError(errno('EMLINK', 'EMLINK: too many links'))).toBe('EMLINK: too many links (EMLINK)');
    expect(describeWriteError(new Error('boom'))).toBe('boom');
    expect(describeWriteError('text')).toBe('text');
    // a code that is not an errno (Node's ERR_*) is not presented as one
    expect(describeWriteError(Object.assign(new Error('bad argument'), { code: 'ERR_INVALID_ARG_TYPE' }))).toBe('bad argument');
    expect(errnoCode(undefined)).toBeUndefined();
    expect(errnoCode(null)).toBeUndefined();
  });
});

describe('writeFileAtomic and probeWritable on an ordinary directory', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-fs-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('replaces the file whole, with the mode asked for, and leaves no temp file', () => {
    const target = join(dir, 'state.json');
    writeFileAtomic(target, 'one');
    writeFileAtomic(target, Buffer.from('two'), 0o640);
    expect(readFileSync(target, 'utf8')).toBe('two');
    expect(statSync(target).mode & 0o777).toBe(0o640);
    expect(readdirSync(dir)).toEqual(['state.json']);
  });

  it('fails with the errno when the directory cannot be made, and the probe leaves nothing behind', () => {
    writeFileSync(join(dir, 'plain-file'), 'x');
    let err: unknown;
    try {
      probeWritable(join(dir, 'plain-file', 'agent'));
    } catch (e) {
      err = e;
    }
    expect(errnoCode(err)).toMatch(/^(ENOTDIR|EEXIST)$/);
    probeWritable(join(dir, 'probed'));
    expect(readdirSync(join(dir, 'probed'))).toEqual([]);
  });
});

describe('RepeatGate', () => {
  it('lets the first failure through, then a different one, then the same one once per interval', () => {
    const gate = new RepeatGate(60_000);
    expect(gate.shouldLog('ENOSPC', 0)).toBe(true);
    expect(gate.shouldLog('ENOSPC', 1_000)).toBe(false);
    expect(gate.shouldLog('ENOSPC', 59_999)).toBe(false);
    expect(gate.shouldLog('EROFS', 60_500)).toBe(true);
    expect(gate.shouldLog('EROFS', 61_000)).toBe(false);
    expect(gate.shouldLog('EROFS', 120_500)).toBe(true);
  });

  it('after reset (the failure ended), the next failure is news', () => {
    const gate = new RepeatGate(60_000);
    expect(gate.shouldLog('ENOSPC', 0)).toBe(true);
    gate.reset();
    expect(gate.shouldLog('ENOSPC', 10)).toBe(true);
  });
});
