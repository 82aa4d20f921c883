import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { prepareSocketDir } from '../../../node-agent/storage/socket-dir.js';

const mode = (p: string): number => statSync(p).mode & 0o7777;

describe('the Workload API socket directory', () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));
  const tree = (): string => {
    const top = mkdtempSync(join(tmpdir(), 'cairn-sockdir-'));
    dirs.push(top);
    chmodSync(top, 0o755);
    return top;
  };

  it("opens Cairn's own directories on the way for search only, makes the socket's 0755, and leaves the files' modes alone", () => {
    const top = tree();
    const data = join(top, '.cairn');
    mkdirSync(join(data, 'agent'), { recursive: true, mode: 0o700 });
    mkdirSync(join(data, 'pgdata'), { mode: 0o700 });
    for (const d of [data, join(data, 'agent'), join(data, 'pgdata')]) chmodSync(d, 0o700);
    const report = prepareSocketDir(join(data, 'agent', 'sockets', 'workload.sock'), data);
    expect(mode(data)).toBe(0o711);
    expect(mode(join(data, 'agent'))).toBe(0o711);
    expect(mode(join(data, 'agent', 'sockets'))).toBe(0o755);
    expect(mode(join(data, 'pgdata'))).toBe(0o700);
    expect(report.opened).toEqual([data, join(data, 'agent'), join(data, 'agent', 'sockets')]);
    expect(report.closed).toEqual([]);
    // again: nothing left to change
    expect(prepareSocketDir(join(data, 'agent', 'sockets', 'workload.sock'), data).opened).toEqual([]);
  });

  it('changes nothing outside its own tree, and names the directories there that stop other users', () => {
    const top = tree();
    const home = join(top, 'home');
    mkdirSync(join(home, 'project'), { recursive: true });
    chmodSync(join(home, 'project'), 0o755);
    chmodSync(home, 0o750);
    const data = join(home, 'project', '.cairn');
    const report = prepareSocketDir(join(data, 'agent', 'sockets', 'workload.sock'), data);
    expect(mode(home)).toBe(0o750);
    expect(report.closed).toEqual([{ path: home, mode: '0750' }]);
    // made here: the data dir private but searchable, the socket's directory open
    expect(mode(data)).toBe(0o711);
    expect(mode(join(data, 'agent'))).toBe(0o711);
    expect(mode(join(data, 'agent', 'sockets'))).toBe(0o755);
  });

  it('a socket given outside the data dir: its directory is made if missing, nothing else is touched', () => {
    const top = tree();
    const data = join(top, 'data');
    mkdirSync(data, { mode: 0o700 });
    const run = join(top, 'run');
    mkdirSync(run, { mode: 0o700 });
    const report = prepareSocketDir(join(run, 'cairn', 'agent.sock'), data);
    expect(mode(data)).toBe(0o700);
    expect(mode(run)).toBe(0o700);
    expect(mode(join(run, 'cairn'))).toBe(0o755);
    expect(report.opened).toEqual([]);
    expect(report.closed).toEqual([{ path: run, mode: '0700' }]);
  });
});
