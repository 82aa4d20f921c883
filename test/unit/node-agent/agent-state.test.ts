import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cannotAttestMessage, dataDirProblem, describeDataDirProblem } from '../../../node-agent/storage/agent-state.js';

const errno = (code: string) => Object.assign(new Error(`${code}: failed, open '/var/lib/cairn/agent/.write-probe'`), { code });

describe("the agent's data dir problems, in words", () => {
  it('name the directory and the errno in a sentence', () => {
    expect(describeDataDirProblem('/var/lib/cairn/agent', errno('EROFS'))).toEqual({
      code: 'EROFS',
      message: "the agent's data dir /var/lib/cairn/agent is not writable: the file system is mounted read-only (EROFS)",
    });
    expect(describeDataDirProblem('/d', errno('ENOSPC')).message).toBe("the agent's data dir /d is not writable: no space left on the device (ENOSPC)");
  });

  it('the start error says nothing was spent, and how to go on', () => {
    const problem = describeDataDirProblem('/d', errno('EACCES'));
    expect(cannotAttestMessage(problem, 'join_token')).toBe(
      "the agent's data dir /d is not writable: permission denied: this process's user may not write there (EACCES). The agent keeps its SVID there to restart without a new token, so it stopped before attesting (the join token was not used); make the directory writable (or choose another with --data-dir) and start the agent again",
    );
    expect(cannotAttestMessage(problem, 'k8s_psat')).toContain('stopped before attesting (nothing was attested);');
  });

  describe('dataDirProblem', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cairn-datadir-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('is undefined for a directory that takes a write (created if missing)', () => {
      expect(dataDirProblem(join(dir, 'new', 'agent'))).toBeUndefined();
    });

    it('describes one that cannot be created', () => {
      writeFileSync(join(dir, 'file'), '');
      const problem = dataDirProblem(join(dir, 'file', 'agent'));
      expect(problem?.code).toMatch(/^(ENOTDIR|EEXIST)$/);
      expect(problem?.message).toMatch(new RegExp(`^the agent's data dir ${join(dir, 'file', 'agent')} is not writable: a part of the path (is|exists and is) not a directory`));
    });
  });
});
